#include "pending_queue.hpp"

namespace zmqkit::queue::detail {
namespace {

// Changes the value of one element of an ordered set, reusing its node: the
// indexes below change on every insert and take, and must not allocate each time.
template <class Set>
void rekey(Set& set, const typename Set::value_type& from, typename Set::value_type to) {
  auto node = set.extract(from);
  node.value() = std::move(to);
  set.insert(std::move(node));
}

}  // namespace

void pending_queue::insert(handle h, std::uint8_t priority, std::string_view type, std::int64_t key) {
  auto& l = levels_[priority];
  auto it = l.find(type);
  if (it == l.end()) it = l.emplace(std::string(type), group{}).first;
  group& g = it->second;
  const std::optional<std::int64_t> old_head = g.empty() ? std::nullopt : std::optional(g.begin()->first);
  if (!g.emplace(key, h).second) return;
  if (!old_head)
    heads_[priority].emplace(key, it->first);
  else if (key < *old_head)
    rekey(heads_[priority], {*old_head, it->first}, {key, it->first});
  count_up(type);
  ++size_;
  ++per_priority_[priority];
}

void pending_queue::erase(std::uint8_t priority, std::string_view type, std::int64_t key) {
  auto& l = levels_[priority];
  const auto it = l.find(type);
  if (it == l.end()) return;
  const auto entry = it->second.find(key);
  if (entry != it->second.end()) take(priority, it, entry);
}

// Removes one request, keeping the head index and the counts right.
void pending_queue::take(std::size_t priority, level::iterator g, group::iterator entry) {
  const bool was_head = entry == g->second.begin();
  const std::int64_t key = entry->first;
  g->second.erase(entry);
  count_down(g->first);
  --size_;
  --per_priority_[priority];
  if (g->second.empty()) {
    heads_[priority].erase({key, g->first});
    levels_[priority].erase(g);
  } else if (was_head) {
    rekey(heads_[priority], {key, g->first}, {g->second.begin()->first, g->first});
  }
}

std::optional<pending_queue::handle> pending_queue::pop_best(std::span<const std::string> prefixes) {
  for (std::size_t p = levels_.size(); p-- > 0;) {
    auto& by_type = levels_[p];
    if (by_type.empty()) continue;
    auto best = by_type.end();
    if (prefixes.empty()) {
      best = by_type.find(heads_[p].begin()->second);
    } else {
      // Types sharing a prefix are adjacent in the map: visit only those.
      for (const auto& prefix : prefixes)
        for (auto it = by_type.lower_bound(prefix); it != by_type.end() && it->first.starts_with(prefix); ++it)
          if (!it->first.empty() &&
              (best == by_type.end() || it->second.begin()->first < best->second.begin()->first))
            best = it;
    }
    if (best == by_type.end()) continue;
    const handle h = best->second.begin()->second;
    take(p, best, best->second.begin());
    return h;
  }
  return std::nullopt;
}

void pending_queue::count_up(std::string_view type) {
  auto it = per_type_.find(type);
  if (it == per_type_.end()) {
    it = per_type_.emplace(std::string(type), 1).first;
    by_backlog_.emplace(1, it->first);
  } else {
    rekey(by_backlog_, {it->second, it->first}, {it->second + 1, it->first});
    ++it->second;
  }
}

void pending_queue::count_down(std::string_view type) {
  const auto it = per_type_.find(type);
  if (it->second == 1) {
    by_backlog_.erase({1, it->first});
    per_type_.erase(it);
  } else {
    rekey(by_backlog_, {it->second, it->first}, {it->second - 1, it->first});
    --it->second;
  }
}

std::map<std::string, std::size_t> pending_queue::size_by_type(std::size_t top) const {
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
