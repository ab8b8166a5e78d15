// zmqkit/internal/routed.hpp — the one rule for a message on the ROUTER side,
// `route empty body` (docs/protocol.md 6.1): the route (address stack) is every
// frame before the first empty one, at least one; exactly one frame, the body,
// follows the empty one. ROUTER identities are never empty, so the first empty
// frame is the delimiter. Internal to the library: public headers never include it.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <vector>
#include <zmq.hpp>

namespace zmqkit::internal {

// Returns: the route's length (the index of the empty frame) when `frames` is
// `1*identity empty body`; nullopt for any other shape (to drop, counted).
inline std::optional<std::size_t> route_length(std::span<const zmq::message_t> frames) noexcept {
  std::size_t delimiter = 0;
  while (delimiter < frames.size() && frames[delimiter].size() != 0) ++delimiter;
  if (delimiter == 0 || delimiter + 2 != frames.size()) return std::nullopt;
  return delimiter;
}

// Splits a routed message in place: returns its body and leaves only the route
// in `frames`; nullopt (frames untouched) when the shape is wrong.
inline std::optional<zmq::message_t> take_body(std::vector<zmq::message_t>& frames) {
  const std::optional<std::size_t> route = route_length(frames);
  if (!route) return std::nullopt;
  zmq::message_t body = std::move(frames[*route + 1]);
  frames.resize(*route);
  return body;
}

}  // namespace zmqkit::internal
