// The msgpack subset ZMK/1 uses, read and written by hand: the envelope is a
// fixed shape, so a direct reader validates and locates every field without
// building a msgpack object tree, and a direct writer encodes into the frame's
// own buffer. Private to lib/.
#pragma once

#include <zmqkit/error.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

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
  // Skips one value of any type, nested at most `depth` levels.
  void skip(std::string_view field, int depth);

 private:
  std::uint8_t take_byte(std::string_view field);
  template <class T>
  T take_be(std::string_view field);
  const char* take(std::string_view field, std::size_t n);

  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

// Sizes and writes of the same subset; the writer trusts its caller to have
// sized the buffer with the matching size_* functions.
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
  template <class T>
  void put_be(T v) noexcept;
  void put_raw(std::string_view s) noexcept {
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }

  std::uint8_t* p_;
};

bool is_valid_utf8(std::string_view s) noexcept;

}  // namespace zmqkit::detail
