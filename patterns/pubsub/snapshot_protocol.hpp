// The snapshot request/reply, shared by the publisher and the forwarder (both
// answer it) — private to this folder.
//   request: [identity, "zmk.snapshot", prefix...]      (no prefix = every type)
//   reply:   [identity, "zmk.snapshot", {publisher: {type: seq}}, envelope...]
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/pubsub/publisher.hpp>  // snapshot_command

namespace zmqkit::pubsub::detail {

inline constexpr std::size_t max_snapshot_prefixes = 256;

// The largest frame a PUB/XPUB or snapshot ROUTER socket accepts from a peer
// (ZMQ_MAXMSGSIZE). Those sockets only ever receive subscriptions (\x01 or
// \x00 + prefix) and snapshot requests, whose useful part is at most
// 1 + max_type_bytes = 256 bytes: a longer prefix matches no topic. libzmq
// 4.3.4 stores a subscription one trie node per byte (a 90 KB one costs
// megabytes; its XSUB trie recurses per byte and overflows the stack at
// ~200 KB), so a frame beyond this disconnects its sender in the decoder,
// before libzmq parses it. The slack above 256 covers the CURVE handshake's
// INITIATE (~290 bytes), CURVE's per-message overhead (33 bytes) and ZMTP 3.1
// command names; what falls between 256 and this is dropped and counted by
// the forwarder.
inline constexpr std::int64_t max_subscription_frame_bytes = 512;

// Applies the limit above to a socket that receives only subscriptions or
// snapshot requests (after apply(), which set the general maximum).
inline void limit_to_subscription_frames(zmq::socket_t& socket, std::int64_t configured_max) {
  const std::int64_t limit = configured_max < 0 ? max_subscription_frame_bytes
                                                : std::min(configured_max, max_subscription_frame_bytes);
  socket.set(zmq::sockopt::maxmsgsize, limit);
}

inline std::string_view frame_view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

// Returns: the requested prefixes, or nullopt for a malformed request.
inline std::optional<std::vector<std::string_view>> parse_snapshot_request(
    const std::vector<zmq::message_t>& request) {
  if (request.size() < 2 || frame_view(request[1]) != snapshot_command ||
      request.size() - 2 > max_snapshot_prefixes)
    return std::nullopt;
  std::vector<std::string_view> prefixes;
  for (std::size_t i = 2; i < request.size(); ++i) {
    if (request[i].size() > max_type_bytes) return std::nullopt;  // could match no type
    prefixes.push_back(frame_view(request[i]));
  }
  if (prefixes.empty()) prefixes.emplace_back();
  return prefixes;
}

inline bool matches_any(std::string_view type, const std::vector<std::string_view>& prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](std::string_view p) { return type.starts_with(p); });
}

// publisher id -> type -> last sequence number
using sequence_table = std::map<std::string, std::map<std::string, std::uint64_t>, std::less<>>;

// Returns: the reply's first frames [identity, "zmk.snapshot", packed table];
// the caller appends the envelopes.
inline std::vector<zmq::message_t> snapshot_reply_head(zmq::message_t identity, const sequence_table& table) {
  msgpack::sbuffer packed;
  msgpack::pack(packed, table);
  std::vector<zmq::message_t> reply;
  reply.push_back(std::move(identity));
  reply.emplace_back(snapshot_command.data(), snapshot_command.size());
  reply.emplace_back(packed.data(), packed.size());
  return reply;
}

// Connects `ours` to `theirs` over a fresh inproc PAIR: the stop signal for a
// background thread. Internal, not a network socket, so no socket_options.
inline void open_control_pipe(zmq::context_t& ctx, zmq::socket_t& ours, zmq::socket_t& theirs) {
  static std::atomic<std::uint64_t> counter{0};
  const std::string endpoint = "inproc://zmqkit-pubsub-control-" + std::to_string(counter++);
  theirs = zmq::socket_t(ctx, zmq::socket_type::pair);
  theirs.set(zmq::sockopt::linger, 0);
  theirs.bind(endpoint);
  ours = zmq::socket_t(ctx, zmq::socket_type::pair);
  ours.set(zmq::sockopt::linger, 0);
  ours.connect(endpoint);
}

}  // namespace zmqkit::pubsub::detail
