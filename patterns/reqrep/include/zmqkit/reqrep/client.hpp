// zmqkit/reqrep/client.hpp — a retrying request/reply client (Lazy Pirate on a
// DEALER): talks to a zmqkit server, a queue device's frontend, or any ROUTER
// that answers [empty, envelope].
//
//   ```cpp
//   zmqkit::reqrep::client c(ctx, {"tcp://a:5555", "tcp://b:5555"},
//                            {.retry = {.timeout = 500ms, .retries = 3}});
//   auto r = c.request(zmqkit::make_envelope("price.get", std::string("book")));
//   if (r) use(r.reply().body_as<double>());
//   else log(r.failure().code, r.failure().reason);   // "timeout", "overloaded", ...
//   ```
//
// Several requests may be in flight: send() returns at once and poll() hands
// back completions (reply or failure) in the order they finish. A retry resends
// the same request id with zmk.attempt = the retry number (1, 2, ...); replies
// are matched by correlation_id, so a late reply to an earlier attempt
// completes the request once and any further copy is discarded.
//
// With several endpoints the client talks to one at a time; each attempt that
// times out moves it to the next endpoint (round robin), and the other requests
// in flight are resent there at once (without using up their retries).
//
// Retryable error replies are retried with the same budget (retry_policy):
// `unavailable` at once (failing over when there are several endpoints),
// `overloaded` after a backoff; other error replies end the request.
//
// Deadline: a request sent without a TTL carries the client's whole retry
// budget as its TTL (expire_when_abandoned), so a queue device, worker or
// server drops it once the caller has given up instead of running it late.
// The receiver evaluates timestamp + ttl on its own wall clock: clock skew
// between hosts shortens (receiver ahead) or lengthens (receiver behind) it.
//
// Time: retry deadlines come from options.clock; the `timeout` of poll() is
// real time, so a test with a manual_clock polls, advances, polls again.
// Threading: one thread at a time (the object owns its socket); movable.
//
// On a zmqkit::loop (zmqkit/loop.hpp), with other roles on one thread or inside
// another event loop: attach(loop) and async_request() with a callback.
//
//   ```cpp
//   zmqkit::loop loop;
//   zmqkit::reqrep::client c(ctx, "tcp://127.0.0.1:5555", {.retry = {.timeout = 500ms, .retries = 3}});
//   c.attach(loop);                         // replies, retries, failover run on the loop
//   for (int i = 0; i < 3; ++i)
//     c.async_request(zmqkit::make_envelope("price.get", std::string("book")),
//                     [](zmqkit::reqrep::result r) { if (r) use(r.reply()); });
//   loop.run_for(2s);
//   ```
//
// Callbacks run on the thread that drives the client: the loop's once attached,
// else whoever calls request() or poll(); never while the client is in the middle
// of reading a reply, so a callback may send further requests (it must not
// destroy the client). The loop must outlive the attachment: detach() or destroy
// the client first. Its clock should be options.clock (timers are set by distance).
#pragma once

#include <chrono>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <variant>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/reqrep/timing.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::reqrep {

struct client_options {
  retry_policy retry{};  // default: 2.5 s per attempt, 3 retries, constant timeout
  decode_limits limits{};
  zmqkit::socket_options socket{};
  const zmqkit::clock* clock = &zmqkit::clock::real();
  // A request sent with ttl 0 gets ttl = its age + retry_budget(policy): it
  // expires (unexecuted) when the client gives up on it. false = send ttl 0.
  bool expire_when_abandoned = true;
};

// Why a request did not get a reply.
struct request_failure {
  enum class kind { timeout, error_reply };
  kind what = kind::timeout;
  std::string code;  // "timeout", or the error reply's zmk.error code
  std::string reason;
  int attempts = 0;
  // The code as one of the toolkit's codes, when it is one.
  std::optional<reply_error> known_code() const noexcept { return parse_reply_error(code); }
  // The server failed handling the request (error reply `internal`): not the caller's mistake.
  bool server_fault() const noexcept { return known_code() == reply_error::internal; }
};

// A reply, or a failure. Cheap to move.
// [[nodiscard]]: a request whose result is ignored may have failed unseen.
class [[nodiscard]] result {
 public:
  result(envelope reply) : value_(std::move(reply)) {}
  result(request_failure failure) : value_(std::move(failure)) {}

