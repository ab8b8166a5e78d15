// zmqkit/pubsub/forwarder.hpp — an XSUB/XPUB proxy, so that many publishers
// and many subscribers meet at one address without knowing each other.
//
//   zmqkit::pubsub::forwarder fwd(ctx, {.frontend = "tcp://*:5559",   // publishers connect
//                                       .backend = "tcp://*:5560"});  // subscribers connect
//   // runs until fwd is destroyed
//
// Messages flow frontend -> backend unchanged (zmk.pub/zmk.seq included, so
// gap detection works end to end). Subscriptions flow backend -> frontend, so
// publishers filter at the source: a publisher sends a type only if some
// subscriber of the forwarder wants it. Like any PUB, the backend drops
// messages for a subscriber whose queue is full; its subscriber sees the gap.
//
// Threading: the proxy loop runs on a thread the forwarder owns. The
// constructor returns once both sockets are bound and the loop runs; the
// destructor stops and joins it (bounded by socket.linger).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <zmq.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::pubsub {

struct forwarder_options {
  std::string frontend;  // XSUB, bound: publishers connect here
  std::string backend;   // XPUB, bound: subscribers connect here
  zmqkit::socket_options socket{};
};

struct forwarder_stats {
  std::uint64_t messages = 0;       // forwarded publisher -> subscribers
  std::uint64_t subscriptions = 0;  // (un)subscriptions forwarded upstream
};

class forwarder {
 public:
  // Throws: zmqkit::error{bad_config} for a missing endpoint; zmq::error_t when binding fails.
  forwarder(zmq::context_t& ctx, forwarder_options options);
  ~forwarder();
  forwarder(forwarder&&) noexcept;
  forwarder& operator=(forwarder&&) noexcept;
  forwarder(const forwarder&) = delete;
  forwarder& operator=(const forwarder&) = delete;

  // Returns: the bound endpoints, tcp ports resolved.
  const std::string& frontend_endpoint() const noexcept;
  const std::string& backend_endpoint() const noexcept;
  // Safe to call while the loop runs.
  forwarder_stats stats() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace zmqkit::pubsub
