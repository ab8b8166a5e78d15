// The requests of one pending group (one type at one priority) by order key.
// Private to patterns/queue.
//
// The device's keys come from two counters, one counting up (new requests:
// the back) and one counting down (requests taken back: the front), so a new
// key belongs at one end. A vector with room kept at its front takes both in
// O(1), as it pops the front, and allocates once per doubling rather than per
// request (a tree node each). A request leaving from the middle (answered,
// expired or cancelled while it waits) leaves a hole there: skipped, and
// compacted away once holes outnumber the requests. A key that belongs in the
// middle is inserted there, in O(n): the device never makes one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace zmqkit::queue::detail {

class order_queue {
 public:
  using handle = std::uint64_t;  // 0 is not a handle (it marks a hole)

  bool empty() const noexcept { return live_ == 0; }
  std::size_t size() const noexcept { return live_; }
  // The oldest entry (the smallest key). Requires !empty().
  std::int64_t front_key() const noexcept { return slots_[first_].key; }
  handle front() const noexcept { return slots_[first_].request; }

  // Returns: false when `key` is there already (nothing changes).
  bool insert(std::int64_t key, handle h) {
    if (empty()) {
      slots_.clear();
      first_ = 0;
      slots_.push_back({key, h});
    } else if (key > slots_.back().key) {
      slots_.push_back({key, h});
    } else if (key < front_key()) {
      if (first_ == 0) make_room_at_front();
      slots_[--first_] = {key, h};
    } else {
      const auto at = find(key);
      if (at != slots_.end() && at->key == key) {
        if (at->request) return false;
        at->request = h;  // a hole of the same key is filled again
      } else {
        slots_.insert(at, {key, h});
      }
    }
    ++live_;
    return true;
  }

  // Returns: whether `key` was there.
  bool erase(std::int64_t key) {
    if (empty()) return false;
    const auto at = key == front_key() ? slots_.begin() + static_cast<std::ptrdiff_t>(first_) : find(key);
    if (at == slots_.end() || at->key != key || !at->request) return false;
    at->request = 0;
    --live_;
    trim();
    return true;
  }

 private:
  struct slot {
    std::int64_t key;
    handle request;  // 0: a hole
  };

  std::vector<slot>::iterator find(std::int64_t key) {
    return std::lower_bound(slots_.begin() + static_cast<std::ptrdiff_t>(first_), slots_.end(), key,
                            [](const slot& s, std::int64_t k) { return s.key < k; });
  }

  // Keeps both ends live, and the storage in proportion to what it holds.
  void trim() {
    if (live_ == 0) {
      slots_.clear();
      first_ = 0;
      return;
    }
    while (!slots_[first_].request) ++first_;
    while (!slots_.back().request) slots_.pop_back();
    const std::size_t held = slots_.size() - first_;
    if (held - live_ > live_ + 32) {  // holes outnumber requests
      const auto begin = slots_.begin() + static_cast<std::ptrdiff_t>(first_);
      slots_.erase(std::remove_if(begin, slots_.end(), [](const slot& s) { return !s.request; }), slots_.end());
    }
    if (first_ > 32 && first_ > slots_.size() / 2) {  // popped front: give the room back
      slots_.erase(slots_.begin(), slots_.begin() + static_cast<std::ptrdiff_t>(first_));
      first_ = 0;
    }
    if (slots_.capacity() > 64 && slots_.size() < slots_.capacity() / 4) slots_.shrink_to_fit();
  }

  void make_room_at_front() {
    const std::size_t room = std::max<std::size_t>(slots_.size(), 8);
    slots_.insert(slots_.begin(), room, slot{0, 0});
    first_ = room;
  }

  std::vector<slot> slots_;
  std::size_t first_ = 0;  // slots_[0, first_): room at the front (not holes: never read)
  std::size_t live_ = 0;   // entries that are not holes
};

}  // namespace zmqkit::queue::detail
