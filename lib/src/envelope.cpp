#include <algorithm>
#include <array>
#include <span>
#include <vector>
#include <zmqkit/envelope.hpp>

#include "wire.hpp"

namespace zmqkit {

using detail::throw_bad_envelope;

namespace {

constexpr std::array<std::string_view, 7> reply_error_names = {
    "expired", "dead-letter", "no-service", "overloaded", "bad-request", "unavailable", "internal"};

constexpr std::uint32_t envelope_fields = 9;
constexpr int max_skip_depth = 32;

void split_timestamp(wall_time t, std::int64_t& seconds, std::uint32_t& nanoseconds) {
  const std::int64_t ns = t.time_since_epoch().count();
  seconds = ns / 1'000'000'000;
  std::int64_t rem = ns % 1'000'000'000;
  if (rem < 0) {  // floor division, so nanoseconds stays in [0, 1e9)
    rem += 1'000'000'000;
    --seconds;
  }
  nanoseconds = static_cast<std::uint32_t>(rem);
}

std::optional<wall_time> expiry(wall_time timestamp, std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) return std::nullopt;
  // timestamp + ttl, saturating at wall_time::max() for absurd TTLs. Checked
  // arithmetic: `max() - timestamp` itself overflows for timestamps before 1970.
  std::int64_t ttl_ns, at_ns;
  if (__builtin_mul_overflow(ttl.count(), std::int64_t{1'000'000}, &ttl_ns) ||
      __builtin_add_overflow(timestamp.time_since_epoch().count(), ttl_ns, &at_ns))
    return wall_time::max();
  return wall_time(wall_time::duration(at_ns));
}

std::optional<std::string_view> find_header(std::string_view raw, std::size_t count, std::string_view key) {
  detail::wire_reader r(raw);
  r.read_map_header("headers");
  for (std::size_t i = 0; i < count; ++i) {
    const std::string_view k = r.read_str("headers");
    const std::string_view v = r.read_str("headers");
    if (k == key) return v;
  }
  return std::nullopt;
}

void check_type(std::string_view type) {
  if (type.empty()) throw_bad_envelope("type", "empty");
  if (type.size() > max_type_bytes) throw_bad_envelope("type", "longer than 255 bytes");
  if (!is_valid_utf8(type)) throw_bad_envelope("type", "not valid UTF-8");
}

}  // namespace

std::string_view to_string(reply_error code) noexcept {
  return reply_error_names[static_cast<std::size_t>(code)];
}

std::optional<reply_error> parse_reply_error(std::string_view code) noexcept {
  for (std::size_t i = 0; i < reply_error_names.size(); ++i)
    if (reply_error_names[i] == code) return static_cast<reply_error>(i);
  return std::nullopt;
}

// --- envelope ---------------------------------------------------------------

std::optional<std::string_view> envelope::header(std::string_view key) const {
  const auto it = headers.find(key);
  if (it == headers.end()) return std::nullopt;
  return std::string_view(it->second);
}

std::optional<std::string_view> envelope::error_code() const {
  if (!is_error()) return std::nullopt;
  return header(header::error);
}

std::optional<wall_time> envelope::expires_at() const { return expiry(timestamp, ttl); }
bool envelope::expired(wall_time now) const {
  const auto at = expires_at();
  return at && now >= *at;
}

std::optional<std::string_view> envelope_view::header(std::string_view key) const {
  return find_header(headers_raw, header_count, key);
}
std::optional<wall_time> envelope_view::expires_at() const { return expiry(timestamp, ttl); }
bool envelope_view::expired(wall_time now) const {
  const auto at = expires_at();
  return at && now >= *at;
}

envelope envelope_view::to_envelope() const {
  envelope env;
  env.type = type;
  env.priority = priority;
  env.timestamp = timestamp;
  env.ttl = ttl;
  env.id = id;
  env.correlation_id = correlation_id;
  detail::wire_reader r(headers_raw);
  r.read_map_header("headers");
  for (std::size_t i = 0; i < header_count; ++i) {
    std::string_view k = r.read_str("headers");
    std::string_view v = r.read_str("headers");
    // Encoders (ours included) write keys in order: appending at the end is
    // then O(1); anything else, duplicates too, takes the general path.
    if (env.headers.empty() || std::string_view(env.headers.rbegin()->first) < k)
      env.headers.emplace_hint(env.headers.end(), k, v);
    else
      env.headers.insert_or_assign(std::string(k), std::string(v));
  }
  env.body = body;
  return env;
}

