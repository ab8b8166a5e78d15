#include "wire.hpp"

#include <zmqkit/envelope.hpp>

#include <bit>

namespace zmqkit::detail {

void throw_bad_envelope(std::string_view field, std::string_view problem) {
  std::string message = "ZMK/1 envelope: ";
  message += field;
  message += ": ";
  message += problem;
  throw error(errc::bad_envelope, std::string(field), message);
}

void wire_reader::read_timestamp(std::string_view field, std::int64_t& seconds, std::uint32_t& nanoseconds) {
  const std::uint8_t b = take_byte(field);
  std::size_t n;
  if (b == 0xd6)
    n = 4;
  else if (b == 0xd7)
    n = 8;
  else if (b == 0xc7)
    n = take_be<std::uint8_t>(field);
  else
    throw_bad_envelope(field, "not a msgpack timestamp extension");
  if (take_be<std::int8_t>(field) != -1) throw_bad_envelope(field, "extension type is not -1 (timestamp)");
  if (n == 4) {
    seconds = take_be<std::uint32_t>(field);
    nanoseconds = 0;
  } else if (n == 8) {
    const std::uint64_t v = take_be<std::uint64_t>(field);
    nanoseconds = static_cast<std::uint32_t>(v >> 34);
    seconds = static_cast<std::int64_t>(v & 0x3ffffffffULL);
  } else if (n == 12) {
    nanoseconds = take_be<std::uint32_t>(field);
    seconds = take_be<std::int64_t>(field);
  } else {
    throw_bad_envelope(field, "timestamp is not 4, 8 or 12 bytes");
  }
  if (nanoseconds >= 1'000'000'000U) throw_bad_envelope(field, "nanoseconds out of range");
  // Keep seconds within what a nanosecond int64 time_point can hold (years 1678-2262).
  if (seconds < -9'223'372'035LL || seconds > 9'223'372'035LL)
    throw_bad_envelope(field, "out of representable range");
}

void wire_reader::skip_any(std::string_view field, int depth) {
  if (depth <= 0) throw_bad_envelope(field, "nested too deeply");
  const std::uint8_t b = take_byte(field);
  std::uint64_t items = 0;  // nested values to skip
  std::size_t bytes = 0;    // payload bytes to skip
  if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return;
  if ((b & 0xf0) == 0x80)
    items = 2ULL * (b & 0x0f);
  else if ((b & 0xf0) == 0x90)
    items = b & 0x0f;
  else if ((b & 0xe0) == 0xa0)
    bytes = b & 0x1f;
  else
    switch (b) {
      case 0xc4:
      case 0xd9: bytes = take_be<std::uint8_t>(field); break;
      case 0xc5:
      case 0xda: bytes = take_be<std::uint16_t>(field); break;
      case 0xc6:
      case 0xdb: bytes = take_be<std::uint32_t>(field); break;
      case 0xc7: bytes = 1 + std::size_t{take_be<std::uint8_t>(field)}; break;
      case 0xc8: bytes = 1 + std::size_t{take_be<std::uint16_t>(field)}; break;
      case 0xc9: bytes = 1 + std::size_t{take_be<std::uint32_t>(field)}; break;
      case 0xca: bytes = 4; break;
      case 0xcb: bytes = 8; break;
      case 0xcc:
      case 0xd0: bytes = 1; break;
      case 0xcd:
      case 0xd1: bytes = 2; break;
      case 0xce:
      case 0xd2: bytes = 4; break;
      case 0xcf:
      case 0xd3: bytes = 8; break;
      case 0xd4: bytes = 2; break;
      case 0xd5: bytes = 3; break;
      case 0xd6: bytes = 5; break;
      case 0xd7: bytes = 9; break;
      case 0xd8: bytes = 17; break;
      case 0xdc: items = take_be<std::uint16_t>(field); break;
      case 0xdd: items = take_be<std::uint32_t>(field); break;
      case 0xde: items = 2ULL * take_be<std::uint16_t>(field); break;
      case 0xdf: items = 2ULL * take_be<std::uint32_t>(field); break;
      default: throw_bad_envelope(field, "invalid msgpack type byte 0xc1");
    }
  take(field, bytes);
  // Every value takes at least one byte: a count beyond what is left is a lie.
  if (items > remaining()) throw_bad_envelope(field, "truncated");
  for (std::uint64_t i = 0; i < items; ++i) skip(field, depth - 1);
}

// --- writing ----------------------------------------------------------------

std::size_t size_uint(std::uint64_t v) noexcept {
  return v <= 0x7f ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffULL ? 5 : 9;
}
std::size_t size_str(std::size_t n) noexcept {
  return n + (n < 32 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5);
}
std::size_t size_bin(std::size_t n) noexcept { return n + (n <= 0xff ? 2 : n <= 0xffff ? 3 : 5); }
std::size_t size_map_header(std::size_t n) noexcept { return n < 16 ? 1 : n <= 0xffff ? 3 : 5; }
std::size_t size_timestamp(std::int64_t seconds, std::uint32_t nanoseconds) noexcept {
  if (seconds >= 0 && (seconds >> 34) == 0) return (nanoseconds == 0 && seconds <= 0xffffffffLL) ? 6 : 10;
  return 15;
}

}  // namespace zmqkit::detail

namespace zmqkit {

bool is_valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  // Types and header keys are mostly ASCII: skip a leading ASCII run 8 bytes at a time.
  for (std::uint64_t w; end - p >= 8; p += 8) {
    std::memcpy(&w, p, 8);
    if (w & 0x8080808080808080ULL) break;
  }
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    std::uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else
      return false;
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      return false;
    p += n + 1;
  }
  return true;
}

}  // namespace zmqkit