  bool ok() const noexcept { return value_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // Returns: the reply. Throws: zmqkit::error{timeout}, {server_fault, "internal"}
  // or {request_failed, code} when the request failed.
  const envelope& reply() const&;
  envelope reply() &&;
  // Precondition: !ok(). Throws: std::logic_error otherwise.
  const request_failure& failure() const;

 private:
  [[noreturn]] void throw_failure() const;
  std::variant<envelope, request_failure> value_;
};

struct completion {
  message_id id;
  result outcome;
};

struct client_stats {
  std::uint64_t sent = 0;           // first sends
  std::uint64_t retries = 0;        // resends after a timeout
  std::uint64_t resends = 0;        // resends caused by failover
  std::uint64_t failovers = 0;      // endpoint switches
  std::uint64_t replies = 0;        // replies that completed a request (error replies included)
  std::uint64_t stale = 0;          // replies for no request in flight: late or duplicate, discarded
  std::uint64_t bad_replies = 0;    // malformed frames, discarded
  std::uint64_t timeouts = 0;       // requests that ran out of retries
  std::uint64_t send_failures = 0;  // sends refused by the socket (HWM): the retry covers them
  std::uint64_t error_retries = 0;  // retries after an `unavailable` or `overloaded` reply
};

class client {
 public:
  // Connects to `endpoint` (or the first of `endpoints`). Throws: zmqkit::error{bad_config}
  // when no endpoint is given; zmq::error_t when libzmq refuses one.
  client(zmq::context_t& ctx, std::string endpoint, client_options opts = {});
  client(zmq::context_t& ctx, std::vector<std::string> endpoints, client_options opts = {});
  // So that client(ctx, {"tcp://a:1", "tcp://b:1"}) picks the list, not std::string's iterator pair.
  client(zmq::context_t& ctx, std::initializer_list<std::string> endpoints, client_options opts = {})
      : client(ctx, std::vector<std::string>(endpoints), std::move(opts)) {}

  // Sends and waits for the reply, retrying per the policy. Completions of
  // other requests in flight that finish meanwhile are kept for poll().
  result request(envelope request);
  result request(envelope request, const retry_policy& policy);

  // Durable submission (Titanic; a queue device with --store, docs/protocol.md 7.9):
  // sends `request` with zmk.ack = "stored" and returns once the device has stored
  // it, retrying per the policy (timeouts, unavailable, overloaded). Result: the
  // device's zmk.stored acknowledgement (reply().type == zmqkit::stored_type), or
  // the reply itself when the request was already done or the device has no store.
  // A submitted request carries no TTL of the retry budget's. Kept (the latest
  // 65 536) for collect(id).
  result submit(envelope request);
  result submit(envelope request, const retry_policy& policy);
  // The reply of a submitted request: sends it again without zmk.ack; the device
  // answers from its (durable) reply cache, or joins the stored copy and answers
  // when a worker has. Throws: zmqkit::error{bad_config} for an id not submitted
  // by this client (collect(envelope): the request as submitted, by any process).
  result collect(const message_id& id);
  result collect(envelope request);

  // Sends without waiting. A nil id is replaced by a fresh one.
  // Returns: the request id. Throws: zmqkit::error{bad_config} if that id is already in flight.
  message_id send(envelope request);
  message_id send(envelope request, const retry_policy& policy);

  // Runs retries and receives replies for up to `timeout` (real time).
  // Returns: the next completed request, or nullopt if none completed in time.
  std::optional<completion> poll(std::chrono::milliseconds timeout);

  // Sends without waiting; `done` gets the reply or failure (see the top of the file).
  // Returns and throws: as send().
  using on_result = std::function<void(result)>;
  message_id async_request(envelope request, on_result done);
  message_id async_request(envelope request, const retry_policy& policy, on_result done);

  // Hands the socket and the retry/failover timers to `loop`, whose thread then
  // drives the client. Throws: zmqkit::error{bad_config} when attached already.
  void attach(zmqkit::loop& loop);
  // Takes them back (request() and poll() drive it again); no-op when not attached.
  void detach() noexcept;

  std::size_t in_flight() const noexcept;
  const std::string& endpoint() const noexcept;  // the one in use
  // With CURVE (socket.security is a curve_client), the client watches its
  // handshakes: connected() is false until one completes and after a refusal or
  // a disconnect; handshake_failure() says why ("CURVE handshake failed: ..."),
  // and a request that times out meanwhile carries that in failure().reason.
  // Without CURVE, connected() is true and handshake_failure() empty.
  bool connected() const noexcept;
  std::optional<std::string> handshake_failure() const;
  const client_stats& stats() const noexcept;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::reqrep