// --- building ---------------------------------------------------------------

envelope make_envelope(std::string type, const clock& clk) {
  envelope env;
  env.type = std::move(type);
  env.timestamp = clk.wall_now();
  env.id =
      message_id::generate(std::chrono::time_point_cast<std::chrono::system_clock::duration>(env.timestamp));
  return env;
}

namespace {
envelope reply_to(const message_id& request_id, std::uint8_t priority, std::string type, const clock& clk) {
  envelope env = make_envelope(std::move(type), clk);
  env.priority = priority;
  env.correlation_id = request_id;
  return env;
}
}  // namespace

envelope make_reply(const envelope& request, std::string type, const clock& clk) {
  return reply_to(request.id, request.priority, std::move(type), clk);
}
envelope make_reply(const envelope_view& request, std::string type, const clock& clk) {
  return reply_to(request.id, request.priority, std::move(type), clk);
}

envelope make_error_reply(std::optional<message_id> correlation, std::string_view code,
                          std::string_view reason, const clock& clk) {
  envelope env = make_envelope(std::string(error_type), clk);
  env.correlation_id = correlation;
  env.headers.emplace(header::error, code);
  env.headers.emplace(header::reason, reason);
  return env;
}

// --- encoding ---------------------------------------------------------------

namespace {

// Visits env.headers merged with `extra` in key order, `extra` winning on equal
// keys: exactly what std::map would hold after insert_or_assign of each extra.
template <class F>
void for_each_header(const envelope& env, std::span<const header_ref> extra, F&& f) {
  auto it = env.headers.begin();
  const auto end = env.headers.end();
  for (const header_ref& h : extra) {
    for (; it != end && std::string_view(it->first) < h.key; ++it) f(it->first, it->second);
    if (it != end && std::string_view(it->first) == h.key) ++it;
    f(h.key, h.value);
  }
  for (; it != end; ++it) f(it->first, it->second);
}

// Returns: the encoded size; `header_count` receives the number of headers written.
std::size_t encoded_size(const envelope& env, std::span<const header_ref> extra, std::int64_t seconds,
                         std::uint32_t nanoseconds, std::size_t& header_count) {
  std::size_t n = 1                                    // fixarray of 9
                  + 1                                  // version
                  + detail::size_str(env.type.size())  //
                  + 1                                  // priority 0-9
                  + detail::size_timestamp(seconds, nanoseconds) +
                  detail::size_uint(static_cast<std::uint64_t>(env.ttl.count())) + detail::size_bin(16) +
                  detail::size_bin(env.correlation_id ? 16 : 0) + detail::size_bin(env.body.size());
  header_count = 0;
  for_each_header(env, extra, [&](std::string_view k, std::string_view v) {
    n += detail::size_str(k.size()) + detail::size_str(v.size());
    ++header_count;
  });
  return n + detail::size_map_header(header_count);
}

}  // namespace

std::size_t encoded_size(const envelope& env) {
  std::int64_t seconds;
  std::uint32_t nanoseconds;
  split_timestamp(env.timestamp, seconds, nanoseconds);
  std::size_t header_count;
  return encoded_size(env, {}, seconds, nanoseconds, header_count);
}

zmq::message_t encode(const envelope& env) { return encode(env, {}); }

