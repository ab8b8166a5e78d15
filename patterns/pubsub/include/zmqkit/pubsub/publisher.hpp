// zmqkit/pubsub/publisher.hpp — publishes envelopes by type on a PUB socket,
// stamped for gap detection, and optionally serves a last-value snapshot to
// late joiners.
//
//   ```cpp
//   zmqkit::pubsub::publisher pub(ctx, {.snapshot_endpoint = "tcp://*:5557"});
//   pub.bind("tcp://*:5556");
//   pub.publish(zmqkit::make_envelope("course.subscribed", std::string("c++")));
//   ```
//
// Wire: PUB (an XPUB, to see subscriptions) -> SUB, two frames [topic, envelope] with topic = envelope type,
// so a subscription to "course." receives "course.subscribed". Every envelope
// carries zmk.pub (this publisher's id) and zmk.seq (decimal, 1, 2, 3, ...
// counted per type, since subscribers receive whole types).
//
// Snapshot (ZeroMQ guide "Clone" style): a ROUTER socket answers
// ["zmk.snapshot", prefix...] with ["zmk.snapshot", {publisher id: {type: seq}}
// (msgpack map), envelope...]: for every type matching a prefix, its last
// sequence number and (unless its TTL has passed) its last envelope. A
// subscriber treats every live message at or below that number as covered.
//
// Threading: publish() and the other members are called from one thread. When
// a snapshot endpoint is set, a background thread owned by the publisher (an actor)
// serves it; it starts in the constructor and is joined in the destructor.
//
// On a zmqkit::loop (zmqkit/loop.hpp): publish() never blocks, so it is called
// from any handler or timer on the loop's thread; attach(loop, on_subscriptions)
// reads subscriptions as they arrive and reports their count when it changes:
// the non-blocking wait_for_subscribers().
//
//   ```cpp
//   zmqkit::loop loop;
//   zmqkit::pubsub::publisher pub(ctx);
//   pub.bind("tcp://127.0.0.1:*");
//   pub.attach(loop, [&](std::size_t live) {
//     if (live > 0) pub.publish("course.subscribed", std::string("c++"));
//   });
//   loop.run_for(1s);
//   ```
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <cstdint>
#include <string>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/pubsub/defaults.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::pubsub {

inline constexpr std::string_view snapshot_command = "zmk.snapshot";

struct publisher_options {
  // This publisher's id (zmk.pub). Empty = a random 12-hex-digit id. Must be
  // unique per publisher incarnation: a restarted publisher restarts at seq 1.
  std::string id{};
  // A ROUTER endpoint to bind for late-joiner snapshots. Empty = no snapshot
  // and no last-value cache.
  std::string snapshot_endpoint{};
  // Types remembered (sequence counter, cached last value). Beyond it the least
  // recently published type is forgotten: its numbering restarts at 1, which
  // subscribers count as a restart, not a gap.
  std::size_t max_types = 65536;
  // Snapshot replies queued per requester that does not read; more are dropped.
  int snapshot_queue = 2;
  // HWM 100 000 messages per subscriber (zmqkit/pubsub/defaults.hpp), not the generic 1000.
  zmqkit::socket_options socket = burst_socket_options();
  const zmqkit::clock* clock = &zmqkit::clock::real();  // null = the real clock
};

struct publisher_stats {
  std::uint64_t published = 0;
  std::uint64_t snapshots_served = 0;
  std::uint64_t bad_snapshot_requests = 0;  // counted and dropped
  std::uint64_t evicted_types = 0;          // types forgotten because of max_types
};

class publisher {
 public:
  // Throws: zmqkit::error (bad options), zmq::error_t (the snapshot bind fails).
  publisher(zmq::context_t& ctx, publisher_options options = {});

  // Returns: the endpoint actually bound (resolves tcp ports given as *).
  std::string bind(const std::string& endpoint);
  // Connects the PUB socket, e.g. to a forwarder's frontend.
  void connect(const std::string& endpoint);

  // Stamps zmk.pub and zmk.seq (a fresh id and timestamp if env has none),
  // then sends [type, envelope]. Never blocks. What is dropped, when, where:
  // - a subscriber whose subscription has not reached this publisher yet gets
  //   nothing (use wait_for_subscribers() before the first publish);
  // - a subscriber connection whose queue holds socket.send_hwm messages here
  //   (plus its own receive_hwm and the TCP buffers in between) loses this
  //   message: only that subscriber, which sees it as a gap;
  // - at exit, what is still queued is sent for up to socket.linger, then dropped.
  // Returns: the sequence number given to the message (within its type).
  // Throws: zmqkit::error{bad_envelope} when env breaks an envelope rule.
  std::uint64_t publish(envelope env);

  template <body_value T>
  std::uint64_t publish(std::string type, const T& body) {
    return publish(make_envelope(std::move(type), body, *clock_));
  }

  // Waits until at least `n` subscriptions are live (subscribe messages seen,
  // minus those withdrawn or whose subscriber left), for up to `timeout`.
  // Counts subscriptions, not peers: a subscriber with k prefixes counts k;
  // behind a forwarder, the forwarder's (deduplicated) subscriptions count.
  // Returns: whether there were n in time. Same thread as publish().
  bool wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout);
  // Returns: the live subscriptions seen so far (reads those pending).
  std::size_t subscriptions();

  // Lets `loop` read subscriptions as they arrive; on_subscriptions (may be empty)
  // gets the live count whenever it changes, on the loop's thread. The loop must
  // outlive the attachment. Throws: zmqkit::error{bad_config} when attached already.
  void attach(zmqkit::loop& loop, std::function<void(std::size_t subscriptions)> on_subscriptions = {});
  void detach() noexcept;

  const std::string& id() const noexcept;
  // Returns: the bound snapshot endpoint (resolved), or empty.
  std::string snapshot_endpoint() const;
  publisher_stats stats() const;

 private:
  struct impl;
  pimpl<impl> impl_;
  const zmqkit::clock* clock_;
};

}  // namespace zmqkit::pubsub
