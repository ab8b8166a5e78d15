// zmqkit/reqrep/worker.hpp — a heartbeating worker behind a queue device
// (Paranoid Pirate compatible): a DEALER connected to the device's backend.
//
//   ```cpp
//   zmqkit::reqrep::worker w(ctx, "tcp://queue:5556", [](const zmqkit::envelope& req) {
//     return zmqkit::make_reply(req, "price.quote", work(req.body_as<std::string>()));
//   }, {.services = {"price."}});
//   std::jthread loop([&](std::stop_token st) { w.run(st); });   // DISCONNECT on stop
//   ```
//
// Protocol: READY (0x01) on connect, followed by a msgpack array of `services`
// when there are any, or by a map {"prefixes": services, "capacity": n} when
// `capacity` > 1 (the device may then queue up to n requests here; they still
// run one at a time, in arrival order); HEARTBEAT (0x02) every heartbeat_interval, also while a
// handler runs (the handler runs on the worker's own handler thread); the
// device is dead after `liveness` intervals without a frame from it, and the
// worker then reconnects with a fresh socket after 1 s, 2 s, 4 s ... 32 s and
// sends READY again; DISCONNECT (0x03) on stop(). A request arrives as
// [address stack..., empty, body] and is answered with the same leading frames.
// Plain (non-envelope) bodies go to options.plain, so the worker serves the
// ZeroMQ guide's Paranoid Pirate queue and clients unchanged.
//
// Time: heartbeats, liveness and backoff follow options.clock; the `timeout`
// of poll() is real time. Threading: one thread at a time drives poll()/run().
// The handler always runs on the worker's one handler thread, never on the
// poll thread (unlike server's default threads = 0): a worker must keep
// heartbeating while a handler works, or the device declares it dead. Requests
// run one at a time, so the handler need not be thread-safe, but it must not
// assume it runs on the thread that created or polls the worker.
//
// On a zmqkit::loop (zmqkit/loop.hpp): attach(loop) hands the device socket, the
// handler thread's results and the heartbeat/reconnect timers to the loop, so a
// worker shares one thread with other roles (the handler still runs on its own
// thread). stop() detaches it. The loop must outlive the attachment.
//
//   ```cpp
//   zmqkit::loop loop;
//   zmqkit::reqrep::worker w(ctx, "tcp://queue:5556", [](const zmqkit::envelope& req) {
//     return zmqkit::make_reply(req, "price.quote", 9.5);
//   });
//   w.attach(loop);
//   loop.run_for(1s);
//   ```
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/reqrep/handler.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::reqrep {

namespace control {
inline constexpr std::uint8_t ready = 0x01;
inline constexpr std::uint8_t heartbeat = 0x02;
inline constexpr std::uint8_t disconnect = 0x03;
}  // namespace control

struct worker_options {
  std::vector<std::string> services{};  // type prefixes sent with READY; empty = every type
  // Requests the queue device may have outstanding here at once (1..1024). 1 keeps
  // the Paranoid Pirate READY; more sends READY's map form. They queue in the
  // worker's socket and run one at a time: capacity hides the device round trip.
  std::uint32_t capacity = 1;
  plain_handler plain{};  // answers plain bodies; none = drop them (counted)
  std::chrono::milliseconds heartbeat_interval{1000};
  int liveness = 3;  // intervals of silence before the device counts as dead
  std::chrono::milliseconds reconnect_initial{1000};
  std::chrono::milliseconds reconnect_max{32000};
  decode_limits limits{};
  zmqkit::socket_options socket{};
  const zmqkit::clock* clock = &zmqkit::clock::real();
};

struct worker_stats {
  std::uint64_t requests = 0;        // requests accepted for the handler (some may expire before it runs)
  std::uint64_t replies = 0;         // replies sent
  std::uint64_t handler_errors = 0;  // handler threw: answered with an error reply
  std::uint64_t bad_requests = 0;    // answered bad-request without running
  std::uint64_t expired = 0;         // answered expired without running (on arrival, or queued here)
  std::uint64_t heartbeats_sent = 0;
  std::uint64_t heartbeats_received = 0;
  std::uint64_t reconnects = 0;    // dead device detected, socket replaced
  std::uint64_t dropped = 0;       // malformed or unknown frames, plain bodies without a handler
  std::uint64_t replies_lost = 0;  // finished while disconnected: nowhere to send
};

class worker {
 public:
  // Connects to `endpoint` and sends READY. Throws: zmq::error_t when libzmq refuses
  // it; zmqkit::error{bad_config} when capacity is not in 1..1024.
  // Destroying it stop()s it, if not stopped yet.
  worker(zmq::context_t& ctx, std::string endpoint, handler h, worker_options opts = {});

  // Runs the protocol for up to `timeout` (real time): requests, heartbeats, reconnects.
  void poll(std::chrono::milliseconds timeout);
  // Polls until `stop` is requested, then stop().
  void run(std::stop_token stop);
  // Waits for the handler running now (if any) to return and sends its reply,
  // drops requests queued here that have not started (the device requeues them
  // on DISCONNECT), joins the handler thread, sends DISCONNECT and closes the
  // socket; later polls do nothing. A handler that never returns blocks stop().
  void stop();

  // Lets `loop` drive the worker from now on (poll()/run() are then not needed).
  // Throws: zmqkit::error{bad_config} when attached already or stopped.
  void attach(zmqkit::loop& loop);
  // Gives it back to poll()/run(); no-op when not attached.
  void detach() noexcept;

  const worker_stats& stats() const noexcept;
  // False while waiting to reconnect, or after stop(); with CURVE (socket.security
  // is a curve_client) also until a handshake completes and after a refusal.
  bool connected() const noexcept;
  // With CURVE: why the last handshake failed ("CURVE handshake failed: ..."), while
  // no handshake has succeeded since; else empty.
  std::optional<std::string> handshake_failure() const;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::reqrep