zmq::message_t encode(const envelope& env, std::span<const header_ref> extra) {
  check_type(env.type);
  if (env.priority > max_priority) throw_bad_envelope("priority", "greater than 9");
  if (env.ttl.count() < 0) throw_bad_envelope("ttl_ms", "negative");

  std::int64_t seconds;
  std::uint32_t nanoseconds;
  split_timestamp(env.timestamp, seconds, nanoseconds);

  std::size_t header_count;
  zmq::message_t frame(encoded_size(env, extra, seconds, nanoseconds, header_count));
  detail::wire_writer w(frame.data());
  w.put_array_header(envelope_fields);
  w.put_uint(protocol_version);
  w.put_str(env.type);
  w.put_uint(env.priority);
  w.put_timestamp(seconds, nanoseconds);
  w.put_uint(static_cast<std::uint64_t>(env.ttl.count()));
  w.put_bin(env.id.as_bytes());
  w.put_bin(env.correlation_id ? env.correlation_id->as_bytes() : std::string_view{});
  w.put_map_header(static_cast<std::uint32_t>(header_count));
  for_each_header(env, extra, [&](std::string_view k, std::string_view v) {
    w.put_str(k);
    w.put_str(v);
  });
  w.put_bin(env.body);
  return frame;
}

// --- decoding ---------------------------------------------------------------

envelope_view decode_view(std::string_view frame, const decode_limits& limits) {
  if (frame.size() > limits.max_frame_bytes)
    throw error(errc::frame_too_large, "frame",
                "ZMK/1 envelope: frame: " + std::to_string(frame.size()) + " bytes exceeds the maximum of " +
                    std::to_string(limits.max_frame_bytes));

  detail::wire_reader r(frame);
  envelope_view v;

  const std::uint32_t count = r.read_array_header("envelope");
  if (count < envelope_fields)
    throw_bad_envelope("envelope", "array has " + std::to_string(count) + " elements, expected at least 9");

  if (r.read_uint("version") != protocol_version) throw_bad_envelope("version", "not 1");

  v.type = r.read_str("type");
  check_type(v.type);

  const std::uint64_t priority = r.read_uint("priority");
  if (priority > max_priority) throw_bad_envelope("priority", "greater than 9");
  v.priority = static_cast<std::uint8_t>(priority);

  std::int64_t seconds;
  std::uint32_t nanoseconds;
  r.read_timestamp("timestamp", seconds, nanoseconds);
  v.timestamp = wall_time(std::chrono::seconds(seconds) + std::chrono::nanoseconds(nanoseconds));

  const std::uint64_t ttl = r.read_uint("ttl_ms");
  // Cap at ~292 years (nanosecond time_point range) rather than overflow.
  constexpr std::uint64_t max_ttl_ms = 9'223'372'036'854ULL;
  v.ttl = std::chrono::milliseconds(static_cast<std::int64_t>(std::min(ttl, max_ttl_ms)));

  const std::string_view id = r.read_bin("id");
  if (id.size() != 16) throw_bad_envelope("id", "not 16 bytes");
  v.id = *message_id::from_bytes(id);

  const std::string_view correlation = r.read_bin("correlation_id");
  if (!correlation.empty()) {
    if (correlation.size() != 16) throw_bad_envelope("correlation_id", "neither empty nor 16 bytes");
    v.correlation_id = message_id::from_bytes(correlation);
  }

  const char* headers_start = r.position();
  const std::uint32_t header_count = r.read_map_header("headers");
  if (header_count > limits.max_headers)
    throw_bad_envelope("headers", "more than " + std::to_string(limits.max_headers) + " entries");
  // A repeated key is ambiguous (first wins in one reader, last in another): reject it.
  // Maps are small, so a quadratic check over an inline array beats hashing.
  // The keys seen so far, as plain (pointer, size) pairs: trivially constructible,
  // so the inline array costs nothing until used (an array of string_views would
  // be zeroed, a kilobyte, on every decode).
  struct key_ref {
    const char* data;
    std::size_t size;
  };
  constexpr std::size_t inline_keys = 64;
  key_ref seen_inline[inline_keys];
  std::vector<key_ref> seen_overflow(header_count > inline_keys ? header_count : 0);  // max_headers > 64 only
  key_ref* const seen = header_count <= inline_keys ? seen_inline : seen_overflow.data();
  for (std::uint32_t i = 0; i < header_count; ++i) {
    const std::string_view key = r.read_str("headers");
    const std::string_view value = r.read_str("headers");
    // str means UTF-8: other readers (Python's msgpack) refuse the envelope otherwise.
    if (!is_valid_utf8(key) || !is_valid_utf8(value)) throw_bad_envelope("headers", "not valid UTF-8");
    for (std::uint32_t j = 0; j < i; ++j)
      if (std::string_view(seen[j].data, seen[j].size) == key) throw_bad_envelope("headers", "duplicate key");
    seen[i] = {key.data(), key.size()};
  }
  v.headers_raw = std::string_view(headers_start, static_cast<std::size_t>(r.position() - headers_start));
  v.header_count = header_count;

  v.body = r.read_bin("body");

  for (std::uint32_t i = envelope_fields; i < count; ++i) r.skip("envelope", max_skip_depth);
  if (r.remaining() != 0) throw_bad_envelope("envelope", "trailing bytes after the array");
  return v;
}

