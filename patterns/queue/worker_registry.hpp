// The device's workers: identity, served type prefixes, capacity (how many
// requests it may hold at once), liveness, the requests it holds, and the
// least-recently-used order of the ones with a free slot.
// Private to patterns/queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmqkit/clock.hpp>
#include <zmqkit/message_id.hpp>

#include <zmqkit/internal/keyed_hash.hpp>

namespace zmqkit::queue::detail {

// A request at a worker: its id (a ZMK/1 reply names it as correlation_id), and
// a hash of the address stack it was sent with (matches a reply that carries no
// correlation id by the frames it echoes).
struct held_request {
  std::uint64_t request = 0;
  std::optional<message_id> id;  // none for a plain body
  std::size_t route_hash = 0;
  std::uint64_t delivery = 0;  // the request's delivery number when it was sent here
};

struct worker {
  std::string identity;
  std::vector<std::string> prefixes;  // empty: serves every type, and plain bodies
  std::size_t capacity = 1;           // requests it may hold at once (READY's credit)
  steady_time last_seen{};
  std::vector<held_request> holding;  // in delivery order
  bool ready = false;                 // in the LRU list: it has a free slot
  std::list<worker*>::iterator lru_position{};

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
// requests than its capacity; busy_ counts the others (at capacity).
class worker_registry {
 public:
  // Replies come in runs from one worker (a batch of its replies in one
  // read): the last one found is compared first, which costs a few bytes'
  // compare instead of a SipHash of the identity per message.
  worker* find(std::string_view identity) {
    if (last_found_ && last_found_->identity == identity) return last_found_;
    const auto it = workers_.find(identity);
    if (it == workers_.end()) return nullptr;
    last_found_ = it->second.get();
    return last_found_;
  }

  // Adds an idle worker at the back of the LRU list.
  worker& add(std::string identity, std::vector<std::string> prefixes, std::size_t capacity,
              steady_time now) {
    auto w = std::make_unique<worker>();
    w->identity = identity;
    w->prefixes = std::move(prefixes);
    w->capacity = capacity;
    w->last_seen = now;
    last_found_ = nullptr;  // the slot may have held another worker of that identity
    auto& slot = workers_[std::move(identity)];
    slot = std::move(w);
    slots_ += capacity;
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
    if (w.ready)
      leave_lru(w);
    else
      --busy_;
    slots_ -= w.capacity;
    if (last_found_ == &w) last_found_ = nullptr;
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
    if (w.full())
      ++busy_;
    else
      enter_lru(w);
  }

  // `w` gives back the request at `index` of its holding list. A worker that
  // was full joins the back of the LRU list; one that had a free slot keeps
  // its place (it was not used).
  void release(worker& w, std::size_t index) {
    const bool was_full = w.full();
    w.holding.erase(w.holding.begin() + static_cast<std::ptrdiff_t>(index));
    if (was_full && !w.full()) {
      --busy_;
      enter_lru(w);
    }
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
  void enter_lru(worker& w) {
    w.ready = true;
    w.lru_position = ready_.insert(ready_.end(), &w);
  }
  void leave_lru(worker& w) {
    if (!w.ready) return;
    ready_.erase(w.lru_position);
    w.ready = false;
  }

  internal::keyed_map<std::string, std::unique_ptr<worker>> workers_;  // keyed: identities are chosen by peers
  std::list<worker*> ready_;
  worker* last_found_ = nullptr;  // see find()
  std::size_t busy_ = 0;
  std::size_t slots_ = 0;
};

}  // namespace zmqkit::queue::detail
