// zmqkit/reqrep/timing.hpp — the pure timing rules of request/reply: a retry
// schedule (client), a liveness tracker (worker heartbeats) and an exponential
// reconnect backoff. They hold no sockets and read no clock: callers pass `now`,
// so tests drive them with a manual_clock and the patterns stay deterministic.
//
//   ```cpp
//   zmqkit::manual_clock clock;
//   zmqkit::reqrep::retry_policy policy{.timeout = 500ms, .retries = 2};
//   zmqkit::reqrep::retry_schedule s(policy, clock.now());
//   clock.advance(500ms);
//   auto step = s.on_time(clock.now());   // step::retry: attempt 2, next deadline 500 ms on
//   ```
#pragma once

#include <algorithm>
#include <chrono>
#include <zmqkit/clock.hpp>

namespace zmqkit::reqrep {

// How a client retries one request. The first attempt waits `timeout`; each
// further attempt waits the previous wait × `backoff`, at most `max_timeout`.
// The retryable error replies use the same retries: `unavailable` (a device
// draining) is retried at once, on the next endpoint when there are several;
// `overloaded` after overload_backoff, doubling with each retry already used.
struct retry_policy {
  std::chrono::milliseconds timeout{2500};
  int retries = 3;       // attempts after the first; 0 = never retry
  double backoff = 1.0;  // 1.0 = the same timeout for every attempt (Lazy Pirate)
  std::chrono::milliseconds max_timeout{30000};
  bool retry_errors = true;  // false: `unavailable` and `overloaded` end the request like other errors
  std::chrono::milliseconds overload_backoff{100};
};

// Returns: how long a request may take with every retry used: the sum of the
// attempts' waits (what the client attaches as TTL to a request sent without one).
inline std::chrono::milliseconds retry_budget(const retry_policy& policy);

class retry_schedule {
 public:
  enum class step { wait, retry, give_up };

  retry_schedule(const retry_policy& policy, steady_time start)
      : policy_(policy), wait_(clamp(policy.timeout)), deadline_(start + wait_) {}

  // 1 for the first send, 2 for the first retry, ...
  int attempt() const noexcept { return attempt_; }
  steady_time deadline() const noexcept { return deadline_; }

  // Returns: wait while the current attempt's time lasts; at its deadline,
  // retry (and start the next attempt at `now`) while retries remain, else give_up.
  step on_time(steady_time now) {
    if (now < deadline_) return step::wait;
    if (retries_used_ >= policy_.retries) return step::give_up;
    ++retries_used_;
    restart(now);
    return step::retry;
  }

  // Starts the next attempt at `now` without consuming the retry budget (a
  // failover resend). The attempt number still advances.
  void resend(steady_time now) { restart(now); }

  const retry_policy& policy() const noexcept { return policy_; }
  bool can_retry() const noexcept { return retries_used_ < policy_.retries; }
  int retries_used() const noexcept { return retries_used_; }
  // Brings the current attempt's deadline forward to `at`, so on_time() retries
  // then (a retryable error reply ended the attempt early).
  void retry_at(steady_time at) noexcept { deadline_ = std::min(deadline_, at); }

 private:
  void restart(steady_time now) {
    ++attempt_;
    const auto next = std::chrono::duration<double, std::milli>(wait_) * std::max(policy_.backoff, 1.0);
    wait_ = clamp(std::chrono::duration_cast<std::chrono::milliseconds>(next));
    deadline_ = now + wait_;
  }
  std::chrono::milliseconds clamp(std::chrono::milliseconds d) const { return clamp(policy_, d); }

 public:
  // One attempt's wait as the schedule bounds it.
  static std::chrono::milliseconds clamp(const retry_policy& policy, std::chrono::milliseconds d) {
    return std::clamp(d, std::chrono::milliseconds(1), std::max(policy.max_timeout, policy.timeout));
  }

 private:

  retry_policy policy_;
  std::chrono::milliseconds wait_;
  steady_time deadline_;
  int attempt_ = 1;
  int retries_used_ = 0;
};

inline std::chrono::milliseconds retry_budget(const retry_policy& policy) {
  auto wait = retry_schedule::clamp(policy, policy.timeout);
  auto total = wait;
  for (int i = 0; i < policy.retries; ++i) {
    const auto next = retry_schedule::clamp(
        policy, std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::duration<double, std::milli>(wait) * std::max(policy.backoff, 1.0)));
    if (next == wait) {  // constant from here on (backoff 1, or at the cap)
      total += wait * (policy.retries - i);
      break;
    }
    wait = next;
    total += wait;
  }
  return total;
}

// Tracks whether a heartbeating peer is alive and when our own heartbeat is due.
// A peer is dead after `liveness` intervals without hearing anything from it.
class liveness_tracker {
 public:
  liveness_tracker(std::chrono::milliseconds interval, int liveness, steady_time now)
      : interval_(std::max(interval, std::chrono::milliseconds(1))),
        liveness_(std::max(liveness, 1)),
        heard_(now),
        sent_(now) {}

  void on_heard(steady_time now) noexcept { heard_ = now; }
  void on_sent(steady_time now) noexcept { sent_ = now; }
  void reset(steady_time now) noexcept { heard_ = sent_ = now; }

  bool dead(steady_time now) const noexcept { return now - heard_ >= interval_ * liveness_; }
  bool heartbeat_due(steady_time now) const noexcept { return now - sent_ >= interval_; }
  // Returns: the next moment something changes (a heartbeat due or the peer dead).
  steady_time next_event() const noexcept {
    return std::min(sent_ + interval_, heard_ + interval_ * liveness_);
  }

 private:
  std::chrono::milliseconds interval_;
  int liveness_;
  steady_time heard_;
  steady_time sent_;
};

// Exponential backoff between reconnects: initial, 2×, 4× ... up to max.
class reconnect_backoff {
 public:
  reconnect_backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(std::max(initial, std::chrono::milliseconds(1))),
        max_(std::max(max, initial_)),
        next_(initial_) {}

  // Returns: the delay to wait before this reconnect; doubles the next one.
  std::chrono::milliseconds next() noexcept {
    const auto d = next_;
    next_ = std::min(next_ * 2, max_);
    return d;
  }
  // After a successful exchange with the peer.
  void reset() noexcept { next_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds next_;
};

}  // namespace zmqkit::reqrep
