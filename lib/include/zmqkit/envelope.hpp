// zmqkit/envelope.hpp — the ZMK/1 envelope: one msgpack array per ZeroMQ frame.
//
//   ```cpp
//   struct order { std::string sku; int qty; MSGPACK_DEFINE_MAP(sku, qty); };
//
//   auto env = zmqkit::make_envelope("order.created", order{"book", 2});
//   env.priority = 9;
//   env.ttl = 5s;
//   zmq::message_t frame = zmqkit::encode(env);
//   // ... the frame travels ...
//   auto got = zmqkit::decode(frame);        // throws zmqkit::error naming the field
//   order o = got.body_as<order>();          // throws errc::bad_body naming a missing or mistyped field
//   ```
//
// Hot paths that only route (the queue device) use decode_view(), which
// validates the whole frame but materialises nothing: strings and the body are
// views into the frame, which must outlive the view.
//
// The wire format is specified in docs/protocol.md (ZMK/1).
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <map>
#include <msgpack.hpp>
#include <optional>
#include <span>
#include <type_traits>
#include <string>
#include <string_view>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/message_id.hpp>

namespace zmqkit {

inline constexpr std::uint8_t protocol_version = 1;
inline constexpr std::uint8_t default_priority = 4;
inline constexpr std::uint8_t max_priority = 9;
inline constexpr std::size_t max_type_bytes = 255;
inline constexpr std::string_view error_type = "zmk.error";

// Reserved header keys.
namespace header {
inline constexpr std::string_view error = "zmk.error";
inline constexpr std::string_view reason = "zmk.reason";
inline constexpr std::string_view publisher = "zmk.pub";
inline constexpr std::string_view sequence = "zmk.seq";
inline constexpr std::string_view attempt = "zmk.attempt";
inline constexpr std::string_view ack = "zmk.ack";                  // "stored": acknowledge once durable
inline constexpr std::string_view redelivered = "zmk.redelivered";  // deliveries before a device restart
}
// The type of a queue device's stored-acknowledgement (docs/protocol.md 7.9).
inline constexpr std::string_view stored_type = "zmk.stored";  // namespace header

// The toolkit's error reply codes (the value of the zmk.error header).
// Handlers may reply with codes of their own; these are the ones zmqkit sends.
// bad_request is the requester's mistake; internal a server fault (the handler
// threw): neither is retried. unavailable (a device draining) and overloaded
// are retryable: the client retries them (overloaded with backoff) or fails over.
enum class reply_error { expired, dead_letter, no_service, overloaded, bad_request, unavailable, internal };
std::string_view to_string(reply_error code) noexcept;
std::optional<reply_error> parse_reply_error(std::string_view code) noexcept;

using header_map = std::map<std::string, std::string, std::less<>>;

// Limits applied to every decode. The defaults suit untrusted network input.
struct decode_limits {
  std::size_t max_frame_bytes = 1 << 20;  // 1 MiB, as the queue device's default
  std::size_t max_headers = 64;
  std::size_t max_body_unpack_depth = 32;  // for body_as<T>()
};

struct envelope {
  std::string type;
  std::uint8_t priority = default_priority;
  wall_time timestamp{};
  std::chrono::milliseconds ttl{0};  // 0 = never expires
  message_id id{};
  std::optional<message_id> correlation_id;
  header_map headers;
  std::string body;  // opaque bytes (msgpack by convention)

  // Returns: the body unpacked and converted to T, strictly: when T is a record
  // (MSGPACK_DEFINE_MAP / MSGPACK_DEFINE), every field must be present (a field
  // that packs as nil by default, such as std::optional, may be absent) and of
  // its type, nested records included; fields T does not know are ignored.
  // Throws: zmqkit::error{errc::bad_body} when it is not msgpack or not a T;
  // field() names the culprit as "body", "body.email", "body.home.city", "body[2]".
  template <class T>
  T body_as(const decode_limits& limits = {}) const;

  // As body_as, but msgpack-c's own rules: a missing field keeps T's default
  // (a mistyped one still throws). For bodies from peers that omit fields on purpose.
  template <class T>
  T body_as_lenient(const decode_limits& limits = {}) const;

  // Replaces the body with `value` packed as msgpack.
  template <class T>
  void set_body(const T& value);

  std::optional<std::string_view> header(std::string_view key) const;
  bool is_error() const noexcept { return type == error_type; }
  // Returns: the zmk.error code of an error reply, else nullopt.
  std::optional<std::string_view> error_code() const;

