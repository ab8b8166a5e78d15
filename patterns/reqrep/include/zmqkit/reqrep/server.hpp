// zmqkit/reqrep/server.hpp — a direct (brokerless) request/reply server on a
// ROUTER, for clients that talk to it without a queue device.
//
//   ```cpp
//   zmqkit::reqrep::server srv(ctx, "tcp://*:5555", [](const zmqkit::envelope& req) {
//     return zmqkit::make_reply(req, "echo.reply", req.body_as<std::string>());
//   });
//   std::jthread loop([&](std::stop_token st) { srv.run(st); });
//   ```
//
// Every reply is kept in a bounded cache by request id (options.cache), so a
// retried request is answered from the cache and never runs twice; a
// duplicate that arrives while the first copy still runs is not run either:
// it gets the reply when that finishes. A bad frame is answered `bad-request`,
// an expired request `expired`; neither reaches the handler.
//
// Threading: one thread at a time drives poll()/run(), or attach(loop) and the
// loop's thread does (zmqkit/loop.hpp). With threads = 0 the
// handler runs inline in that loop (lowest latency; a server has no heartbeat
// to keep up, unlike reqrep::worker, which always uses one handler thread);
// with threads = N it runs on N handler threads owned by the server (the
// handler must then be thread-safe), which start with it and are joined by
// its destructor.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <string>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/reqrep/handler.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::reqrep {

// Recent replies by request id, so that a retried request is answered without
// running the handler again. Evicted oldest first: when full (entries or bytes)
// and once older than max_age.
struct reply_cache_options {
  std::size_t max_entries = 10000;  // 0 disables the cache
  // The sum of the cached replies' sizes; past it the oldest are evicted, and a
  // reply larger than this is not cached.
  std::size_t max_bytes = std::size_t{256} << 20;
  std::chrono::milliseconds max_age{60000};
};

struct server_options {
  plain_handler plain{};        // answers plain (non-envelope) bodies; none = drop them (counted)
  int threads = 0;              // 0 = run the handler inline in the poll loop
  reply_cache_options cache{};  // 10000 replies, 60 s
  decode_limits limits{};
  zmqkit::socket_options socket{};
  const zmqkit::clock* clock = &zmqkit::clock::real();
};

struct server_stats {
  std::uint64_t received = 0;        // messages read from the socket
  std::uint64_t executed = 0;        // handler runs (envelope and plain)
  std::uint64_t cache_hits = 0;      // retries answered from the reply cache
  std::uint64_t joined = 0;          // duplicates that arrived while the first still ran
  std::uint64_t bad_requests = 0;    // answered bad-request without running
  std::uint64_t expired = 0;         // answered expired without running (on arrival, or waiting for a thread)
  std::uint64_t handler_errors = 0;  // handler threw
  std::uint64_t dropped = 0;         // unroutable frames, plain bodies without a plain handler
};

class server {
 public:
  // Binds `endpoint`. Throws: zmq::error_t when libzmq refuses it.
  server(zmq::context_t& ctx, const std::string& endpoint, handler h, server_options opts = {});

  // Handles what arrives within `timeout`. Returns: messages handled (requests and results).
  // Throws: error{bad_config} once attached to a loop (that loop drives the server).
  std::size_t poll(std::chrono::milliseconds timeout);
  // Serves until `stop` is requested. Throws: as poll().
  void run(std::stop_token stop);
  // From now on `loop` drives the server on its thread (with other roles); the
  // loop must outlive the server. Throws: error{bad_config} when attached already.
  void attach(zmqkit::loop& loop);

  // The bound endpoint (with the port chosen for tcp://...:*).
  std::string endpoint() const;
  const server_stats& stats() const noexcept;
  std::size_t cached() const noexcept;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::reqrep
