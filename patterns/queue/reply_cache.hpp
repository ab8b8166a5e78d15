// The bounded recent-reply cache: a retried request whose reply the device
// already forwarded is answered from here instead of executing again.
// Oldest entries are evicted first. Private to patterns/queue.
#pragma once

#include <cstddef>
#include <deque>
#include <unordered_map>
#include <zmq.hpp>
#include <zmqkit/message_id.hpp>

namespace zmqkit::queue::detail {

class reply_cache {
 public:
  explicit reply_cache(std::size_t capacity) : capacity_(capacity) {}

  // Keeps a copy of `reply` (shares the buffer of large frames) for `id`.
  void put(const message_id& id, const zmq::message_t& reply) {
    if (capacity_ == 0) return;
    auto [it, inserted] = entries_.try_emplace(id);
    it->second.copy(const_cast<zmq::message_t&>(reply));
    if (!inserted) return;
    order_.push_back(id);
    while (order_.size() > capacity_) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
  }

  // Returns: the cached reply for `id`, or nullptr.
  const zmq::message_t* find(const message_id& id) const {
    const auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : &it->second;
  }

  std::size_t size() const noexcept { return entries_.size(); }

 private:
  std::size_t capacity_;
  std::unordered_map<message_id, zmq::message_t> entries_;
  std::deque<message_id> order_;
};

}  // namespace zmqkit::queue::detail
