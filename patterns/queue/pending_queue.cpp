#include "pending_queue.hpp"

#include <iterator>

namespace zmqkit::queue::detail {
namespace {

// Changes the value of one element of an ordered set, reusing its node: the
// indexes below change on every insert and take, and must not allocate each
// time. When the new value keeps the element's place (a group's head moving
// back while it stays the oldest: every FIFO pop with one type waiting), it is
// written in place: no unlinking and rebalancing.
template <class Set>
void rekey(Set& set, const typename Set::value_type& from, typename Set::value_type to) {
  const auto it = set.find(from);
  if (it == set.end()) return;
  const bool after_previous = it == set.begin() || *std::prev(it) < to;
  const auto next = std::next(it);
  if (after_previous && (next == set.end() || to < *next)) {
    // Safe: the element's order among its neighbours is unchanged.
    const_cast<typename Set::value_type&>(*it) = std::move(to);
    return;
  }
  auto node = set.extract(it);
  node.value() = std::move(to);
  set.insert(std::move(node));
}

}  // namespace

void pending_queue::insert(handle h, std::uint8_t priority, std::string_view type, std::int64_t key) {
  auto& l = levels_[priority];
  auto it = l.find(type);
  if (it == l.end()) {
    auto count = per_type_.find(type);
    if (count == per_type_.end()) count = per_type_.emplace(std::string(type), type_count_entry{}).first;
    it = l.emplace(std::string(type), type_group{{}, count}).first;
  }
  group& g = it->second.entries;
  const std::optional<std::int64_t> old_head = g.empty() ? std::nullopt : std::optional(g.front_key());
  if (!g.insert(key, h)) return;  // the key was there already
  if (!old_head)
    heads_[priority].insert({key, it});
  else if (key < *old_head)
    rekey(heads_[priority], {*old_head, it}, {key, it});
  count_up(it->second.count);
  ++size_;
  ++per_priority_[priority];
}

void pending_queue::erase(std::uint8_t priority, std::string_view type, std::int64_t key) {
  auto& l = levels_[priority];
  const auto it = l.find(type);
  if (it == l.end()) return;
  take(priority, it, key);
}

// Removes one request, keeping the head index and the counts right.
void pending_queue::take(std::size_t priority, level::iterator g, std::int64_t key) {
  group& entries = g->second.entries;
  const bool was_head = key == entries.front_key();
  if (!entries.erase(key)) return;
  count_down(g->second.count);
  --size_;
  --per_priority_[priority];
  if (entries.empty()) {
    heads_[priority].erase({key, g});
    levels_[priority].erase(g);
  } else if (was_head) {
    rekey(heads_[priority], {key, g}, {entries.front_key(), g});
  }
}

std::optional<pending_queue::handle> pending_queue::pop_best(std::span<const std::string> prefixes) {
  for (std::size_t p = levels_.size(); p-- > 0;) {
    auto& by_type = levels_[p];
    if (by_type.empty()) continue;
    auto best = by_type.end();
    if (prefixes.empty()) {
      best = heads_[p].begin()->group;
    } else {
      // Types sharing a prefix are adjacent in the map: visit only those.
      for (const auto& prefix : prefixes)
        for (auto it = by_type.lower_bound(prefix); it != by_type.end() && it->first.starts_with(prefix); ++it)
          if (!it->first.empty() &&
              (best == by_type.end() || it->second.entries.front_key() < best->second.entries.front_key()))
            best = it;
    }
    if (best == by_type.end()) continue;
    const handle h = best->second.entries.front();
    take(p, best, best->second.entries.front_key());
    return h;
  }
  return std::nullopt;
}

void pending_queue::count_up(type_counts::iterator it) {
  ++it->second.count;
  mark_stale(it);
}

void pending_queue::count_down(type_counts::iterator it) {
  --it->second.count;  // kept at 0 until reindex(): by_backlog_ may point at its key
  mark_stale(it);
}

void pending_queue::mark_stale(type_counts::iterator it) const {
  if (it->second.stale) return;
  it->second.stale = true;
  stale_.push_back(it);
  if (stale_.size() > 2 * (by_backlog_.size() + 64)) reindex();
}

void pending_queue::reindex() const {
  for (const auto it : stale_) {
    type_count_entry& e = it->second;
    const std::string_view name = it->first;
    if (e.indexed && e.count)
      rekey(by_backlog_, {e.indexed, name}, {e.count, name});
    else if (e.indexed)
      by_backlog_.erase({e.indexed, name});
    else if (e.count)
      by_backlog_.emplace(e.count, name);
    e.indexed = e.count;
    e.stale = false;
  }
  // Entries at 0 go once nothing points at them (each is listed once in stale_).
  for (const auto it : stale_)
    if (it->second.count == 0) per_type_.erase(it);
  stale_.clear();
}

std::map<std::string, std::size_t> pending_queue::size_by_type(std::size_t top) const {
  reindex();
  std::map<std::string, std::size_t> out;
  std::size_t listed = 0;
  for (auto it = by_backlog_.rbegin(); it != by_backlog_.rend() && out.size() < top; ++it) {
    out[it->second.empty() ? std::string("(plain)") : std::string(it->second)] = it->first;
    listed += it->first;
  }
  if (listed < size_) out["(other)"] = size_ - listed;
  return out;
}

}  // namespace zmqkit::queue::detail
