// zmqkit/queue/device.hpp — the queue device: a load-balancing broker between
// request/reply clients (frontend ROUTER) and workers (backend ROUTER).
//
//   zmq::context_t ctx;
//   zmqkit::queue::device dev(ctx, {.frontend = "tcp://*:5555", .backend = "tcp://*:5556"});
//   std::thread t([&] { dev.run(); });   // serves until stop()
//   ...
//   dev.stop();                           // thread- and async-signal-safe
//   t.join();                             // run() returns after draining
//
// Speaks ZMK/1 request/reply from the broker's side (docs: patterns/queue/README.md):
// LRU among workers with a free slot serving the request's type (a worker holds
// 1 request, or up to the capacity its READY announced), priority order, TTL,
// heartbeats, requeue with a dead-letter limit, duplicate suppression and a
// recent-reply cache. Plain (non-envelope) bodies are routed too, so ZeroMQ
// guide Lazy Pirate clients and Paranoid Pirate workers work unchanged.
//
// Threading: run() owns the sockets and runs on one thread; stop() and stats()
// may be called from any thread (stop() also from a signal handler).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::queue {

enum class log_level { debug, info, warn, error };

struct device_options {
  std::string frontend;  // endpoint clients talk to (bound)
  std::string backend;   // endpoint workers connect to (bound)
  std::string admin;     // optional: stats endpoint (ROUTER, bound); empty = none
  std::chrono::milliseconds heartbeat{1000};
  int liveness = 3;                            // a worker silent for liveness x heartbeat is dead
  int max_requeue = 3;                         // a request is delivered at most max_requeue + 1 times
  std::size_t max_pending = 100000;            // waiting requests (not those at workers); past it, overloaded
  std::size_t reply_cache = 10000;             // recent replies kept for retried ids
  std::chrono::milliseconds no_service{5000};  // wait for a worker serving the type
  std::size_t max_frame_bytes = 1 << 20;       // ZMQ_MAXMSGSIZE on every socket, and decode limit
  // Timers are checked at least this often; a manual clock is noticed within it.
  std::chrono::milliseconds tick{20};
  // How often run() publishes status() (on its own thread: readers never wait for it),
  // and how many workers a status lists at most (a bound on its size).
  std::chrono::milliseconds status_interval{250};
  std::size_t max_status_workers = 1000;
  zmqkit::socket_options socket{};  // applied to every socket (max_message_bytes is overridden)
  // Per-side security, replacing socket.security on that side only, so clients and
  // workers can hold different keys (docs/security.md). The admin socket keeps
  // socket.security. CURVE client authentication needs a zmqkit::zap_authenticator
  // on the same context (zmqkit-queue starts one for --frontend-allow/--backend-allow).
  std::optional<zmqkit::security> frontend_security{};
  std::optional<zmqkit::security> backend_security{};
  const zmqkit::clock* clock = &zmqkit::clock::real();
  // Called from run()'s thread; default: no logging.
  std::function<void(log_level, std::string_view)> log{};
};

// A snapshot of the device's counters. Monotonic counters since start, and
// gauges (pending, in_flight, workers) at the time of the snapshot.
struct device_stats {
  std::uint64_t received = 0;  // request messages taken from the frontend
  std::uint64_t routed = 0;    // deliveries to workers (a requeued request counts again)
  std::uint64_t replied = 0;   // worker replies forwarded to clients
  std::uint64_t expired = 0;   // answered zmk.error=expired
  std::uint64_t requeued = 0;  // requests taken back from dead workers and queued again
  std::uint64_t dead_lettered = 0;
  std::uint64_t duplicates_suppressed = 0;        // retries of a pending or in-flight id
  std::uint64_t answered_from_cache = 0;          // retries answered from the reply cache
  std::map<std::string, std::uint64_t> rejected;  // error replies by zmk.error code
  std::map<std::string, std::uint64_t> dropped;   // counted-and-dropped input by reason
  std::size_t pending = 0;
  std::array<std::size_t, 10> pending_by_priority{};
  std::map<std::string, std::size_t> pending_by_type;  // plain bodies under "(plain)"
  std::size_t in_flight = 0;
  std::size_t workers_ready = 0;    // connected workers with a free slot
  std::size_t workers_busy = 0;     // connected workers holding as many requests as their capacity
  std::size_t worker_capacity = 0;  // sum of the connected workers' capacities (READY credit)
  std::size_t reply_cache_size = 0;
};

// One connected worker, as the device's status shows it (the dashboard, /api/stats).
struct worker_status {
  std::string identity;               // its ROUTER identity (bytes)
  std::vector<std::string> prefixes;  // type prefixes it serves; empty: every type
  std::size_t capacity = 1;           // requests it may hold at once
  std::size_t held = 0;               // requests it holds now
  std::chrono::milliseconds last_heard{0};  // since its last message, at the snapshot
};

// The device's state for a live view: the admin counters and gauges, the workers, and
// request rates, computed on the device's thread and published every status_interval.
struct device_status {
  device_stats stats;
  std::vector<worker_status> workers;  // at most max_status_workers of them, by identity
  std::size_t workers_total = 0;       // connected workers (workers may be cut short)
  double received_per_second = 0;      // requests in, over about the last second
  double replied_per_second = 0;       // replies out, over about the last second
  std::chrono::milliseconds uptime{0};  // device clock time since construction, at the snapshot
  bool draining = false;                // stopping: queued requests are answered 'unavailable'
};

// Returns: the snapshot as the admin endpoint sends it: a msgpack map
// name -> number, or name -> map of name -> number.
std::string encode_stats(const device_stats& stats);

class device {
 public:
  // Binds the frontend, backend and admin sockets.
  // Throws: zmqkit::error{bad_config} on bad options; zmq::error_t when a bind fails.
  device(zmq::context_t& ctx, device_options options);
  ~device();
  device(device&&) noexcept;
  device& operator=(device&&) noexcept;
  device(const device&) = delete;
  device& operator=(const device&) = delete;

  // Serves until stop(), then drains: answers everything queued (and anything
  // arriving) `unavailable`, forwards replies still coming from workers for up
  // to liveness x heartbeat, and returns.
  void run();

  // Asks run() to drain and return. Thread-safe and async-signal-safe.
  void stop() noexcept;

  // Returns: a snapshot of the counters. Thread-safe.
  device_stats stats() const;

  // Returns: the status run() last published (at most status_interval old while it
  // runs; the state at construction before that). Thread-safe; never waits for run().
  std::shared_ptr<const device_status> status() const;

  // The endpoints actually bound (resolves tcp://...:* ports).
  std::string frontend_endpoint() const;
  std::string backend_endpoint() const;
  std::string admin_endpoint() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace zmqkit::queue
