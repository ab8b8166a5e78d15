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

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/message_id.hpp>

namespace zmqkit::reqrep {

struct reply_cache_options {
  std::size_t max_entries = 10000;  // 0 disables the cache
  std::chrono::milliseconds max_age{60000};
};

class reply_cache {
 public:
  explicit reply_cache(reply_cache_options opts = {}) : opts_(opts) {}

  // Stores a copy of `reply` (zmq shares large buffers, so this is cheap).
  // Replaces an existing entry for the same id.
  void insert(const message_id& id, const zmq::message_t& reply, steady_time now);
  // Returns: the cached reply, or nullptr when absent or expired.
  const zmq::message_t* find(const message_id& id, steady_time now);
  // Drops entries older than max_age.
  void expire(steady_time now);

  std::size_t size() const noexcept { return count_; }
  std::size_t evicted() const noexcept { return evicted_; }

 private:
  // Entries live in a ring in insertion order (so eviction, by count or by age,
  // always takes the oldest), indexed by an open-addressing table of slots:
  // no allocation per entry and few cache misses per lookup.
  struct entry {
    message_id id;
    zmq::message_t reply;
    steady_time stored;
  };
  struct index_cell {
    std::uint32_t slot_plus_one = 0;  // 0 = empty
    std::uint32_t hash = 0;
  };
  static std::uint32_t hash_of(const message_id& id) noexcept;
  std::size_t ring_pos(std::size_t nth_oldest) const noexcept { return (head_ + nth_oldest) % ring_.size(); }
  std::size_t locate(const message_id& id, std::uint32_t hash) const noexcept;  // index cell or npos
  void index_insert(std::uint32_t hash, std::size_t slot);
  void index_erase(std::size_t cell);
  void grow();
  void erase_front();

  reply_cache_options opts_;
  std::vector<entry> ring_;
  std::size_t head_ = 0;  // oldest entry
  std::size_t count_ = 0;
  std::vector<index_cell> index_;  // size a power of two, at least twice the ring
  std::size_t evicted_ = 0;
};

}  // namespace zmqkit::reqrep
