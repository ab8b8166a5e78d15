// zmqkit/internal/dealer.hpp — the DEALER a reqrep client or worker (re)opens
// towards one endpoint: options applied and, under CURVE, a handshake monitor
// attached before connect (attached later, it misses the handshake it is for).
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <zmq.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::internal {

// Returns: a new DEALER connected to `endpoint`. Resets `monitor` first, so the
// caller may replace its old socket with the result.
inline zmq::socket_t connect_dealer(zmq::context_t& ctx, const socket_options& opts, const std::string& endpoint,
                                    std::optional<handshake_monitor>& monitor) {
  monitor.reset();
  zmq::socket_t socket(ctx, zmq::socket_type::dealer);
  apply(socket, opts);
  if (std::holds_alternative<curve_client>(opts.security)) monitor.emplace(ctx, socket);
  socket.connect(endpoint);
  return socket;
}

}  // namespace zmqkit::internal