  // Returns: timestamp + ttl, or nullopt when the envelope never expires.
  std::optional<wall_time> expires_at() const;
  bool expired(wall_time now) const;

  friend bool operator==(const envelope&, const envelope&) = default;
};

// A validated envelope whose strings and body point into the frame it was
// decoded from. Cheap to copy; valid only while that frame lives.
struct envelope_view {
  std::string_view type;
  std::uint8_t priority = default_priority;
  wall_time timestamp{};
  std::chrono::milliseconds ttl{0};
  message_id id{};
  std::optional<message_id> correlation_id;
  std::string_view headers_raw;  // the encoded header map, validated
  std::size_t header_count = 0;
  std::string_view body;

  // Looks a header up in the raw map (linear scan; maps are small).
  std::optional<std::string_view> header(std::string_view key) const;
  std::optional<wall_time> expires_at() const;
  bool expired(wall_time now) const;
  envelope to_envelope() const;
};

// --- building ---------------------------------------------------------------

// A value that can be a body: anything msgpack can pack, except a clock (so that
// make_envelope(type, clock) is never read as a body).
template <class T>
concept body_value = !std::derived_from<std::remove_cvref_t<T>, clock>;

// Returns: an envelope of `type` with a fresh id and the current timestamp
// (from `clk`), default priority, no TTL and an empty body.
envelope make_envelope(std::string type, const clock& clk = clock::real());

// As above, with `body` packed as msgpack (any msgpack-adaptable type).
template <body_value T>
envelope make_envelope(std::string type, const T& body, const clock& clk = clock::real()) {
  envelope env = make_envelope(std::move(type), clk);
  env.set_body(body);
  return env;
}

// Returns: a reply to `request`: correlation_id = request.id, same priority,
// fresh id and timestamp, no TTL, empty body.
envelope make_reply(const envelope& request, std::string type, const clock& clk = clock::real());
envelope make_reply(const envelope_view& request, std::string type, const clock& clk = clock::real());

template <body_value T>
envelope make_reply(const envelope& request, std::string type, const T& body,
                    const clock& clk = clock::real()) {
  envelope env = make_reply(request, std::move(type), clk);
  env.set_body(body);
  return env;
}

// Returns: an error reply (type zmk.error, zmk.error = code, zmk.reason = reason,
// empty body) answering the request with id `correlation` (nullopt when the
// request's id could not be read).
envelope make_error_reply(std::optional<message_id> correlation, std::string_view code,
                          std::string_view reason, const clock& clk = clock::real());
inline envelope make_error_reply(std::optional<message_id> correlation, reply_error code,
                                 std::string_view reason, const clock& clk = clock::real()) {
  return make_error_reply(correlation, to_string(code), reason, clk);
}

// --- encoding and decoding --------------------------------------------------

// Returns: the exact number of bytes encode() will produce.
std::size_t encoded_size(const envelope& env);

// Encodes straight into the frame's buffer: one allocation, one copy of the body.
// Throws: zmqkit::error{bad_envelope} when env itself breaks a rule (empty type, priority > 9).
zmq::message_t encode(const envelope& env);

// A header given at encode time: key and value, borrowed.
struct header_ref {
  std::string_view key;
  std::string_view value;
};

// Encodes env as if each of `extra` had been insert_or_assign'ed into env.headers
// (same bytes), without allocating map nodes: hot paths stamp their headers this way.
// Precondition: `extra` is sorted by key with no key twice.
zmq::message_t encode(const envelope& env, std::span<const header_ref> extra);

// Validates every ZMK/1 rule; extra trailing array elements are ignored.
// Throws: zmqkit::error{bad_envelope or frame_too_large}, field() naming the field.
envelope decode(std::string_view frame, const decode_limits& limits = {});
envelope_view decode_view(std::string_view frame, const decode_limits& limits = {});

inline std::string_view as_string_view(const zmq::message_t& frame) noexcept {
  return {static_cast<const char*>(frame.data()), frame.size()};
}
inline envelope decode(const zmq::message_t& frame, const decode_limits& limits = {}) {
  return decode(as_string_view(frame), limits);
}
inline envelope_view decode_view(const zmq::message_t& frame, const decode_limits& limits = {}) {
  return decode_view(as_string_view(frame), limits);
}
// Returns: the view, or nullopt when `frame` breaks a ZMK/1 rule: for receivers
// that count a bad frame and go on (decode_view says which rule).
inline std::optional<envelope_view> try_decode_view(const zmq::message_t& frame,
                                                    const decode_limits& limits = {}) {
  try {
    return decode_view(as_string_view(frame), limits);
  } catch (const error&) {
    return std::nullopt;
  }
}

// Returns: whether `text` is well-formed UTF-8 (no overlong forms, surrogates or
// code points past U+10FFFF), the rule for an envelope's type.
bool is_valid_utf8(std::string_view text) noexcept;

// Returns: the id (element 5) of a frame that failed to decode, when the frame
// is a msgpack array whose element 5 is a 16-byte bin, whatever is wrong with
// the other fields; else nullopt. An error reply carries it as correlation_id,
// so a client can match the answer to its request.
std::optional<message_id> request_id_of(std::string_view frame) noexcept;

// Returns: the correlation_id (element 6) of a frame that starts like a ZMK/1
// envelope (an array of at least 9 elements, version 1) and has a 16-byte bin
// there, reading nothing after it: what a router needs to match a reply to its
// request, at a fraction of decode_view's cost. nullopt otherwise.
std::optional<message_id> correlation_id_of(std::string_view frame) noexcept;

// Returns: true when `frame` is exactly one complete msgpack array (every
// element present, nested at most 32 deep, nothing after it): an envelope, or
// a malformed one to answer bad-request. Anything else is a "plain" body (a
// ZeroMQ guide client) that the request/reply patterns route untouched, even
// when its first byte looks like an array header.
bool looks_like_envelope(std::string_view frame) noexcept;

// Reads a request or reply body as the request/reply patterns do, in one pass
// when it is a valid envelope. Returns: its view, or nullopt for a plain body
// (see looks_like_envelope).
// Throws: zmqkit::error (as decode_view) for a malformed envelope: bad-request.
std::optional<envelope_view> decode_if_envelope(std::string_view frame, const decode_limits& limits = {});

// --- template definitions ---------------------------------------------------

namespace detail {
msgpack::unpack_limit body_unpack_limit(const decode_limits& limits, std::size_t size) noexcept;
[[noreturn]] void throw_bad_body(const std::string& what, const std::string& field = "body");
msgpack::object_handle unpack_body(std::string_view body, const decode_limits& limits);

// A struct with fixed fields: MSGPACK_DEFINE_MAP or MSGPACK_DEFINE.
template <class T>
concept msgpack_record = std::is_default_constructible_v<T> &&
                         requires(const T& t, msgpack::packer<msgpack::sbuffer>& pk) { t.msgpack_pack(pk); };

template <class T>
msgpack::object_handle shape_of() {
  msgpack::sbuffer buf;
  msgpack::pack(buf, T{});
  return msgpack::unpack(buf.data(), buf.size());
}

// Throws bad_body naming the first field of `shape` (a default T, packed) that `input` lacks.
void require_fields(const msgpack::object& shape, const msgpack::object& input, const std::string& path);
// Returns: the path of the first field of `input` whose value, put alone into
// `shape`, does not convert (`converts` says whether an object converts to T); "body" if none.
std::string find_mistyped_field(const msgpack::object& shape, const msgpack::object& input,
                                bool (*converts)(const msgpack::object&));

template <class T>
bool converts_to(const msgpack::object& o) {
  try {
    (void)o.as<T>();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}
}  // namespace detail

template <class T>
T envelope::body_as_lenient(const decode_limits& limits) const {
  msgpack::object_handle handle = detail::unpack_body(body, limits);
  try {
    return handle.get().as<T>();
  } catch (const std::exception& e) {
    detail::throw_bad_body(e.what());
  }
}

template <class T>
T envelope::body_as(const decode_limits& limits) const {
  if constexpr (!detail::msgpack_record<T>) {
    return body_as_lenient<T>(limits);
  } else {
    static const msgpack::object_handle shape = detail::shape_of<T>();
    msgpack::object_handle handle = detail::unpack_body(body, limits);
    detail::require_fields(shape.get(), handle.get(), "body");
    try {
      return handle.get().as<T>();
    } catch (const std::exception& e) {
      detail::throw_bad_body(e.what(), detail::find_mistyped_field(shape.get(), handle.get(), &detail::converts_to<T>));
    }
  }
}

template <class T>
void envelope::set_body(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  body.assign(buffer.data(), buffer.size());
}

}  // namespace zmqkit