envelope decode(std::string_view frame, const decode_limits& limits) {
  return decode_view(frame, limits).to_envelope();
}

std::optional<message_id> request_id_of(std::string_view frame) noexcept {
  try {
    detail::wire_reader r(frame);
    if (r.read_array_header("envelope") < 6) return std::nullopt;
    for (int i = 0; i < 5; ++i) r.skip("envelope", max_skip_depth);
    const std::string_view id = r.read_bin("id");
    return id.size() == 16 ? message_id::from_bytes(id) : std::nullopt;
  } catch (const error&) {
    return std::nullopt;
  }
}

std::optional<message_id> correlation_id_of(std::string_view frame) noexcept {
  try {
    detail::wire_reader r(frame);
    if (r.read_array_header("envelope") < envelope_fields || r.read_uint("version") != protocol_version)
      return std::nullopt;
    for (int i = 0; i < 5; ++i) r.skip("envelope", max_skip_depth);  // type .. id
    const std::string_view correlation = r.read_bin("correlation_id");
    return correlation.size() == 16 ? message_id::from_bytes(correlation) : std::nullopt;
  } catch (const error&) {
    return std::nullopt;
  }
}

bool looks_like_envelope(std::string_view frame) noexcept {
  if (frame.empty()) return false;
  const auto b = static_cast<std::uint8_t>(frame.front());
  if ((b & 0xf0) != 0x90 && b != 0xdc && b != 0xdd) return false;
  // Only a frame that is exactly one complete msgpack array is a candidate: a
  // plain body that merely starts with an array header (b"\x95hi", or an
  // array followed by more bytes) is plain.
  try {
    detail::wire_reader r(frame);
    r.skip("envelope", max_skip_depth);
    return r.remaining() == 0;
  } catch (const error&) {
    return false;
  }
}

std::optional<envelope_view> decode_if_envelope(std::string_view frame, const decode_limits& limits) {
  if (frame.empty()) return std::nullopt;
  const auto b = static_cast<std::uint8_t>(frame.front());
  if ((b & 0xf0) != 0x90 && b != 0xdc && b != 0xdd) return std::nullopt;
  try {
    return decode_view(frame, limits);  // the common case: one pass
  } catch (const error&) {
    if (looks_like_envelope(frame)) throw;  // a complete array: a malformed envelope
    return std::nullopt;                    // merely starts like one: plain
  }
}

