// The retention exchange of a storing forwarder (docs/protocol.md 8.6), shared
// by the forwarder (answers) and the subscriber (asks) — private to this folder.
//   [identity,] "zmk.streams" prefix...                      -> "zmk.streams" {pub: {type: [first, last]}}
//   [identity,] "zmk.replay" pub type start to max           -> "zmk.replay" pub type {head map} envelope...
//   [identity,] "zmk.cursor" name                            -> "zmk.cursor" name {pub: {type: seq}}
//   [identity,] "zmk.ack" name (pub type seq)...             (no reply)
//   a malformed streams/replay/cursor request                -> "zmk.error" command reason
// Every request frame is short (the ROUTER takes at most 512 bytes a frame):
// numbers are ASCII decimal, as zmk.seq is.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zmqkit::pubsub::detail {

inline constexpr std::string_view streams_command = "zmk.streams";
inline constexpr std::string_view replay_command = "zmk.replay";
inline constexpr std::string_view cursor_command = "zmk.cursor";
inline constexpr std::string_view ack_command = "zmk.ack";
inline constexpr std::string_view error_command = "zmk.error";
inline constexpr std::size_t max_name_bytes = 255;       // a durable subscriber's name
inline constexpr std::size_t max_acks_per_message = 256;  // (pub, type, seq) triples in one zmk.ack
inline constexpr std::size_t max_replay_messages = 1000;  // per reply, whatever the request asks
inline constexpr std::size_t max_replay_bytes = 4 << 20;  // envelope bytes per reply (at least one message)

// Returns: the value of a decimal number with nothing else around it, or nullopt.
inline std::optional<std::uint64_t> parse_decimal(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Returns: a zmk.seq value (8.2: decimal, 1 .. 2^64 - 1), or nullopt.
inline std::optional<std::uint64_t> parse_seq(std::string_view text) {
  const auto v = parse_decimal(text);
  return v && *v != 0 ? v : std::nullopt;
}

// Where a replay starts: a sequence number, or "@" and a receive time in
// nanoseconds since the Unix epoch.
struct replay_start {
  std::uint64_t seq = 0;                    // 0 when `since` is used
  std::optional<std::uint64_t> since_ns{};
};

inline std::optional<replay_start> parse_replay_start(std::string_view text) {
  if (text.starts_with('@')) {
    const auto ns = parse_decimal(text.substr(1));
    if (!ns) return std::nullopt;
    return replay_start{0, *ns};
  }
  const auto seq = parse_seq(text);
  if (!seq) return std::nullopt;
  return replay_start{*seq, std::nullopt};
}

inline std::string format_replay_start(const replay_start& s) {
  return s.since_ns ? "@" + std::to_string(*s.since_ns) : std::to_string(s.seq);
}

// The map after pub and type in a replay reply.
struct replay_head {
  std::uint64_t next = 0;  // the sequence number to ask for next
  std::uint64_t head = 0;  // the stream's last stored sequence number (0: none)
  bool end = false;        // nothing more stored up to the requested `to` (or the head)
  std::vector<std::pair<std::uint64_t, std::uint64_t>> lost;  // [first, last] not held, in the span covered
};

}  // namespace zmqkit::pubsub::detail
