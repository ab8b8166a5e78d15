// JSON views of ZMK/1 envelopes for the zmqkit tool: one JSON object per
// envelope, bodies decoded from msgpack, and the reverse for input.
//
//   {"type":"order.created","priority":4,"timestamp":"2026-11-21T14:02:32.123456789Z",
//    "ttl_ms":0,"id":"0190f3a4-...","correlation_id":null,"headers":{},"body":{"sku":"book"}}
//
// A body that is not one msgpack value, or has no faithful JSON form (binary,
// extension types, non-string map keys, non-finite floats, invalid UTF-8),
// prints as {"base64": "..."}.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <zmqkit/envelope.hpp>

namespace zmqkit::tool {

using json = nlohmann::ordered_json;

std::string base64_encode(std::string_view bytes);
// Returns: the decoded bytes, or nullopt when `text` is not valid base64.
std::optional<std::string> base64_decode(std::string_view text);

// RFC 3339 UTC with nanoseconds: 2026-11-21T14:02:32.123456789Z.
std::string format_rfc3339(wall_time t);
// Accepts RFC 3339 with an optional fraction (up to 9 digits) and Z or +hh:mm.
std::optional<wall_time> parse_rfc3339(std::string_view text);

// Returns: the JSON form of a msgpack body, or nullopt when it is not exactly
// one msgpack value or has no faithful JSON form.
std::optional<json> msgpack_to_json(std::string_view bytes);
// Returns: `value` packed as msgpack (objects as maps, integers as the smallest int).
std::string json_to_msgpack(const json& value);

// The body as JSON: msgpack_to_json, else {"base64": ...}.
json body_to_json(std::string_view body);
// Reverse of body_to_json: an object that is exactly {"base64": "<text>"} is raw
// bytes, anything else is packed as msgpack.
// Throws: zmqkit::error{bad_config} on invalid base64.
std::string body_from_json(const json& body);

json envelope_to_json(const envelope& env);
// Builds an envelope from the JSON form; absent fields take defaults (fresh id,
// now, priority 4, no TTL, empty body); `type` is required.
// Throws: zmqkit::error{bad_config} naming the field that is wrong.
envelope envelope_from_json(const json& j);

// Parses JSON text. Throws: zmqkit::error{bad_config} with the parser's message
// and where (`what` names the input: "--json", "stdin line 3").
json parse_json(std::string_view text, std::string_view what);

// One line of output: compact, never throws on invalid UTF-8 (replaced).
std::string dump_line(const json& j);

}  // namespace zmqkit::tool
