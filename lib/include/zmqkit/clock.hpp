// zmqkit/clock.hpp — an injectable clock, so retry, heartbeat and expiry logic
// can be tested by advancing time instead of sleeping.
//
//   ```cpp
//   zmqkit::manual_clock clock;
//   zmqkit::reqrep::liveness_tracker peer(1s, 3, clock.now());
//   clock.advance(3s);                   // no sleeping: the tracker now sees 3 s of silence
//   bool dead = peer.dead(clock.now());  // true
//   ```
//
// Patterns take a `const clock&` in their options and default to clock::real().
#pragma once

#include <atomic>
#include <chrono>

namespace zmqkit {

// Wall-clock time with nanosecond precision: the envelope's timestamp and TTL base.
using wall_time = std::chrono::time_point<std::chrono::system_clock, std::chrono::nanoseconds>;
using steady_time = std::chrono::steady_clock::time_point;

class clock {
 public:
  virtual ~clock() = default;
  // Monotonic time for timers (timeouts, heartbeats, backoff).
  virtual steady_time now() const = 0;
  // Wall time for envelope timestamps and TTL expiry.
  virtual wall_time wall_now() const = 0;

  // The process-wide real clock (std::chrono::steady_clock / system_clock).
  static const clock& real() noexcept;
};

// A clock that moves only when told to. Thread-safe, so a test thread may
// advance it while a pattern object reads it.
class manual_clock final : public clock {
 public:
  manual_clock() = default;
  explicit manual_clock(wall_time start) : wall_(start.time_since_epoch().count()) {}

  steady_time now() const override {
    return steady_time(std::chrono::nanoseconds(elapsed_.load()));
  }
  wall_time wall_now() const override { return wall_time(std::chrono::nanoseconds(wall_.load())); }

  void advance(std::chrono::nanoseconds d) {
    elapsed_ += d.count();
    wall_ += d.count();
  }

 private:
  std::atomic<std::int64_t> elapsed_{0};
  std::atomic<std::int64_t> wall_{1'700'000'000'000'000'000};  // 2023-11-14, an arbitrary fixed start
};

// libzmq takes int milliseconds; every conversion goes through here.
// Negative durations mean "infinite" (-1) to libzmq.
int to_zmq_ms(std::chrono::nanoseconds d) noexcept;

}  // namespace zmqkit
