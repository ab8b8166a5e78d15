// zmqkit/queue/device.hpp — the queue device: a load-balancing broker between
// request/reply clients (frontend ROUTER) and workers (backend ROUTER).
//
//   ```cpp
//   zmq::context_t ctx;
//   zmqkit::queue::device dev(ctx, {.frontend = "tcp://*:5555", .backend = "tcp://*:5556"});
//   dev.run();  // serves on this thread until dev.stop() (thread- and
//               // async-signal-safe: call it from a signal handler), then drains
//   ```
//
// Speaks ZMK/1 request/reply from the broker's side (docs: patterns/queue/README.md):
// LRU among workers with a free slot serving the request's type (a worker holds
// 1 request, or up to the capacity its READY announced), priority order, TTL,
// heartbeats, requeue with a dead-letter limit, duplicate suppression and a
// recent-reply cache. Plain (non-envelope) bodies are routed too, so ZeroMQ
// guide Lazy Pirate clients and Paranoid Pirate workers work unchanged.
//
// Threading: run() owns the sockets and runs on one thread (on the device's own
// zmqkit::loop), or attach(loop) and that loop's thread drives it beside other
// roles; stop() and stats() may be called from any thread (stop() also from a
// signal handler).
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
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::queue {

enum class log_level { debug, info, warn, error };

// When the durable store syncs to disk (patterns/queue/README.md, "Durability"):
// always: each request before it counts as accepted; batch: once per loop turn
// (group commit), and nothing that depends on a write (stored-ack, reply) leaves
// before the sync that covers it; none: committed once per loop turn the same way,
// never synced (the kernel writes back).
enum class store_sync { always, batch, none };

struct device_options {
  std::string frontend;  // endpoint clients talk to (bound)
  std::string backend;   // endpoint workers connect to (bound)
  std::string admin;     // optional: stats endpoint (ROUTER, bound); empty = none
  std::chrono::milliseconds heartbeat{1000};
  int liveness = 3;                            // a worker silent for liveness x heartbeat is dead
  int max_requeue = 3;                         // a request is delivered at most max_requeue + 1 times
  // Waiting requests (not those at workers), in all and of one type; past either, a
  // new request that no worker can take at once is answered overloaded. The per-type
  // bound keeps a backlog for a type nobody serves from refusing the other types.
  std::size_t max_pending = 100000;
  std::size_t max_pending_per_type = 10000;
  // Types listed in stats' pending_by_type (longest backlogs first; the rest summed
  // under "(other)"), so stats and /metrics stay small whatever types peers send.
  std::size_t stats_top_types = 100;
  // Worker registrations: past any bound a READY is refused (dropped "worker-refused").
  std::size_t max_workers = 4096;             // connected workers
  std::size_t max_prefixes_per_worker = 64;   // type prefixes in one READY (each at most 255 bytes)
  std::uint64_t max_worker_capacity = 1024;   // requests one worker may hold (READY's "capacity")
  std::size_t reply_cache = 10000;             // recent replies kept for retried ids
  std::size_t reply_cache_bytes = std::size_t{256} << 20;  // and their total size; oldest evicted first
  // Bytes of waiting requests (bodies and address stacks); past it a new request
  // that must wait is answered overloaded.
  std::size_t max_pending_bytes = std::size_t{256} << 20;
  // A request's address stack (the frames before the empty delimiter): ROUTER
  // hops add one frame each (a routing id is at most 255 bytes). A longer stack,
  // or a message with more than max_route_frames + 3 frames, is dropped and counted.
  std::size_t max_route_frames = 32;
  std::size_t max_route_bytes = 8192;
  std::chrono::milliseconds no_service{5000};  // wait for a worker serving the type
  // How long one request may stay at one worker (RabbitMQ's delivery
  // acknowledgement timeout): then it is queued again, or dead-lettered past
  // max_requeue. The worker keeps the slot until it replies or dies; its late
  // reply still answers the request if nobody has yet. 0 = no limit.
  std::chrono::milliseconds delivery_timeout{std::chrono::minutes(30)};
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
  const zmqkit::clock* clock = &zmqkit::clock::real();  // nullptr: the real clock
  // Durability: a directory for the device's LMDB store (created if absent).
  // Empty (the default): no store, nothing written, nothing survives a restart.
  // With one, a request is accepted only once stored; a restart queues the
  // accepted, uncompleted ones again and restores the reply cache. The
  // constructor throws zmqkit::error{bad_config} naming the path when the store
  // cannot be opened or fails its checks.
  std::string store;
  store_sync store_sync_policy = store_sync::batch;
  std::size_t store_max_bytes = std::size_t{1} << 30;  // stored requests; past it new ones are overloaded
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
  std::uint64_t delivery_timeouts = 0;            // requests taken back from a worker past delivery_timeout
  std::uint64_t workers_returned = 0;             // workers evicted for silence registered again by a late reply
  std::map<std::string, std::uint64_t> rejected;  // error replies by zmk.error code
  std::map<std::string, std::uint64_t> dropped;   // counted-and-dropped input by reason
  std::size_t pending = 0;
  std::array<std::size_t, 10> pending_by_priority{};
  // The stats_top_types longest backlogs; plain bodies under "(plain)", the
  // other types' sum under "(other)".
  std::map<std::string, std::size_t> pending_by_type;
  std::size_t in_flight = 0;
  std::size_t workers_ready = 0;    // connected workers with a free slot
  std::size_t workers_busy = 0;     // connected workers holding as many requests as their capacity
  std::size_t worker_capacity = 0;  // sum of the connected workers' capacities (READY credit)
  std::size_t reply_cache_size = 0;
  // Refused CURVE handshakes by reason (unknown_key, plaintext, bad_handshake),
  // per side with a CURVE server key; empty on a plaintext side.
  std::map<std::string, std::uint64_t> frontend_curve_refused;
  std::map<std::string, std::uint64_t> backend_curve_refused;
  std::size_t reply_cache_bytes = 0;  // sum of the cached replies' sizes
  std::size_t pending_bytes = 0;      // sum of the waiting requests' bodies and address stacks
  bool has_store = false;            // device_options::store is set
  // With a store (all 0 without one):
  std::uint64_t stored = 0;          // requests written to the store (accepted)
  std::uint64_t acked = 0;           // stored-acknowledgements sent (zmk.ack, docs/protocol.md 7.9)
  std::uint64_t recovered = 0;       // requests queued again from the store at start-up
  std::uint64_t store_syncs = 0;     // commits synced to disk
  std::uint64_t store_sync_us = 0;   // time spent in them, microseconds (mean: / store_syncs)
  std::uint64_t store_errors = 0;    // writes the store refused (map or disk full, I/O)
  std::size_t store_bytes = 0;       // stored request records
  std::size_t store_last_sync_us = 0;  // the last sync's duration
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

struct device_access;  // drives the handlers directly (fuzz target); private to patterns/queue

class device {
 public:
  // Binds the frontend, backend and admin sockets.
  // Throws: zmqkit::error{bad_config} on bad options; zmq::error_t when a bind fails.
  device(zmq::context_t& ctx, device_options options);

  // Serves until stop(), then drains: answers everything queued (and anything
  // arriving) `unavailable`, forwards replies still coming from workers for up
  // to liveness x heartbeat, and returns.
  // Runs the device's own zmqkit::loop (the handlers attach() installs).
  // Throws: zmqkit::error{bad_config} when attached to a caller's loop (that loop drives it).
  void run();

  // From now on `loop` drives the device on its thread (with other roles): the
  // sockets, the stop pipe and one timer on the device's clock. After stop()
  // has drained it, the device leaves the loop (the loop goes on). The loop
  // must outlive the device. Throws: error{bad_config} when attached already.
  void attach(zmqkit::loop& loop);

  // Asks run() (or the attached device) to drain and return. Thread-safe and
  // async-signal-safe (a byte on a self-pipe the loop watches).
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
  friend struct device_access;
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::queue
