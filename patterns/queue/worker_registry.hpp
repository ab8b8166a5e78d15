// The device's workers: identity, served type prefixes, capacity (how many
// requests it may hold at once), liveness, the requests it holds, and the
// least-recently-used order of the ones with a free slot.
// Private to patterns/queue.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/message_id.hpp>

#include <zmqkit/internal/keyed_hash.hpp>

namespace zmqkit::queue::detail {

// An address stack as a reply that carries no correlation id echoes it: what
// such a reply is matched by. A direct client's stack (one frame, its ROUTER
// identity: 5 bytes when libzmq makes it) is kept as it is and compared
// exactly; a longer one by a keyed hash of its length-prefixed frames, so
// peers, who choose the frames, cannot craft two stacks that compare equal.
class route_fingerprint {
 public:
  route_fingerprint() = default;
  explicit route_fingerprint(std::span<const zmq::message_t> frames) {
    if (const std::size_t size = frames.size() == 1 ? frames[0].size() : sizeof words_; size < sizeof words_) {
      char bytes[sizeof words_] = {static_cast<char>(size)};
      if (size) std::memcpy(bytes + 1, frames[0].data(), size);
      std::memcpy(words_.data(), bytes, sizeof bytes);
    } else {
      words_ = {hashed_tag, hash(frames)};
    }
  }
  bool operator==(const route_fingerprint&) const = default;

 private:
  static constexpr std::uint64_t hashed_tag = 0xff;  // a first byte no kept frame has (its size is < 16)

  // Laid out on the stack when it fits (bounded address stacks mostly do): this
  // runs for every delivery to, and reply from, a multi-slot worker.
  static std::uint64_t hash(std::span<const zmq::message_t> frames) {
    std::array<char, 256> small;
    std::size_t used = 0;
    for (const zmq::message_t& frame : frames) used += sizeof(std::uint32_t) + frame.size();
    std::string large;
    char* const out = used <= small.size() ? small.data() : (large.resize(used), large.data());
    char* at = out;
    for (const zmq::message_t& frame : frames) {
      const auto size = static_cast<std::uint32_t>(frame.size());
      std::memcpy(at, &size, sizeof size);
      at += sizeof size;
      if (size) std::memcpy(at, frame.data(), size);
      at += size;
    }
    return internal::keyed_hash_bytes(std::string_view(out, used));
  }

  std::array<std::uint64_t, 2> words_{};
};

// A request at a worker: its id (a ZMK/1 reply names it as correlation_id), and
// the address stack it was sent with (matches a reply that carries no
// correlation id by the frames it echoes).
struct held_request {
  std::uint64_t request = 0;
  std::optional<message_id> id;  // none for a plain body
  route_fingerprint route;
  std::uint64_t delivery = 0;  // the request's delivery number when it was sent here
};

// The requests a worker holds, in delivery order. Replies mostly come back in
// that order, so releasing the oldest moves a start index rather than every
// other entry (as a vector's erase would); the released front is dropped once
// it is half the storage.
class held_list {
 public:
  held_list() = default;
  // A copy leaves the released front out; a moved-from list is empty.
  held_list(const held_list& other) : items_(other.items().begin(), other.items().end()) {}
  held_list(held_list&& other) noexcept
      : items_(std::exchange(other.items_, {})), first_(std::exchange(other.first_, 0)) {}
  held_list& operator=(held_list other) noexcept {
    items_ = std::move(other.items_);
    first_ = other.first_;
    return *this;
  }

  std::size_t size() const noexcept { return items_.size() - first_; }
  bool empty() const noexcept { return size() == 0; }
  held_request& operator[](std::size_t i) { return items_[first_ + i]; }
  const held_request& operator[](std::size_t i) const { return items_[first_ + i]; }
  std::span<const held_request> items() const noexcept { return std::span(items_).subspan(first_); }

  void push_back(held_request held) { items_.push_back(std::move(held)); }
  void erase(std::size_t i) {
    if (i > 0) {
      items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(first_ + i));
    } else if (++first_ == items_.size()) {
      clear();
    } else if (2 * first_ > items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(first_));
      first_ = 0;
    }
  }
  void clear() noexcept {
    items_.clear();
    first_ = 0;
  }

 private:
  std::vector<held_request> items_;
  std::size_t first_ = 0;  // items_[0, first_) are released
};

struct worker {
  std::string identity;
  std::vector<std::string> prefixes;  // empty: serves every type, and plain bodies
  std::size_t capacity = 1;           // requests it may hold at once (READY's credit)
  steady_time last_seen{};
  held_list holding;
  bool ready = false;                 // in the LRU list: it has a free slot
  std::list<worker*>::iterator lru_position{};  // in the LRU list, or the busy one

  bool full() const noexcept { return holding.size() >= capacity; }

  // A plain body (empty type) goes only to workers that listed no prefixes.
  bool serves(std::string_view type) const noexcept {
    if (prefixes.empty()) return true;
    if (type.empty()) return false;
    for (const auto& p : prefixes)
      if (type.starts_with(p)) return true;
    return false;
  }
};

