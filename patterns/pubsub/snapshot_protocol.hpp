// The snapshot request/reply, shared by the publisher and the forwarder (both
// answer it) — private to this folder.
//   request: [identity, "zmk.snapshot", prefix...]      (no prefix = every type)
//   reply:   [identity, "zmk.snapshot", {publisher: {type: seq}}, envelope...]
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
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
  for (std::size_t i = 2; i < request.size(); ++i) prefixes.push_back(frame_view(request[i]));
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
  msgpack::packer<msgpack::sbuffer> pk(packed);
  pk.pack_map(static_cast<std::uint32_t>(table.size()));
  for (const auto& [publisher, types] : table) {
    pk.pack(publisher);
    pk.pack_map(static_cast<std::uint32_t>(types.size()));
    for (const auto& [type, seq] : types) {
      pk.pack(type);
      pk.pack(seq);
    }
  }
  std::vector<zmq::message_t> reply;
  reply.push_back(std::move(identity));
  reply.emplace_back(snapshot_command.data(), snapshot_command.size());
  reply.emplace_back(packed.data(), packed.size());
  return reply;
}

// Heterogeneous lookup by string_view in the per-type tables.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

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
