// zmqkit/reqrep/reply_cache.hpp — recent replies by request id, bounded in
// size and age, so a retried request is answered without running it again.
//
//   ```cpp
//   zmqkit::manual_clock clock;
//   zmqkit::reqrep::reply_cache cache({.max_entries = 10000, .max_age = 60s});
//   zmqkit::envelope request = zmqkit::make_envelope("price.get");
//   zmq::message_t encoded_reply = zmqkit::encode(zmqkit::make_reply(request, "price.quote"));
//   cache.insert(request.id, encoded_reply, clock.now());
//   if (const zmq::message_t* hit = cache.find(request.id, clock.now())) use(*hit);  // resend it
//   ```
//
// Eviction is oldest-first: by insertion order when full, and every entry
// older than max_age. Not thread-safe (one per poll loop).
#pragma once

#include <chrono>
#include <cstddef>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/message_id.hpp>
#include <zmqkit/pimpl.hpp>

namespace zmqkit::reqrep {

struct reply_cache_options {
  std::size_t max_entries = 10000;  // 0 disables the cache
  // The sum of the cached replies' sizes; past it the oldest are evicted, and a
  // reply larger than this is not cached.
  std::size_t max_bytes = std::size_t{256} << 20;
  std::chrono::milliseconds max_age{60000};
};

class reply_cache {
 public:
  explicit reply_cache(reply_cache_options opts = {});

  // Stores a copy of `reply` (zmq shares large buffers, so this is cheap).
  // Replaces an existing entry for the same id.
  void insert(const message_id& id, const zmq::message_t& reply, steady_time now);
  // Returns: the cached reply, or nullptr when absent or expired.
  const zmq::message_t* find(const message_id& id, steady_time now);
  // Drops entries older than max_age.
  void expire(steady_time now);

  std::size_t size() const noexcept;
  std::size_t bytes() const noexcept;  // the sum of the cached replies' sizes
  std::size_t evicted() const noexcept;

 private:
  // Ids come from the network: the store behind this uses a keyed hash (no
  // crafted ids can pile into one bucket); it lives in the .cpp.
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::reqrep

extern template struct zmqkit::pimpl_deleter<zmqkit::reqrep::reply_cache::impl>;