// Invariant: a worker is in the LRU list (ready) exactly when it holds fewer
// requests than its capacity; the others (at capacity) are in the busy list,
// and busy_ counts them.
class worker_registry {
 public:
  // Every reply looks its worker up. The workers found lately sit in a small
  // cache, indexed by the identity's last byte (libzmq's identities count up
  // there) and checked by comparing the whole identity: a few bytes' compare
  // instead of a SipHash per message. Chosen identities can only make it miss.
  worker* find(std::string_view identity) {
    worker*& cached = recent_[identity.empty() ? 0 : static_cast<unsigned char>(identity.back()) % recent_.size()];
    if (cached && cached->identity == identity) return cached;
    const auto it = workers_.find(identity);
    if (it == workers_.end()) return nullptr;
    cached = it->second.get();
    return cached;
  }

  // Adds an idle worker at the back of the LRU list.
  worker& add(std::string identity, std::vector<std::string> prefixes, std::size_t capacity,
              steady_time now) {
    auto w = std::make_unique<worker>();
    w->identity = identity;
    w->prefixes = std::move(prefixes);
    w->capacity = capacity;
    w->last_seen = now;
    recent_.fill(nullptr);  // the slot may have held another worker of that identity
    auto& slot = workers_[std::move(identity)];
    slot = std::move(w);
    slots_ += capacity;
    slot->lru_position = busy_list_.insert(busy_list_.end(), slot.get());
    ++busy_;
    enter_lru(*slot);
    return *slot;
  }

  // Changes an idle worker's prefixes and capacity and ranks it as just idle.
  void reconfigure(worker& w, std::vector<std::string> prefixes, std::size_t capacity) {
    leave_lru(w);
    slots_ = slots_ - w.capacity + capacity;
    w.prefixes = std::move(prefixes);
    w.capacity = capacity;
    enter_lru(w);
  }

  // Forgets `w`; the caller has dealt with the requests it held.
  void remove(worker& w) {
    leave_lru(w);
    --busy_;
    busy_list_.erase(w.lru_position);
    slots_ -= w.capacity;
    recent_.fill(nullptr);
    const std::string identity = w.identity;  // w dies in erase
    workers_.erase(identity);
    // Give memory back once most workers have left (a flood of registrations
    // must not keep its peak table for ever).
    if (workers_.size() < workers_.capacity() / 4) workers_.rehash(0);
  }

  // `w` (ready) takes a request: it becomes the most recently used, or busy when full.
  void use(worker& w, held_request held) {
    leave_lru(w);
    w.holding.push_back(std::move(held));
    if (!w.full()) enter_lru(w);
  }

  // `w` gives back the request at `index` of its holding list. A worker that
  // was full joins the back of the LRU list; one that had a free slot keeps
  // its place (it was not used).
  void release(worker& w, std::size_t index) {
    const bool was_full = w.full();
    w.holding.erase(index);
    if (was_full && !w.full()) enter_lru(w);
  }

  // Returns: the least recently used worker with a free slot serving `type`, or nullptr.
  worker* lru_serving(std::string_view type) {
    for (worker* w : ready_)
      if (w->serves(type)) return w;
    return nullptr;
  }

  // Returns: whether any connected worker (ready or busy) serves `type`.
  bool any_serves(std::string_view type) const {
    for (const auto& [id, w] : workers_)
      if (w->serves(type)) return true;
    return false;
  }

  template <class Fn>
  void for_each(Fn&& fn) {
    for (auto& [id, w] : workers_) fn(*w);
  }

  // Returns: the identities of every worker whose last message is older than `deadline`.
  std::vector<std::string> silent_since(steady_time deadline) const {
    std::vector<std::string> out;
    for (const auto& [id, w] : workers_)
      if (w->last_seen < deadline) out.push_back(id);
    return out;
  }

  std::size_t size() const noexcept { return workers_.size(); }
  std::size_t ready_count() const noexcept { return ready_.size(); }  // with a free slot
  std::size_t busy_count() const noexcept { return busy_; }           // at capacity
  std::size_t slot_count() const noexcept { return slots_; }          // sum of capacities

 private:
  // A worker's node moves between the two lists (splice): using a worker and
  // freeing a slot allocate nothing.
  void enter_lru(worker& w) {
    if (w.ready) return;
    ready_.splice(ready_.end(), busy_list_, w.lru_position);
    w.ready = true;
    --busy_;
  }
  void leave_lru(worker& w) {
    if (!w.ready) return;
    busy_list_.splice(busy_list_.end(), ready_, w.lru_position);
    w.ready = false;
    ++busy_;
  }

  internal::keyed_map<std::string, std::unique_ptr<worker>> workers_;  // keyed: identities are chosen by peers
  std::list<worker*> ready_;      // with a free slot, least recently used first
  std::list<worker*> busy_list_;  // the others (and, inside use(), the one being used)
  std::array<worker*, 16> recent_{};  // see find()
  std::size_t busy_ = 0;
  std::size_t slots_ = 0;
};

}  // namespace zmqkit::queue::detail
