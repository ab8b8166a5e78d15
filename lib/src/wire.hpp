// The msgpack subset ZMK/1 uses, read and written by hand: the envelope is a
// fixed shape, so a direct reader validates and locates every field without
// building a msgpack object tree, and a direct writer encodes into the frame's
// own buffer. Private to lib/.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <zmqkit/error.hpp>

namespace zmqkit::detail {

[[noreturn]] void throw_bad_envelope(std::string_view field, std::string_view problem);

// Reads msgpack values from a bounded buffer. Every read checks bounds and
// type and throws errc::bad_envelope naming `field`.
class wire_reader {
 public:
  explicit wire_reader(std::string_view data) noexcept
      : p_(reinterpret_cast<const std::uint8_t*>(data.data())), end_(p_ + data.size()) {}

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
  const char* position() const noexcept { return reinterpret_cast<const char*>(p_); }

  std::uint32_t read_array_header(std::string_view field);
  std::uint32_t read_map_header(std::string_view field);
  std::uint64_t read_uint(std::string_view field);  // any non-negative integer encoding
  std::string_view read_str(std::string_view field);
  std::string_view read_bin(std::string_view field);
  // Timestamp extension (type -1) in its 32, 64 or 96-bit form.
  void read_timestamp(std::string_view field, std::int64_t& seconds, std::uint32_t& nanoseconds);
  // Skips one value of any type, nested at most `depth` levels. Scalars (what
  // an envelope's fields are) inline; containers and the rest in skip_any().
  void skip(std::string_view field, int depth);

 private:
  std::uint32_t read_container_header(std::string_view field, std::uint8_t fix, std::uint8_t code16,
                                      std::string_view not_it);
  std::size_t read_length(std::string_view field, std::uint8_t b, std::uint8_t code8, std::string_view not_it);
  std::uint8_t take_byte(std::string_view field);
  template <class T>
  T take_be(std::string_view field);
  const char* take(std::string_view field, std::size_t n);

  void skip_any(std::string_view field, int depth);

  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

// Sizes and writes of the same subset (big-endian; this code assumes a little-endian host); the writer trusts
// its caller to have sized the buffer with the matching size_* functions.
std::size_t size_uint(std::uint64_t v) noexcept;
std::size_t size_str(std::size_t n) noexcept;
std::size_t size_bin(std::size_t n) noexcept;
std::size_t size_map_header(std::size_t n) noexcept;
std::size_t size_timestamp(std::int64_t seconds, std::uint32_t nanoseconds) noexcept;

class wire_writer {
 public:
  explicit wire_writer(void* out) noexcept : p_(static_cast<std::uint8_t*>(out)) {}
  void put_array_header(std::uint32_t n) noexcept;
  void put_map_header(std::uint32_t n) noexcept;
  void put_uint(std::uint64_t v) noexcept;
  void put_str(std::string_view s) noexcept;
  void put_bin(std::string_view s) noexcept;
  void put_timestamp(std::int64_t seconds, std::uint32_t nanoseconds) noexcept;
  std::uint8_t* position() const noexcept { return p_; }

 private:
  void put_byte(std::uint8_t b) noexcept { *p_++ = b; }
  void put_length(std::size_t n, std::uint8_t code8) noexcept;
  void put_container_header(std::uint32_t n, std::uint8_t fix, std::uint8_t code16) noexcept;
  template <class T>
  void put_be(T v) noexcept;
  void put_raw(std::string_view s) noexcept {
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }

