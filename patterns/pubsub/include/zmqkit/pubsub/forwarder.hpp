// zmqkit/pubsub/forwarder.hpp — an XSUB/XPUB proxy, so that many publishers
// and many subscribers meet at one address without knowing each other.
//
//   ```cpp
//   zmqkit::pubsub::forwarder fwd(ctx, {.frontend = "tcp://127.0.0.1:5559",   // publishers connect
//                                       .backend = "tcp://127.0.0.1:5560"});  // subscribers connect
//   // runs until fwd is destroyed
//   ```
//
// Messages flow frontend -> backend unchanged (zmk.pub/zmk.seq included, so
// gap detection works end to end). Subscriptions flow backend -> frontend, so
// publishers filter at the source: a publisher sends a type only if some
// subscriber of the forwarder wants it. Like any PUB, the backend drops
// messages for a subscriber whose queue is full; its subscriber sees the gap.
//
// Last values: with a snapshot_endpoint, the forwarder subscribes to every
// type upstream, keeps the last envelope of each type and the last sequence
// number of each (publisher, type) it forwarded, and answers snapshot requests
// exactly as a publisher does (see publisher.hpp), so late joiners need only
// the forwarder's address. Publishers then send every type to the forwarder;
// filtering for subscribers still happens at the backend.
//
// Retention and replay: with a store_dir (and a snapshot_endpoint, where the
// requests come) the forwarder also keeps every stamped message it forwards,
// per (publisher, type) stream, in LMDB within `retain`'s bounds, and serves on
// the snapshot endpoint the replay exchange of docs/protocol.md 8.6: stream
// listings, replays from a sequence number or a time (a subscriber's gap
// repair and late-joiner replay), and the cursors of durable subscribers.
// A message is stored before it is forwarded, so anything a subscriber
// receives live can be replayed. What a crash can lose: store_sync false keeps
// the commits in the page cache (a process crash loses nothing, a power loss
// the last seconds); true syncs each commit (one per batch of up to 256).
//
// Threading: the proxy runs on a zmqkit::actor the forwarder owns. The
// constructor returns once the sockets are bound (and the store is open and
// checked) and the loop runs; the destructor stops and joins it (bounded by
// socket.linger).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::pubsub {

// How much a storing forwarder keeps. Past a stream's bounds its oldest
// messages go; past max_bytes, the oldest message of any stream.
struct retention {
  std::uint64_t messages = 1'000'000;                 // per stream
  std::uint64_t bytes = std::uint64_t{256} << 20;     // per stream, envelopes and 24 bytes each
  std::chrono::seconds age{24 * 3600};                // by the forwarder's receive time; 0 = no limit
  std::uint64_t max_bytes = std::uint64_t{1} << 30;   // every stream together
};

struct forwarder_options {
  std::string frontend;  // XSUB, bound: publishers connect here
  std::string backend;   // XPUB, bound: subscribers connect here
  // ROUTER endpoint serving last values; empty = no cache, subscriptions pass upstream.
  std::string snapshot_endpoint{};
  // Types (and separately, publisher/type streams) cached; the least recently
  // forwarded is forgotten beyond it.
  std::size_t max_types = 65536;
  // Bytes of cached last values (type + envelope); the least recently forwarded
  // are forgotten beyond it; a single envelope larger than it is not cached.
  std::size_t max_cache_bytes = 64 << 20;
  // Snapshot replies queued per requester that does not read; more are dropped
  // (stats().snapshots_dropped). A requester that leaves frees its queue.
  int snapshot_queue = 2;
  // Distinct subscription prefixes forwarded upstream, and their total bytes.
  // Past either, a new prefix is not forwarded (stats().refused_subscriptions):
  // publishers never send the forwarder anything for it.
  std::size_t max_subscriptions = 10000;
  std::size_t max_subscription_bytes = 1 << 20;
  // A directory for the retained streams and durable cursors (created when
  // absent); empty = nothing stored. Needs snapshot_endpoint.
  std::string store_dir{};
  retention retain{};
  bool store_sync = false;            // fsync each commit (see above)
  std::size_t max_streams = 65536;    // streams stored; a new one past it is forwarded, not stored
  std::size_t max_cursors = 100000;   // durable (subscriber, stream) cursors kept
  decode_limits limits{};  // for reading envelopes to cache
  zmqkit::socket_options socket{};
  const zmqkit::clock* clock = &zmqkit::clock::real();  // TTL expiry, retention age; null = the real clock
  std::chrono::milliseconds status_interval{250};        // how often status() is refreshed
  std::size_t max_status_topics = 1000;                  // topics listed in status() at most
};

