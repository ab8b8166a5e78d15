// The device's waiting room: requests grouped by priority, then by type, each
// group ordered by an order key (arrival order; requeued requests get keys
// below every other key, so they go to the head of their priority).
// Private to patterns/queue.
//
// Every operation costs O(log n) in the number of waiting types, or O(types
// matching a worker's prefixes), never a scan of every type: a peer can create
// as many types as the backlog bound allows, and the device thread must not
// slow down with them (taking work, stats, drain).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "order_queue.hpp"

namespace zmqkit::queue::detail {

class pending_queue {
 public:
  using handle = std::uint64_t;
  using group = order_queue;  // order key -> request

  // Returns: a key after every key handed out so far (FIFO position).
  std::int64_t next_back_key() noexcept { return ++back_; }
  // Returns: a key before every key handed out so far (head position).
  std::int64_t next_front_key() noexcept { return --front_; }

  void insert(handle h, std::uint8_t priority, std::string_view type, std::int64_t key);
  void erase(std::uint8_t priority, std::string_view type, std::int64_t key);

  // Returns: the most urgent, oldest request that a worker announcing
  // `prefixes` takes, removed from the queue; nullopt if there is none.
  // As worker::serves: no prefixes takes every type and plain bodies (type
  // ""); otherwise the non-empty types starting with one of the prefixes.
  std::optional<handle> pop_best(std::span<const std::string> prefixes);


  std::size_t size() const noexcept { return size_; }
  std::size_t size(std::uint8_t priority) const noexcept { return per_priority_[priority]; }
  // Returns: how many requests of `type` wait, at every priority.
  std::size_t count(std::string_view type) const {
    const auto it = per_type_.find(type);
    return it == per_type_.end() ? 0 : it->second.count;
  }
  // Returns: the `top` types with the longest backlogs, plain bodies as
  // "(plain)", and the rest summed as "(other)": bounded, whatever peers send.
  // Brings the backlog index up to date first (see type_count_entry).
  std::map<std::string, std::size_t> size_by_type(std::size_t top) const;

 private:
  // A type's backlog, and what by_backlog_ holds for it. Every request moves
  // a count, and only stats read the index: so a count that moved is only
  // marked (in stale_), and the index catches up when stats ask, or once the
  // marks outnumber the types (a bound on the marks and on the entries kept
  // at 0 for them). Not once per request.
  struct type_count_entry {
    std::size_t count = 0;
    std::size_t indexed = 0;  // its key in by_backlog_ (0: not in it)
    bool stale = false;       // listed in stale_
  };
  using type_counts = std::map<std::string, type_count_entry, std::less<>>;

  // The requests of one type at one priority, and that type's count (which
  // outlives the group: a type is counted while any of its requests waits).
  struct type_group {
    group entries;
    type_counts::iterator count;
  };
  using level = std::map<std::string, type_group, std::less<>>;
  // A group's place in heads_: its head's order key (unique: the order of the set).
  struct group_head {
    std::int64_t key;
    level::iterator group;
    bool operator<(const group_head& other) const noexcept { return key < other.key; }
  };

  void take(std::size_t priority, level::iterator g, std::int64_t key);
  void count_up(type_counts::iterator it);
  void count_down(type_counts::iterator it);
  void mark_stale(type_counts::iterator it) const;
  void reindex() const;

  std::array<level, 10> levels_;
  // Per priority, every group by its head's order key: the oldest group first.
  std::array<std::set<group_head>, 10> heads_;
  // Mutable: the backlog index is a cache that a read (size_by_type) brings up to date.
  mutable type_counts per_type_;  // requests waiting, by type (and types at 0 not yet reindexed)
  // (backlog, type) for every waiting type as of the last reindex(), the views
  // pointing into per_type_'s keys.
  mutable std::set<std::pair<std::size_t, std::string_view>> by_backlog_;
  mutable std::vector<type_counts::iterator> stale_;
  std::array<std::size_t, 10> per_priority_{};
  std::size_t size_ = 0;
  std::int64_t back_ = 0;
  std::int64_t front_ = 0;
};

}  // namespace zmqkit::queue::detail
