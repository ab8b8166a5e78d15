#include "json_codec.hpp"

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <msgpack.hpp>
#include <span>

namespace zmqkit::tool {

namespace {

constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

[[noreturn]] void bad_input(const std::string& field, const std::string& message) {
  throw error(errc::bad_config, field, message);
}

std::optional<json> to_json(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return json(nullptr);
    case msgpack::type::BOOLEAN: return json(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER: return json(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER: return json(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      if (!std::isfinite(o.via.f64)) return std::nullopt;
      return json(o.via.f64);
    case msgpack::type::STR: {
      std::string_view s(o.via.str.ptr, o.via.str.size);
      if (!is_valid_utf8(s)) return std::nullopt;
      return json(std::string(s));
    }
    case msgpack::type::ARRAY: {
      json arr = json::array();
      for (const auto& e : std::span(o.via.array.ptr, o.via.array.size)) {
        auto v = to_json(e);
        if (!v) return std::nullopt;
        arr.push_back(std::move(*v));
      }
      return arr;
    }
    case msgpack::type::MAP: {
      json obj = json::object();
      for (const auto& kv : std::span(o.via.map.ptr, o.via.map.size)) {
        if (kv.key.type != msgpack::type::STR) return std::nullopt;
        std::string key(kv.key.via.str.ptr, kv.key.via.str.size);
        if (!is_valid_utf8(key) || obj.contains(key)) return std::nullopt;  // duplicates would be lost
        auto v = to_json(kv.val);
        if (!v) return std::nullopt;
        obj[key] = std::move(*v);
      }
      return obj;
    }
    default: return std::nullopt;  // bin, ext (including timestamps)
  }
}

void pack(msgpack::packer<msgpack::sbuffer>& pk, const json& v) {
  switch (v.type()) {
    case json::value_t::null: pk.pack_nil(); break;
    case json::value_t::boolean: pk.pack(v.get<bool>()); break;
    case json::value_t::number_integer: pk.pack(v.get<std::int64_t>()); break;
    case json::value_t::number_unsigned: pk.pack(v.get<std::uint64_t>()); break;
    case json::value_t::number_float: pk.pack(v.get<double>()); break;
    case json::value_t::string: pk.pack(v.get_ref<const std::string&>()); break;
    case json::value_t::array:
      pk.pack_array(static_cast<std::uint32_t>(v.size()));
      for (const auto& e : v) pack(pk, e);
      break;
    case json::value_t::object:
      pk.pack_map(static_cast<std::uint32_t>(v.size()));
      for (const auto& [k, e] : v.items()) {
        pk.pack(k);
        pack(pk, e);
      }
      break;
    case json::value_t::binary: {
      const auto& b = v.get_binary();
      pk.pack_bin(static_cast<std::uint32_t>(b.size()));
      pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<std::uint32_t>(b.size()));
      break;
    }
    case json::value_t::discarded: pk.pack_nil(); break;
  }
}

std::optional<message_id> uuid_field(const json& j, const char* field) {
  if (!j.is_string()) bad_input(field, std::string(field) + ": expected a UUID string");
  const auto& text = j.get_ref<const std::string&>();
  if (text.empty()) return std::nullopt;
  auto id = message_id::parse(text);
  if (!id) bad_input(field, std::string(field) + ": not a UUID: '" + text + "'");
  return id;
}

bool parse_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t n =
        (std::uint8_t(bytes[i]) << 16) | (std::uint8_t(bytes[i + 1]) << 8) | std::uint8_t(bytes[i + 2]);
    for (int s : {18, 12, 6, 0}) out += b64_alphabet[(n >> s) & 63];
  }
  if (const std::size_t rest = bytes.size() - i; rest > 0) {
    std::uint32_t n = std::uint8_t(bytes[i]) << 16;
    if (rest == 2) n |= std::uint8_t(bytes[i + 1]) << 8;
    out += b64_alphabet[(n >> 18) & 63];
    out += b64_alphabet[(n >> 12) & 63];
    out += rest == 2 ? b64_alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::array<int, 256> value{};
  value.fill(-1);
  for (int i = 0; i < 64; ++i) value[static_cast<unsigned char>(b64_alphabet[i])] = i;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    std::uint32_t n = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && last && k >= 2 && (k == 3 || text[i + 3] == '=')) {
        ++pad;
        n <<= 6;
        continue;
      }
      const int v = value[static_cast<unsigned char>(c)];
      if (v < 0 || pad > 0) return std::nullopt;
      n = (n << 6) | static_cast<std::uint32_t>(v);
    }
    out += static_cast<char>((n >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
  }
  return out;
}

std::string format_rfc3339(wall_time t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const auto in_day = t - day;
  const auto secs = floor<seconds>(in_day);
  const long long ns = (in_day - secs).count();
  const hh_mm_ss<seconds> hms{secs};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02lldZ", int(ymd.year()), unsigned(ymd.month()),
                unsigned(ymd.day()), int(hms.hours().count()), int(hms.minutes().count()),
                static_cast<long long>(hms.seconds().count()));
  std::string out(buf);
  out.pop_back();  // the Z goes after the fraction
  std::snprintf(buf, sizeof buf, ".%09lldZ", ns);
  return out + buf;
}

