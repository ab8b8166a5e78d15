// zmqkit/internal/worker_protocol.hpp — the worker side of the queue device's
// protocol (docs/protocol.md, "Worker side"): the control frames and READY's
// announcement, encoded by the reqrep worker and parsed by the device from this
// one copy. Internal to the library: patterns include it, public headers never do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace zmqkit::internal::worker_protocol {

// A control message is one frame of one byte (READY may add a second frame).
inline constexpr char ready = 0x01;
inline constexpr char heartbeat = 0x02;
inline constexpr char disconnect = 0x03;

// Returns: which control message a worker's message is, given the frame after
// its identity (READY, HEARTBEAT or DISCONNECT: one byte), or 0 when it is none
// (a reply). The caller checks the frame count (READY may carry a second frame).
inline char control_of(std::string_view frame) noexcept {
  return frame.size() == 1 && frame[0] >= ready && frame[0] <= disconnect ? frame[0] : 0;
}

inline constexpr std::uint64_t max_capacity = 1024;  // zmqkit's bound on READY's "capacity"

// What a worker announces in READY: the type prefixes it serves (empty: every
// type) and how many requests it may hold at once.
struct announcement {
  std::vector<std::string> prefixes;
  std::size_t capacity = 1;
};

// Returns: READY's second frame for `a`: empty for a bare READY (capacity 1,
// every type), the prefix array (capacity 1: the original form, which devices
// older than the map form still take), else the map {"capacity", "prefixes"}.
std::string encode_ready(const announcement& a);

// Parses READY's second frame: a msgpack array of type prefixes, or a map
// {"prefixes": [str...], "capacity": uint} (both optional, unknown keys ignored).
// Returns: the announcement, or why it is refused: malformed, or past the
// device's bounds (prefixes per worker, a prefix longer than a type, capacity).
std::variant<announcement, std::string> parse_ready(std::string_view frame, std::size_t max_prefixes,
                                                    std::uint64_t max_worker_capacity);

}  // namespace zmqkit::internal::worker_protocol
