// The device's workers: identity, served type prefixes, liveness, the request
// each holds, and the least-recently-used order of the ready ones.
// Private to patterns/queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>
#include <zmqkit/clock.hpp>

namespace zmqkit::queue::detail {

struct worker {
  std::string identity;
  std::vector<std::string> prefixes;  // empty: serves every type, and plain bodies
  steady_time last_seen{};
  std::optional<std::uint64_t> holding;  // the request at this worker
  bool ready = false;
  std::list<worker*>::iterator lru_position{};

  // A plain body (empty type) goes only to workers that listed no prefixes.
  bool serves(std::string_view type) const noexcept {
    if (prefixes.empty()) return true;
    if (type.empty()) return false;
    for (const auto& p : prefixes)
      if (type.starts_with(p)) return true;
    return false;
  }
};

class worker_registry {
 public:
  worker* find(std::string_view identity) {
    const auto it = workers_.find(std::string(identity));
    return it == workers_.end() ? nullptr : it->second.get();
  }

  // Adds a worker that is neither ready nor busy yet.
  worker& add(std::string identity, std::vector<std::string> prefixes, steady_time now) {
    auto w = std::make_unique<worker>();
    w->identity = identity;
    w->prefixes = std::move(prefixes);
    w->last_seen = now;
    auto& slot = workers_[std::move(identity)];
    slot = std::move(w);
    return *slot;
  }

  // Forgets `w`; the caller has dealt with the request it held.
  void remove(worker& w) {
    if (w.ready) ready_.erase(w.lru_position);
    if (w.holding) --busy_;
    const std::string identity = w.identity;  // w dies in erase
    workers_.erase(identity);
  }

  // Puts an idle worker at the back of the LRU list.
  void mark_ready(worker& w) {
    if (w.ready) return;
    w.ready = true;
    w.lru_position = ready_.insert(ready_.end(), &w);
  }

  void mark_busy(worker& w, std::uint64_t request) {
    if (w.ready) {
      ready_.erase(w.lru_position);
      w.ready = false;
    }
    if (!w.holding) ++busy_;
    w.holding = request;
  }

  void release(worker& w) {
    if (w.holding) --busy_;
    w.holding.reset();
  }

  // Returns: the least recently used ready worker serving `type` (still ready), or nullptr.
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
  std::size_t ready_count() const noexcept { return ready_.size(); }
  std::size_t busy_count() const noexcept { return busy_; }

 private:
  std::unordered_map<std::string, std::unique_ptr<worker>> workers_;
  std::list<worker*> ready_;
  std::size_t busy_ = 0;
};

}  // namespace zmqkit::queue::detail