std::optional<wall_time> parse_rfc3339(std::string_view s) {
  using namespace std::chrono;
  int y, mo, d, h, mi, se;
  if (s.size() < 20 || !parse_digits(s, 0, 4, y) || s[4] != '-' || !parse_digits(s, 5, 2, mo) ||
      s[7] != '-' || !parse_digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !parse_digits(s, 11, 2, h) || s[13] != ':' || !parse_digits(s, 14, 2, mi) || s[16] != ':' ||
      !parse_digits(s, 17, 2, se))
    return std::nullopt;
  std::size_t pos = 19;
  long long frac_ns = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (++digits > 9) return std::nullopt;
      frac_ns = frac_ns * 10 + (s[pos++] - '0');
    }
    if (digits == 0) return std::nullopt;
    for (int i = digits; i < 9; ++i) frac_ns *= 10;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!parse_digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !parse_digits(s, pos + 4, 2, om))
      return std::nullopt;
    offset_min = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size() || h > 23 || mi > 59 || se > 60) return std::nullopt;
  const year_month_day ymd{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!ymd.ok()) return std::nullopt;
  const auto t =
      sys_days(ymd) + hours(h) + minutes(mi) + seconds(se) - minutes(offset_min) + nanoseconds(frac_ns);
  return wall_time(duration_cast<nanoseconds>(t.time_since_epoch()));
}

std::optional<json> msgpack_to_json(std::string_view bytes) {
  if (bytes.empty()) return std::nullopt;
  try {
    std::size_t offset = 0;
    const std::size_t n = bytes.size();
    msgpack::object_handle handle =
        msgpack::unpack(bytes.data(), n, offset, nullptr, nullptr, msgpack::unpack_limit(n, n, n, n, n, 64));
    if (offset != n) return std::nullopt;
    return to_json(handle.get());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string json_to_msgpack(const json& value) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pk(buffer);
  pack(pk, value);
  return std::string(buffer.data(), buffer.size());
}

json body_to_json(std::string_view body) {
  if (auto j = msgpack_to_json(body)) return std::move(*j);
  return json{{"base64", base64_encode(body)}};
}

std::string body_from_json(const json& body) {
  if (body.is_object() && body.size() == 1 && body.contains("base64") && body["base64"].is_string()) {
    auto raw = base64_decode(body["base64"].get_ref<const std::string&>());
    if (!raw) bad_input("body", "body: invalid base64");
    return *raw;
  }
  return json_to_msgpack(body);
}

json envelope_to_json(const envelope& env) {
  json headers = json::object();
  for (const auto& [k, v] : env.headers) headers[k] = v;
  return json{{"type", env.type},
              {"priority", env.priority},
              {"timestamp", format_rfc3339(env.timestamp)},
              {"ttl_ms", env.ttl.count()},
              {"id", env.id.to_string()},
              {"correlation_id", env.correlation_id ? json(env.correlation_id->to_string()) : json(nullptr)},
              {"headers", std::move(headers)},
              {"body", body_to_json(env.body)}};
}

envelope envelope_from_json(const json& j) {
  if (!j.is_object()) bad_input("envelope", "envelope: expected a JSON object");
  if (!j.contains("type") || !j["type"].is_string() || j["type"].get_ref<const std::string&>().empty())
    bad_input("type", "envelope: 'type' must be a non-empty string");
  envelope env = make_envelope(j["type"].get<std::string>());
  for (const auto& [key, v] : j.items()) {
    if (key == "type") continue;
    if (key == "priority") {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > max_priority)
        bad_input(key, "envelope: 'priority' must be an integer 0-9");
      env.priority = static_cast<std::uint8_t>(v.get<int>());
    } else if (key == "ttl_ms") {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
        bad_input(key, "envelope: 'ttl_ms' must be a non-negative integer");
      env.ttl = std::chrono::milliseconds(v.get<std::int64_t>());
    } else if (key == "timestamp") {
      auto t = v.is_string() ? parse_rfc3339(v.get_ref<const std::string&>()) : std::nullopt;
      if (!t) bad_input(key, "envelope: 'timestamp' must be RFC 3339 text");
      env.timestamp = *t;
    } else if (key == "id") {
      auto id = uuid_field(v, "id");
      if (id) env.id = *id;
    } else if (key == "correlation_id") {
      env.correlation_id = v.is_null() ? std::nullopt : uuid_field(v, "correlation_id");
    } else if (key == "headers") {
      if (!v.is_object()) bad_input(key, "envelope: 'headers' must be an object of strings");
      for (const auto& [hk, hv] : v.items()) {
        if (!hv.is_string()) bad_input(key, "envelope: header '" + hk + "' must be a string");
        env.headers.insert_or_assign(hk, hv.get<std::string>());
      }
    } else if (key == "body") {
      env.body = body_from_json(v);
    } else {
      bad_input(key, "envelope: unknown field '" + key + "'");
    }
  }
  return env;
}

json parse_json(std::string_view text, std::string_view what) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 2: ..."
    std::string msg = e.what();
    if (auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
    bad_input(std::string(what), "invalid JSON in " + std::string(what) + ": " + msg);
  }
}

std::string dump_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace zmqkit::tool
