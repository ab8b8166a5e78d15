// The bounded recent-reply cache: a retried request whose reply the device
// already forwarded is answered from here instead of executing again.
// Oldest entries are evicted first. Private to patterns/queue; the storage is
// the library's one reply store (keyed hash: ids come from the network).
#pragma once

#include <cstddef>
#include <zmq.hpp>
#include <zmqkit/message_id.hpp>

#include <zmqkit/internal/reply_store.hpp>

namespace zmqkit::queue::detail {

class reply_cache {
 public:
  explicit reply_cache(std::size_t capacity, std::size_t max_bytes = std::size_t{256} << 20)
      : store_({.max_entries = capacity, .max_bytes = max_bytes}) {}

  // Keeps a copy of `reply` (shares the buffer of large frames) for `id`.
  // An id already cached gets the new reply and keeps its place in the order.
  void put(const internal::hashed_id& id, const zmq::message_t& reply) { store_.insert(id, reply, steady_time{}); }

  // Returns: the cached reply for `id`, or nullptr.
  const zmq::message_t* find(const internal::hashed_id& id) { return store_.find(id, steady_time{}); }

  std::size_t size() const noexcept { return store_.size(); }
  std::size_t bytes() const noexcept { return store_.bytes(); }

 private:
  internal::reply_store store_;  // no age limit: the device bounds it by count
};

}  // namespace zmqkit::queue::detail
