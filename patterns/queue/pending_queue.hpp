// The device's waiting room: requests grouped by priority, then by type, each
// group ordered by an order key (arrival order; requeued requests get keys
// below every other key, so they go to the head of their priority).
// Private to patterns/queue.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace zmqkit::queue::detail {

class pending_queue {
 public:
  using handle = std::uint64_t;
  using group = std::map<std::int64_t, handle>;  // order key -> request
  using level = std::map<std::string, group, std::less<>>;

  // Returns: a key after every key handed out so far (FIFO position).
  std::int64_t next_back_key() noexcept { return ++back_; }
  // Returns: a key before every key handed out so far (head position).
  std::int64_t next_front_key() noexcept { return --front_; }

  void insert(handle h, std::uint8_t priority, std::string_view type, std::int64_t key);
  void erase(std::uint8_t priority, std::string_view type, std::int64_t key);

  // Returns: the most urgent, oldest request whose type `serves(type)` accepts,
  // removed from the queue; nullopt if there is none.
  template <class Serves>
  std::optional<handle> pop_best(Serves&& serves) {
    for (std::size_t p = levels_.size(); p-- > 0;) {
      auto& by_type = levels_[p];
      auto best = by_type.end();
      for (auto it = by_type.begin(); it != by_type.end(); ++it)
        if (serves(std::string_view(it->first)) &&
            (best == by_type.end() || it->second.begin()->first < best->second.begin()->first))
          best = it;
      if (best == by_type.end()) continue;
      const handle h = best->second.begin()->second;
      best->second.erase(best->second.begin());
      uncount(best->first);
      if (best->second.empty()) by_type.erase(best);
      --size_;
      --per_priority_[p];
      return h;
    }
    return std::nullopt;
  }

  // Visits every group: fn(priority, type, group&). fn must not insert or erase.
  template <class Fn>
  void for_each_group(Fn&& fn) const {
    for (std::size_t p = 0; p < levels_.size(); ++p)
      for (const auto& [type, g] : levels_[p]) fn(static_cast<std::uint8_t>(p), std::string_view(type), g);
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t size(std::uint8_t priority) const noexcept { return per_priority_[priority]; }
  // Returns: how many requests of `type` wait, at every priority.
  std::size_t count(std::string_view type) const {
    const auto it = per_type_.find(type);
    return it == per_type_.end() ? 0 : it->second;
  }
  std::map<std::string, std::size_t> size_by_type() const;

 private:
  void uncount(std::string_view type) {
    const auto it = per_type_.find(type);
    if (--it->second == 0) per_type_.erase(it);
  }

  std::array<level, 10> levels_;
  std::map<std::string, std::size_t, std::less<>> per_type_;  // requests waiting, by type
  std::array<std::size_t, 10> per_priority_{};
  std::size_t size_ = 0;
  std::int64_t back_ = 0;
  std::int64_t front_ = 0;
};

}  // namespace zmqkit::queue::detail
