// The bounded recent-reply cache: a retried request whose reply the device
// already forwarded is answered from here instead of executing again.
// Oldest entries are evicted first. Private to patterns/queue.
//
// It is looked up for every request and written for every reply, so it is
// flat: the replies sit in a ring (insertion order = eviction order) and an
// open-addressing index (linear probing, backward-shift deletion) maps ids to
// ring slots. A node-based map cost the device ~15 % of its throughput in
// cache misses. Both grow on demand up to the capacity.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/message_id.hpp>

namespace zmqkit::queue::detail {

class reply_cache {
 public:
  explicit reply_cache(std::size_t capacity) : capacity_(std::min<std::size_t>(capacity, max_entries)) {
    std::random_device dev;
    for (auto& k : key_) k = (std::uint64_t{dev()} << 32) ^ dev();
  }

  // Keeps a copy of `reply` (shares the buffer of large frames) for `id`.
  // An id already cached gets the new reply and keeps its place in the order.
  void put(const message_id& id, const zmq::message_t& reply) {
    if (capacity_ == 0) return;
    if (index_.empty()) grow();
    const std::uint32_t h = hash(id);
    if (const auto pos = position(id, h); index_[pos].slot != empty) {
      ring_[index_[pos].slot - 1].reply.copy(const_cast<zmq::message_t&>(reply));
      return;
    }
    std::size_t slot;
    if (ring_.size() < capacity_) {
      slot = ring_.size();
      ring_.emplace_back();
    } else {
      slot = next_;  // the oldest: evict it
      unindex(ring_[slot].id);
      next_ = (next_ + 1) % capacity_;
    }
    ring_[slot].id = id;
    ring_[slot].reply.copy(const_cast<zmq::message_t&>(reply));
    if ((indexed_ + 1) * 2 > index_.size()) grow();
    index_[position(id, h)] = {h, static_cast<std::uint32_t>(slot + 1)};
    ++indexed_;
  }

  // Returns: the cached reply for `id`, or nullptr.
  const zmq::message_t* find(const message_id& id) const {
    if (indexed_ == 0) return nullptr;
    const auto& b = index_[position(id, hash(id))];
    return b.slot == empty ? nullptr : &ring_[b.slot - 1].reply;
  }

  std::size_t size() const noexcept { return indexed_; }

 private:
  static constexpr std::uint32_t empty = 0;
  static constexpr std::size_t max_entries = 0xfffffffeu;  // slots are 32-bit
  struct entry {
    message_id id;
    zmq::message_t reply;
  };
  // 8 bytes, so a probe touches one cache line and a miss never reads the ring.
  struct bucket {
    std::uint32_t hash = 0;      // the id's hash: its home, and a cheap filter
    std::uint32_t slot = empty;  // ring index + 1
  };

  // Keyed per cache: ids come from the network, and std::hash<message_id> is
  // not, so crafted ids could otherwise pile into one probe sequence.
  static std::uint64_t mix(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  static void halves(const message_id& id, std::uint64_t& hi, std::uint64_t& lo) noexcept {
    std::memcpy(&hi, id.bytes.data(), 8);
    std::memcpy(&lo, id.bytes.data() + 8, 8);
  }
  std::uint32_t hash(const message_id& id) const noexcept {
    std::uint64_t hi, lo;
    halves(id, hi, lo);
    return static_cast<std::uint32_t>(mix(hi ^ key_[0]) + mix(lo ^ key_[1]));
  }
  static bool same(const message_id& a, const message_id& b) noexcept {
    std::uint64_t ah, al, bh, bl;
    halves(a, ah, al);
    halves(b, bh, bl);
    return ah == bh && al == bl;
  }
  std::size_t mask() const noexcept { return index_.size() - 1; }

  // Returns: the bucket holding `id`, or the empty bucket where it would go.
  // The index is never more than half full, so an empty bucket exists.
  std::size_t position(const message_id& id, std::uint32_t h) const noexcept {
    std::size_t i = h & mask();
    while (index_[i].slot != empty && !(index_[i].hash == h && same(ring_[index_[i].slot - 1].id, id)))
      i = (i + 1) & mask();
    return i;
  }

  // Removes `id` from the index, shifting back the entries that probed past it.
  void unindex(const message_id& id) {
    std::size_t hole = position(id, hash(id));
    if (index_[hole].slot == empty) return;
    for (std::size_t j = (hole + 1) & mask(); index_[j].slot != empty; j = (j + 1) & mask()) {
      // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
      const std::size_t home = index_[j].hash & mask();
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (stays) continue;
      index_[hole] = index_[j];
      hole = j;
    }
    index_[hole].slot = empty;
    --indexed_;
  }

  void grow() {
    std::vector<bucket> old = std::move(index_);
    index_.assign(old.empty() ? 16 : old.size() * 2, bucket{});
    for (const auto& b : old) {
      if (b.slot == empty) continue;
      std::size_t i = b.hash & mask();
      while (index_[i].slot != empty) i = (i + 1) & mask();
      index_[i] = b;
    }
  }

  std::size_t capacity_;
  std::uint64_t key_[2];
  std::vector<entry> ring_;  // grows to capacity_, then is overwritten from next_
  std::size_t next_ = 0;     // the oldest slot once the ring is full
  std::vector<bucket> index_;
  std::size_t indexed_ = 0;
};

}  // namespace zmqkit::queue::detail