  std::uint8_t* p_;
};


// The reader is inline too: decode_view() reads a dozen small values per frame.
template <class T>
inline T from_be(const std::uint8_t* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::little && sizeof(T) > 1) {
    if constexpr (sizeof(T) == 2) v = static_cast<T>(__builtin_bswap16(static_cast<std::uint16_t>(v)));
    if constexpr (sizeof(T) == 4) v = static_cast<T>(__builtin_bswap32(static_cast<std::uint32_t>(v)));
    if constexpr (sizeof(T) == 8) v = static_cast<T>(__builtin_bswap64(static_cast<std::uint64_t>(v)));
  }
  return v;
}

inline std::uint8_t wire_reader::take_byte(std::string_view field) {
  if (p_ == end_) throw_bad_envelope(field, "truncated");
  return *p_++;
}

template <class T>
inline T wire_reader::take_be(std::string_view field) {
  if (remaining() < sizeof(T)) throw_bad_envelope(field, "truncated");
  T v = from_be<T>(p_);
  p_ += sizeof(T);
  return v;
}

inline const char* wire_reader::take(std::string_view field, std::size_t n) {
  if (remaining() < n) throw_bad_envelope(field, "truncated");
  const char* start = position();
  p_ += n;
  return start;
}

inline void wire_reader::skip(std::string_view field, int depth) {
  if (depth <= 0 || p_ == end_) return skip_any(field, depth);  // which throws
  const std::uint8_t b = *p_;
  std::size_t after;  // bytes after the type byte
  if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
    after = 0;  // fixint, nil, bool
  else if ((b & 0xe0) == 0xa0)
    after = b & 0x1f;  // fixstr
  else if (b >= 0xcc && b <= 0xd3)
    after = std::size_t{1} << ((b - 0xcc) & 3);  // uint 8..64, int 8..64
  else if (b >= 0xd4 && b <= 0xd8)
    after = 1 + (std::size_t{1} << (b - 0xd4));  // fixext 1..16: type, data
  else if ((b == 0xc4 || b == 0xd9) && remaining() >= 2)
    after = 1 + std::size_t{p_[1]};  // bin 8, str 8
  else
    return skip_any(field, depth);
  ++p_;
  take(field, after);
}

// Arrays and maps share one layout: fix form, then 16- and 32-bit counts.
inline std::uint32_t wire_reader::read_container_header(std::string_view field, std::uint8_t fix, std::uint8_t code16,
                                                        std::string_view not_it) {
  const std::uint8_t b = take_byte(field);
  if ((b & 0xf0) == fix) return b & 0x0f;
  if (b == code16) return take_be<std::uint16_t>(field);
  if (b == code16 + 1) return take_be<std::uint32_t>(field);
  throw_bad_envelope(field, not_it);
}

inline std::uint32_t wire_reader::read_array_header(std::string_view field) {
  return read_container_header(field, 0x90, 0xdc, "not a msgpack array");
}
inline std::uint32_t wire_reader::read_map_header(std::string_view field) {
  return read_container_header(field, 0x80, 0xde, "not a msgpack map");
}

inline std::uint64_t wire_reader::read_uint(std::string_view field) {
  const std::uint8_t b = take_byte(field);
  if (b <= 0x7f) return b;
  std::int64_t s;
  switch (b) {
    case 0xcc: return take_be<std::uint8_t>(field);
    case 0xcd: return take_be<std::uint16_t>(field);
    case 0xce: return take_be<std::uint32_t>(field);
    case 0xcf: return take_be<std::uint64_t>(field);
    case 0xd0: s = take_be<std::int8_t>(field); break;
    case 0xd1: s = take_be<std::int16_t>(field); break;
    case 0xd2: s = take_be<std::int32_t>(field); break;
    case 0xd3: s = take_be<std::int64_t>(field); break;
    default:
      if (b >= 0xe0) throw_bad_envelope(field, "negative integer");
      throw_bad_envelope(field, "not a msgpack integer");
  }
  if (s < 0) throw_bad_envelope(field, "negative integer");
  return static_cast<std::uint64_t>(s);
}

// str and bin share one layout: codes for 8-, 16- and 32-bit lengths in a row.
inline std::size_t wire_reader::read_length(std::string_view field, std::uint8_t b, std::uint8_t code8,
                                            std::string_view not_it) {
  if (b == code8) return take_be<std::uint8_t>(field);
  if (b == code8 + 1) return take_be<std::uint16_t>(field);
  if (b == code8 + 2) return take_be<std::uint32_t>(field);
  throw_bad_envelope(field, not_it);
}

inline std::string_view wire_reader::read_str(std::string_view field) {
  const std::uint8_t b = take_byte(field);
  const std::size_t n = (b & 0xe0) == 0xa0 ? b & 0x1f : read_length(field, b, 0xd9, "not a msgpack str");
  return {take(field, n), n};
}

inline std::string_view wire_reader::read_bin(std::string_view field) {
  const std::size_t n = read_length(field, take_byte(field), 0xc4, "not a msgpack bin");
  return {take(field, n), n};
}

// The writer is inline: encode() calls it once per field.
template <class T>
inline void wire_writer::put_be(T v) noexcept {
  auto u = static_cast<std::make_unsigned_t<T>>(v);
  if constexpr (sizeof(T) == 2) u = __builtin_bswap16(u);
  if constexpr (sizeof(T) == 4) u = __builtin_bswap32(u);
  if constexpr (sizeof(T) == 8) u = __builtin_bswap64(u);
  std::memcpy(p_, &u, sizeof(T));
  p_ += sizeof(T);
}

// Arrays and maps share one layout: fix form, then 16- and 32-bit counts.
inline void wire_writer::put_container_header(std::uint32_t n, std::uint8_t fix, std::uint8_t code16) noexcept {
  if (n < 16)
    put_byte(static_cast<std::uint8_t>(fix | n));
  else if (n <= 0xffff) {
    put_byte(code16);
    put_be<std::uint16_t>(static_cast<std::uint16_t>(n));
  } else {
    put_byte(static_cast<std::uint8_t>(code16 + 1));  // the 32-bit form's code follows
    put_be<std::uint32_t>(n);
  }
}

inline void wire_writer::put_array_header(std::uint32_t n) noexcept { put_container_header(n, 0x90, 0xdc); }
inline void wire_writer::put_map_header(std::uint32_t n) noexcept { put_container_header(n, 0x80, 0xde); }

inline void wire_writer::put_uint(std::uint64_t v) noexcept {
  if (v <= 0x7f)
    put_byte(static_cast<std::uint8_t>(v));
  else if (v <= 0xff) {
    put_byte(0xcc);
    put_byte(static_cast<std::uint8_t>(v));
  } else if (v <= 0xffff) {
    put_byte(0xcd);
    put_be<std::uint16_t>(static_cast<std::uint16_t>(v));
  } else if (v <= 0xffffffffULL) {
    put_byte(0xce);
    put_be<std::uint32_t>(static_cast<std::uint32_t>(v));
  } else {
    put_byte(0xcf);
    put_be<std::uint64_t>(v);
  }
}

// str and bin share one layout: codes for 8-, 16- and 32-bit lengths in a row.
inline void wire_writer::put_length(std::size_t n, std::uint8_t code8) noexcept {
  if (n <= 0xff) {
    put_byte(code8);
    put_byte(static_cast<std::uint8_t>(n));
  } else if (n <= 0xffff) {
    put_byte(static_cast<std::uint8_t>(code8 + 1));
    put_be<std::uint16_t>(static_cast<std::uint16_t>(n));
  } else {
    put_byte(static_cast<std::uint8_t>(code8 + 2));
    put_be<std::uint32_t>(static_cast<std::uint32_t>(n));
  }
}

inline void wire_writer::put_str(std::string_view s) noexcept {
  if (s.size() < 32)
    put_byte(static_cast<std::uint8_t>(0xa0 | s.size()));
  else
    put_length(s.size(), 0xd9);
  put_raw(s);
}

inline void wire_writer::put_bin(std::string_view s) noexcept {
  put_length(s.size(), 0xc4);
  put_raw(s);
}

inline void wire_writer::put_timestamp(std::int64_t seconds, std::uint32_t nanoseconds) noexcept {
  switch (size_timestamp(seconds, nanoseconds)) {
    case 6:
      put_byte(0xd6);
      put_byte(0xff);
      put_be<std::uint32_t>(static_cast<std::uint32_t>(seconds));
      break;
    case 10:
      put_byte(0xd7);
      put_byte(0xff);
      put_be<std::uint64_t>((std::uint64_t{nanoseconds} << 34) | static_cast<std::uint64_t>(seconds));
      break;
    default:
      put_byte(0xc7);
      put_byte(12);
      put_byte(0xff);
      put_be<std::uint32_t>(nanoseconds);
      put_be<std::int64_t>(seconds);
  }
}

}  // namespace zmqkit::detail
