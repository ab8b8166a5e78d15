#include <cstring>
#include <zmqkit/reqrep/reply_cache.hpp>

namespace zmqkit::reqrep {

namespace {
constexpr std::size_t npos = static_cast<std::size_t>(-1);
constexpr std::size_t initial_ring = 64;
}  // namespace

std::uint32_t reply_cache::hash_of(const message_id& id) noexcept {
  const std::size_t h = std::hash<message_id>{}(id);
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

std::size_t reply_cache::locate(const message_id& id, std::uint32_t hash) const noexcept {
  if (index_.empty()) return npos;
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
    const index_cell& c = index_[i];
    if (c.slot_plus_one == 0) return npos;
    if (c.hash == hash && ring_[c.slot_plus_one - 1].id == id) return i;
  }
}

void reply_cache::index_insert(std::uint32_t hash, std::size_t slot) {
  const std::size_t mask = index_.size() - 1;
  std::size_t i = hash & mask;
  while (index_[i].slot_plus_one != 0) i = (i + 1) & mask;
  index_[i] = {static_cast<std::uint32_t>(slot + 1), hash};
}

// Linear probing deletion by backward shift: keeps every probe chain unbroken.
void reply_cache::index_erase(std::size_t cell) {
  const std::size_t mask = index_.size() - 1;
  std::size_t hole = cell;
  for (std::size_t j = (hole + 1) & mask; index_[j].slot_plus_one != 0; j = (j + 1) & mask) {
    const std::size_t home = index_[j].hash & mask;
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const bool home_between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_between) {
      index_[hole] = index_[j];
      hole = j;
    }
  }
  index_[hole] = {};
}

// Doubles the ring (up to max_entries) and rebuilds the index for the new slots.
void reply_cache::grow() {
  const std::size_t capacity = std::min(opts_.max_entries, std::max(initial_ring, ring_.size() * 2));
  std::vector<entry> bigger;
  bigger.reserve(capacity);
  for (std::size_t i = 0; i < count_; ++i) bigger.push_back(std::move(ring_[ring_pos(i)]));
  bigger.resize(capacity);
  ring_ = std::move(bigger);
  head_ = 0;
  std::size_t cells = 1;
  while (cells < capacity * 2) cells <<= 1;
  index_.assign(cells, index_cell{});
  for (std::size_t i = 0; i < count_; ++i) index_insert(hash_of(ring_[i].id), i);
}

void reply_cache::insert(const message_id& id, const zmq::message_t& reply, steady_time now) {
  if (opts_.max_entries == 0) return;
  expire(now);
  const std::uint32_t hash = hash_of(id);
  if (const std::size_t cell = locate(id, hash); cell != npos) {
    entry& e = ring_[index_[cell].slot_plus_one - 1];  // a newer reply for the same id: replace it
    e.reply.copy(const_cast<zmq::message_t&>(reply));
    return;
  }
  if (count_ == opts_.max_entries) erase_front();
  if (count_ == ring_.size()) grow();
  const std::size_t slot = ring_pos(count_);
  ring_[slot].id = id;
  ring_[slot].reply.copy(const_cast<zmq::message_t&>(reply));  // zmq_msg_copy does not modify its source
  ring_[slot].stored = now;
  ++count_;
  index_insert(hash, slot);
}

const zmq::message_t* reply_cache::find(const message_id& id, steady_time now) {
  expire(now);
  const std::size_t cell = locate(id, hash_of(id));
  return cell == npos ? nullptr : &ring_[index_[cell].slot_plus_one - 1].reply;
}

void reply_cache::expire(steady_time now) {
  while (count_ > 0 && now - ring_[head_].stored >= opts_.max_age) erase_front();
}

void reply_cache::erase_front() {
  entry& oldest = ring_[head_];
  if (const std::size_t cell = locate(oldest.id, hash_of(oldest.id)); cell != npos) index_erase(cell);
  oldest.reply.rebuild();  // release the buffer now, not when the slot is reused
  head_ = (head_ + 1) % ring_.size();
  --count_;
  ++evicted_;
}

}  // namespace zmqkit::reqrep