namespace detail {
msgpack::unpack_limit body_unpack_limit(const decode_limits& limits, std::size_t size) noexcept {
  // No container can hold more elements than the body has bytes; strings and
  // binaries no more bytes than the body. Depth is bounded explicitly.
  return msgpack::unpack_limit(size, size, size, size, size, limits.max_body_unpack_depth);
}

void throw_bad_body(const std::string& what, const std::string& field) {
  throw error(errc::bad_body, field, "ZMK/1 envelope: " + field + ": does not convert: " + what);
}

msgpack::object_handle unpack_body(std::string_view body, const decode_limits& limits) {
  try {
    std::size_t offset = 0;
    msgpack::object_handle handle =
        msgpack::unpack(body.data(), body.size(), offset, nullptr, nullptr, body_unpack_limit(limits, body.size()));
    if (offset != body.size()) throw_bad_body("trailing bytes after the msgpack value");
    return handle;
  } catch (const zmqkit::error&) {
    throw;
  } catch (const std::exception& e) {
    throw_bad_body(e.what());
  }
}

namespace {
std::string_view key_of(const msgpack::object& key) {
  return key.type == msgpack::type::STR ? std::string_view(key.via.str.ptr, key.via.str.size) : std::string_view();
}

// The value under `key` in `map`, first occurrence (as msgpack-c's record conversion reads it).
const msgpack::object* find_key(const msgpack::object& map, std::string_view key) {
  for (std::uint32_t i = 0; i < map.via.map.size; ++i)
    if (map.via.map.ptr[i].key.type == msgpack::type::STR && key_of(map.via.map.ptr[i].key) == key)
      return &map.via.map.ptr[i].val;
  return nullptr;
}
}  // namespace

void require_fields(const msgpack::object& shape, const msgpack::object& input, const std::string& path) {
  if (shape.type == msgpack::type::MAP && input.type == msgpack::type::MAP) {
    for (std::uint32_t i = 0; i < shape.via.map.size; ++i) {
      const auto& field = shape.via.map.ptr[i];
      const std::string name = path + "." + std::string(key_of(field.key));
      const msgpack::object* value = find_key(input, key_of(field.key));
      if (!value) {
        if (field.val.type == msgpack::type::NIL) continue;  // optional: may be absent
        throw error(errc::bad_body, name, "ZMK/1 envelope: " + name + ": missing");
      }
      require_fields(field.val, *value, name);  // nested records
    }
  } else if (shape.type == msgpack::type::ARRAY && input.type == msgpack::type::ARRAY) {
    // Only records (MSGPACK_DEFINE) have a non-empty default array: every element is a field.
    if (input.via.array.size < shape.via.array.size) {
      const std::string name = path + "[" + std::to_string(input.via.array.size) + "]";
      throw error(errc::bad_body, name, "ZMK/1 envelope: " + name + ": missing");
    }
    for (std::uint32_t i = 0; i < shape.via.array.size; ++i)
      require_fields(shape.via.array.ptr[i], input.via.array.ptr[i], path + "[" + std::to_string(i) + "]");
  }
}

namespace {
// Returns: a copy of `n` elements in `zone`, for a candidate record to edit.
template <class Element>
Element* copy_into(msgpack::zone& zone, const Element* from, std::uint32_t n) {
  auto* to = static_cast<Element*>(zone.allocate_align(sizeof(Element) * n, MSGPACK_ZONE_ALIGNOF(Element)));
  std::copy_n(from, n, to);
  return to;
}
}  // namespace

std::string find_mistyped_field(const msgpack::object& shape, const msgpack::object& input,
                                bool (*converts)(const msgpack::object&)) {
  // Try the default record with one field at a time taken from the input: the
  // first that no longer converts is the culprit.
  msgpack::zone zone;
  msgpack::object candidate = shape;
  if (shape.type == msgpack::type::MAP && input.type == msgpack::type::MAP) {
    const std::uint32_t n = shape.via.map.size;
    msgpack::object_kv* kv = candidate.via.map.ptr = copy_into(zone, shape.via.map.ptr, n);
    for (std::uint32_t i = 0; i < n; ++i) {
      const msgpack::object* value = find_key(input, key_of(shape.via.map.ptr[i].key));
      if (!value) continue;
      kv[i].val = *value;
      if (!converts(candidate)) return "body." + std::string(key_of(shape.via.map.ptr[i].key));
      kv[i].val = shape.via.map.ptr[i].val;
    }
  } else if (shape.type == msgpack::type::ARRAY && input.type == msgpack::type::ARRAY) {
    const std::uint32_t n = shape.via.array.size;
    msgpack::object* items = candidate.via.array.ptr = copy_into(zone, shape.via.array.ptr, n);
    for (std::uint32_t i = 0; i < n && i < input.via.array.size; ++i) {
      items[i] = input.via.array.ptr[i];
      if (!converts(candidate)) return "body[" + std::to_string(i) + "]";
      items[i] = shape.via.array.ptr[i];
    }
  }
  return "body";
}
}  // namespace detail

}  // namespace zmqkit
