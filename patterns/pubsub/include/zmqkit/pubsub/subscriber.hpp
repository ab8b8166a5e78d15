// zmqkit/pubsub/subscriber.hpp — receives envelopes by type prefix, detects
// gaps per publisher, can start from a last-value snapshot, and tells a
// subscriber that falls too far behind.
//
//   ```cpp
//   zmqkit::pubsub::subscriber sub(ctx, {
//       .snapshot_endpoints = {"tcp://pub-host:5557"},
//       .on_gap = [](const zmqkit::pubsub::gap& g) { log("missed", g.count); },
//   });
//   sub.subscribe("course.");
//   sub.connect("tcp://pub-host:5556");
//   sub.request_snapshot(2s);                  // last value of each course.* type
//   while (auto n = sub.receive(1s)) handle(n->env);
//   ```
//
// Gap detection: each publisher numbers the messages of each type 1, 2, 3, ...
// (zmk.seq). Numbering is per (publisher, type) -- a "stream" -- because prefix
// filtering hands a subscriber whole types, never part of one: per-publisher
// numbering would show every message of an unsubscribed type as a gap. The
// subscriber expects the next number per stream; a jump from expected E to
// S > E reports S - E missed messages (callback + counter). Before the first
// message (or snapshot) of a stream nothing is expected, so what was published
// before the subscriber joined is never a gap.
//
// Snapshot and sequence numbers: a snapshot reply carries, per stream, the
// sequence number S of the last message published when it was taken (the
// cached last value is that very message). The subscriber then expects S + 1,
// and drops live messages numbered <= S of that stream (counted as `stale`):
// the snapshot already reflects them.
//
// Replay and gap repair (a storing forwarder, zmqkit-forwarder --store, and its
// snapshot endpoint as replay_endpoint): a gap is not reported but repaired --
// the subscriber asks the forwarder for the missing range and delivers it in
// order (replayed = true) before the message that showed the gap; only what the
// forwarder no longer holds is reported as a gap. With `start` a stream begins
// at a sequence number or a time instead of its first live message, and with a
// durable_name the forwarder keeps the last message acknowledged per stream and
// a restarted subscriber resumes after it: at least once -- after a crash the
// messages delivered but not yet acknowledged (the one being handled, and at
// most ack_every before it) come again; (zmk.pub, zmk.seq) names a message, so
// a handler that must not repeat an effect records the last it handled.
// Replay and repair wait for the forwarder (up to replay_timeout a request)
// inside receive(), or on the loop's thread when attached.
//
// Threading: used from one thread; callbacks run inside receive().
//
// On a zmqkit::loop (zmqkit/loop.hpp): attach(loop, on_message) and the loop's
// thread delivers every message (queued snapshot values first) to on_message,
// and runs on_gap / on_lag there too. request_snapshot() and resync() still wait
// (up to their timeout) for the snapshot, blocking the loop meanwhile.
//
//   ```cpp
//   zmqkit::loop loop;
//   zmqkit::pubsub::subscriber sub(ctx, {.on_gap = [](const zmqkit::pubsub::gap& g) { log("missed", g.count); }});
//   sub.subscribe("course.");
//   sub.connect("tcp://127.0.0.1:5556");
//   sub.attach(loop, [](const zmqkit::pubsub::notification_view& n) { handle(n.env.type); });
//   loop.run_for(1s);
//   ```
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/pubsub/defaults.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::pubsub {

// A run of messages of one type from one publisher that never arrived.
struct gap {
  std::string publisher;
  std::string type;
  std::uint64_t first_missing = 0;  // sequence number of the first missed message
  std::uint64_t count = 0;          // how many in a row
};

// The subscriber is further behind the publisher's timestamps than max_lag.
struct lag {
  std::string publisher;
  std::uint64_t sequence = 0;         // the message that showed the lag
  std::chrono::nanoseconds behind{};  // receiver's wall clock minus the envelope timestamp
};

enum class lag_action {
  keep_going,  // deliver what is queued, however old
  resync,      // drop what is queued, re-request the snapshot, restart gap tracking from it
};

// Where a stream begins for a subscriber: live (its first message heard), or
// replayed from the forwarder's store from a sequence number or from the first
// message the forwarder received at or after a time.
struct replay_from {
  std::uint64_t sequence = 0;        // 1 = everything retained
  std::optional<wall_time> time{};   // used when sequence is 0
  bool live() const noexcept { return sequence == 0 && !time; }
};

struct subscriber_options {
  // ROUTER endpoints serving snapshots (a publisher's or a caching forwarder's), asked
  // by request_snapshot() and on resync.
  std::vector<std::string> snapshot_endpoints{};
  // Called for every gap; the counters count them anyway.
  std::function<void(const gap&)> on_gap{};
  // 0 = lag checking off. Compares the injected clock's wall time with envelope
  // timestamps, so publisher and subscriber clocks must be synchronised (NTP).
  std::chrono::milliseconds max_lag{0};
  // Called once when the lag first exceeds max_lag (again only after it has
  // dropped back to max_lag or below). No callback = keep_going.
  std::function<lag_action(const lag&)> on_lag{};
  // How long a resync waits for the snapshot.
  std::chrono::milliseconds resync_timeout{2000};
  // Streams (publisher, type) remembered for gap detection; beyond it the least
  // recently heard is forgotten (it then restarts without a baseline).
  std::size_t max_streams = 65536;
  decode_limits limits{};
  // HWM 100 000 messages (zmqkit/pubsub/defaults.hpp), as the publisher.
  zmqkit::socket_options socket = burst_socket_options();
  const zmqkit::clock* clock = &zmqkit::clock::real();  // null = the real clock
  // A storing forwarder's snapshot endpoint: gaps are repaired from it, and
  // `start` and durable_name replay from it (see above).
  std::string replay_endpoint{};
  replay_from start{};
  // 1-255 bytes: the forwarder keeps this subscriber's cursors under it. A
  // stream without a cursor begins at `start`.
  std::string durable_name{};
  std::chrono::milliseconds replay_timeout{2000};  // per replay request; past it, what it asked is a gap
  std::size_t ack_every = 64;                      // durable: acknowledgements sent at least every so many
};

struct subscriber_stats {
  std::uint64_t received = 0;       // live messages delivered
  std::uint64_t from_snapshot = 0;  // snapshot values delivered
  std::uint64_t missed = 0;         // messages reported missing (sum of gap counts)
  std::uint64_t gaps = 0;           // gap reports
  std::uint64_t stale = 0;          // live messages dropped, already covered by a snapshot
  std::uint64_t bad_frames = 0;     // malformed messages, dropped
  std::uint64_t untracked = 0;      // envelopes without zmk.pub/zmk.seq, delivered untracked
  std::uint64_t restarts = 0;       // a publisher's sequence went backwards: tracking reset
  std::uint64_t lag_reports = 0;
  std::uint64_t resyncs = 0;
  std::uint64_t snapshots = 0;  // snapshot replies received
  std::uint64_t replayed = 0;         // messages delivered from the forwarder's store (repair, replay)
  std::uint64_t replay_requests = 0;
  std::uint64_t replay_timeouts = 0;  // requests unanswered within replay_timeout
  std::uint64_t acks_sent = 0;        // durable: acknowledgement messages sent
};

struct notification {
  envelope env;
  std::uint64_t sequence = 0;  // zmk.seq, 0 when untracked
  bool from_snapshot = false;
  bool replayed = false;  // from the forwarder's store (gap repair or replay)
};

// The same without copies: env points into a frame the subscriber keeps until
// the next receive, receive_view or resync call.
struct notification_view {
  envelope_view env;
  std::uint64_t sequence = 0;
  bool from_snapshot = false;
  bool replayed = false;
};

class subscriber {
 public:
  // Throws: zmqkit::error{bad_config} for max_streams 0, a start or durable_name
  // without a replay_endpoint, or a durable_name longer than 255 bytes.
  subscriber(zmq::context_t& ctx, subscriber_options options = {});

  void connect(const std::string& endpoint);
  // Type prefix; "" = everything. Subscribing before connecting avoids missing
  // the first messages while the subscription travels to the publisher.
  void subscribe(const std::string& prefix);
  void unsubscribe(const std::string& prefix);

  // Asks every snapshot endpoint for the last value of each subscribed type and
  // queues the values for receive() (from_snapshot = true). Subscribe and
  // connect first, so that nothing published meanwhile is lost.
  // Returns: the number of values received (0 without snapshot endpoints or
  // subscriptions), or nullopt when some endpoint did not answer within
  // `timeout` (values from those that did are still queued).
  std::optional<std::size_t> request_snapshot(std::chrono::milliseconds timeout);

  // Drops everything queued (by reconnecting), then requests the snapshot
  // again; gap tracking restarts from it. What was skipped is not a gap.
  // Returns: as request_snapshot().
  std::optional<std::size_t> resync(std::chrono::milliseconds timeout);

  // Returns: the next message (queued snapshot values first), or nullopt when
  // none arrives within `timeout`. Bad frames and stale messages are dropped
  // and counted without ending the wait.
  std::optional<notification> receive(std::chrono::milliseconds timeout);
  // As receive(), without materialising the envelope: for hot paths.
  std::optional<notification_view> receive_view(std::chrono::milliseconds timeout);

  // Delivers every message to `on_message` from the loop's thread (the view is
  // valid during the call). The loop must outlive the attachment.
  // Throws: zmqkit::error{bad_config} when attached already or on_message is empty.
  using message_handler = std::function<void(const notification_view&)>;
  void attach(zmqkit::loop& loop, message_handler on_message);
  void detach() noexcept;

  const subscriber_stats& stats() const noexcept;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::pubsub
