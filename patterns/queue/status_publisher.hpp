// The device's live status (device_status): built on the device's thread from the same
// snapshot as the admin stats, published through an atomic pointer, so readers (the
// HTTP dashboard) take the latest copy without ever taking the device's lock.
// Private to patterns/queue.
#pragma once

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <zmqkit/queue/device.hpp>

#include "worker_registry.hpp"

namespace zmqkit::queue::detail {

class status_publisher {
 public:
  status_publisher(std::chrono::milliseconds interval, std::size_t max_workers, steady_time start)
      : interval_(interval), max_workers_(max_workers), start_(start) {}

  // Whether a new status is due at `now` (run() asks once per loop turn: cheap).
  bool due(steady_time now) const { return now >= next_; }

  // Builds and publishes the status at `now`.
  void publish(steady_time now, device_stats stats, worker_registry& workers, bool draining) {
    auto st = std::make_shared<device_status>();
    st->workers_total = workers.size();
    workers.for_each([&](const worker& w) {
      st->workers.push_back({.identity = w.identity,
                             .prefixes = w.prefixes,
                             .capacity = w.capacity,
                             .held = w.holding.size(),
                             .last_heard = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.last_seen)});
    });
    // A stable order for readers; the cut keeps a status bounded with many workers.
    std::sort(st->workers.begin(), st->workers.end(),
              [](const worker_status& a, const worker_status& b) { return a.identity < b.identity; });
    if (st->workers.size() > max_workers_) st->workers.resize(max_workers_);
    // Rates over the points of about the last second (the oldest one kept is >= 1 s old).
    history_.push_back({now, stats.received, stats.replied});
    while (history_.size() > 2 && now - history_[1].at >= std::chrono::seconds(1)) history_.pop_front();
    const auto& oldest = history_.front();
    const double seconds = std::chrono::duration<double>(now - oldest.at).count();
    if (seconds > 0) {
      st->received_per_second = static_cast<double>(stats.received - oldest.received) / seconds;
      st->replied_per_second = static_cast<double>(stats.replied - oldest.replied) / seconds;
    }
    st->uptime = std::chrono::duration_cast<std::chrono::milliseconds>(now - start_);
    st->draining = draining;
    st->stats = std::move(stats);
    current_.store(std::move(st));
    next_ = now + interval_;
  }

  std::shared_ptr<const device_status> current() const { return current_.load(); }

 private:
  struct point {
    steady_time at;
    std::uint64_t received, replied;
  };
  std::chrono::milliseconds interval_;
  std::size_t max_workers_;
  steady_time start_;
  steady_time next_{};
  std::deque<point> history_;
  std::atomic<std::shared_ptr<const device_status>> current_;
};

}  // namespace zmqkit::queue::detail
