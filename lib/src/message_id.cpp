#include <zmqkit/message_id.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

namespace zmqkit {

namespace {

// splitmix64: a fast, well-mixed generator seeded once per thread from the OS.
struct id_state {
  std::uint64_t rng;
  std::uint64_t last_ms = 0;
  std::uint32_t counter = 0;  // 12-bit rand_a, monotonic within a millisecond

  id_state() {
    std::random_device dev;
    rng = (std::uint64_t{dev()} << 32) ^ dev();
  }
  std::uint64_t next() {
    std::uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

message_id message_id::generate() { return generate(std::chrono::system_clock::now()); }

message_id message_id::generate(std::chrono::system_clock::time_point now) {
  thread_local id_state state;
  const auto since_epoch = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(since_epoch, 0));
  if (ms > state.last_ms) {
    state.last_ms = ms;
    state.counter = static_cast<std::uint32_t>(state.next() & 0x1ff);  // leave room to count up
  } else if (++state.counter > 0xfff) {
    // Counter exhausted (4096 ids in one ms) or the clock went back: borrow the next ms.
    ++state.last_ms;
    state.counter = 0;
  }
  ms = state.last_ms;

  message_id id;
  auto& b = id.bytes;
  for (int i = 0; i < 6; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | (state.counter >> 8));  // version 7
  b[7] = static_cast<std::uint8_t>(state.counter);
  const std::uint64_t r = state.next();
  for (int i = 0; i < 8; ++i) b[8 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(r >> (56 - 8 * i));
  b[8] = static_cast<std::uint8_t>(0x80 | (b[8] & 0x3f));  // variant 10
  return id;
}

std::optional<message_id> message_id::from_bytes(std::string_view raw) noexcept {
  if (raw.size() != 16) return std::nullopt;
  message_id id;
  std::memcpy(id.bytes.data(), raw.data(), 16);
  return id;
}

std::optional<message_id> message_id::parse(std::string_view text) noexcept {
  if (text.size() != 36) return std::nullopt;
  message_id id;
  std::size_t out = 0;
  for (std::size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    const int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[out++] = static_cast<std::uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return id;
}

std::string message_id::to_string() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += digits[bytes[i] >> 4];
    s += digits[bytes[i] & 0xf];
  }
  return s;
}

}  // namespace zmqkit
