// zmqkit/internal/reply_store.hpp — recent replies by request id, bounded in
// entries and age: the one implementation behind the queue device's reply cache
// and the reqrep server's.
//
// Bounded in bytes too (the sum of the replies' sizes): a reply larger than
// the whole budget is not stored; past the budget the oldest go first.
//
// Replies sit in a deque in insertion order (eviction, by count or by age,
// always takes the oldest) and a keyed_map maps ids (chosen by peers) to their
// sequence number, so crafted ids cannot flood one bucket. Not thread-safe.
// Internal to the library: never included by a public header.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/message_id.hpp>

#include <zmqkit/internal/keyed_hash.hpp>

namespace zmqkit::internal {

struct reply_store_options {
  std::size_t max_entries = 10000;  // 0 disables the store
  std::size_t max_bytes = std::size_t{256} << 20;  // sum of the replies' sizes
  std::chrono::nanoseconds max_age = std::chrono::nanoseconds::max();
};

class reply_store {
 public:
  explicit reply_store(reply_store_options opts) : opts_(opts) {}

  // Stores a copy of `reply` (zmq shares large buffers) for `id`. An id
  // already stored gets the new reply and keeps its place in the order.
  void insert(const hashed_id& id, const zmq::message_t& reply, steady_time now) {
    if (opts_.max_entries == 0) return;
    expire(now);
    const std::size_t size = reply.size();
    const auto [it, added] = index_.try_emplace(id, first_ + entries_.size());
    if (!added) {
      zmq::message_t& stored = entries_[it->second - first_].reply;
      bytes_ = bytes_ - stored.size() + size;
      stored.copy(const_cast<zmq::message_t&>(reply));
    } else if (size > opts_.max_bytes) {
      index_.erase(it);
      return;
    } else {
      entries_.emplace_back(id, reply, now);
      bytes_ += size;
      if (entries_.size() > opts_.max_entries) evict_oldest();  // never the one just added
    }
    while (bytes_ > opts_.max_bytes) evict_oldest();
  }

  // Returns: the stored reply for `id`, or nullptr when absent or expired.
  const zmq::message_t* find(const hashed_id& id, steady_time now) {
    expire(now);
    const auto it = index_.find(id);
    return it == index_.end() ? nullptr : &entries_[it->second - first_].reply;
  }

  // Drops entries older than max_age.
  void expire(steady_time now) {
    while (!entries_.empty() && now - entries_.front().stored >= opts_.max_age) evict_oldest();
  }

  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }
  std::size_t evicted() const noexcept { return evicted_; }

 private:
  struct entry {
    hashed_id id;  // with its hash: eviction erases it from index_ without hashing again
    zmq::message_t reply;
    steady_time stored;

    entry(const hashed_id& i, const zmq::message_t& r, steady_time at) : id(i), stored(at) {
      reply.copy(const_cast<zmq::message_t&>(r));  // zmq_msg_copy does not modify its source
    }
  };

  void evict_oldest() {
    index_.erase(entries_.front().id);
    bytes_ -= entries_.front().reply.size();
    entries_.pop_front();
    ++first_;
    ++evicted_;
  }

  reply_store_options opts_;
  std::deque<entry> entries_;
  std::uint64_t first_ = 0;  // sequence number of entries_.front()
  keyed_map<hashed_id, std::uint64_t> index_;
  std::size_t bytes_ = 0;
  std::size_t evicted_ = 0;
};

}  // namespace zmqkit::internal