struct forwarder_stats {
  std::uint64_t messages = 0;       // forwarded publisher -> subscribers
  std::uint64_t subscriptions = 0;  // (un)subscriptions forwarded upstream
  std::uint64_t uncacheable = 0;    // forwarded, but not [topic, stamped envelope]: not cached
  std::uint64_t snapshots_served = 0;
  std::uint64_t bad_snapshot_requests = 0;
  std::uint64_t oversize_subscriptions = 0;   // prefix longer than any type: matches nothing, dropped
  std::uint64_t refused_subscriptions = 0;    // past max_subscriptions / max_subscription_bytes, dropped
  std::uint64_t bad_subscriptions = 0;        // backend messages that are not one subscription frame, dropped
  std::uint64_t snapshots_dropped = 0;        // replies to a requester that is full or gone
  std::uint64_t evicted_values = 0;           // cached values forgotten (max_types / max_cache_bytes)
  std::uint64_t cached_values = 0;            // now
  std::uint64_t cached_bytes = 0;             // now, of at most max_cache_bytes
  std::uint64_t subscriptions_held = 0;       // distinct prefixes forwarded upstream, now
  std::uint64_t subscription_bytes_held = 0;  // their bytes, now
  // With a store_dir:
  std::uint64_t stored = 0;                 // messages written to the store
  std::uint64_t store_refused = 0;          // not stored: max_streams, or the store full (LMDB map, disk)
  std::uint64_t store_errors = 0;           // commits that failed (disk full, I/O): those messages are lost to replay
  std::uint64_t dropped_by_retention = 0;   // messages the retention bounds removed
  std::uint64_t stream_restarts = 0;        // a stream's numbering went back: its old messages dropped
  std::uint64_t replays_served = 0;         // replay replies sent
  std::uint64_t replayed_messages = 0;      // messages in them
  std::uint64_t listings_served = 0;        // zmk.streams and zmk.cursor replies
  std::uint64_t acks = 0;                   // durable cursors moved
  std::uint64_t bad_replay_requests = 0;    // malformed zmk.streams / replay / cursor / ack, or past max_cursors
  std::uint64_t store_messages = 0;         // now
  std::uint64_t store_bytes = 0;            // now, of at most retain.max_bytes
  std::uint64_t store_streams = 0;          // now
  std::uint64_t cursors = 0;                // now
  // With socket.security a curve_server: refused handshakes on its sockets, by
  // reason (see zmqkit/handshake_monitor.hpp).
  std::uint64_t curve_refused_unknown_key = 0;
  std::uint64_t curve_refused_plaintext = 0;
  std::uint64_t curve_refused_bad_handshake = 0;
};

// The forwarder's state for a live view (the dashboard, /api/stats), built on the
// loop thread and published every status_interval; readers never wait for the loop.
struct forwarder_status {
  forwarder_stats stats;
  bool caching = false;                // a snapshot endpoint: last values are kept
  std::size_t streams = 0;             // (publisher, type) streams whose last sequence is kept
  std::size_t types_cached = 0;        // types whose last value is kept
  std::size_t topics_total = 0;        // topics some subscriber subscribes to now
  std::vector<std::string> topics;     // the first max_status_topics of them, sorted
  double messages_per_second = 0;      // forwarded, over about the last second
  std::chrono::milliseconds uptime{0};  // since construction
};

class forwarder {
 public:
  // Throws: zmqkit::error{bad_config} for a missing endpoint, a store_dir without a
  // snapshot_endpoint, or a store that cannot be opened or fails its checks (the
  // message names the path and the problem); zmq::error_t when binding fails.
  forwarder(zmq::context_t& ctx, forwarder_options options);

  // Returns: the bound endpoints, tcp ports resolved.
  const std::string& frontend_endpoint() const noexcept;
  const std::string& backend_endpoint() const noexcept;
  // Returns: the bound snapshot endpoint, or empty.
  const std::string& snapshot_endpoint() const noexcept;
  // Safe to call while the loop runs.
  forwarder_stats stats() const;
  // Returns: the status the loop last published (at most status_interval old). Thread-safe.
  std::shared_ptr<const forwarder_status> status() const;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::pubsub
