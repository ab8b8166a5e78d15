#include <charconv>
#include <cmath>
#include <cstdio>
#include <msgpack.hpp>
#include <span>
#include <zmqkit/error.hpp>
#include <zmqkit/metrics.hpp>

namespace zmqkit::metrics {

namespace {

[[noreturn]] void bad_snapshot(const std::string& what) {
  throw error(errc::protocol, "stats", "bad stats snapshot: " + what);
}

void collect(const msgpack::object& map, std::vector<std::string>& path, snapshot& out, int depth_left) {
  for (const auto& kv : std::span(map.via.map.ptr, map.via.map.size)) {
    if (kv.key.type != msgpack::type::STR) bad_snapshot("a key is not a string");
    path.emplace_back(kv.key.via.str.ptr, kv.key.via.str.size);
    const auto& v = kv.val;
    switch (v.type) {
      case msgpack::type::POSITIVE_INTEGER: out.push_back({path, static_cast<double>(v.via.u64)}); break;
      case msgpack::type::NEGATIVE_INTEGER: out.push_back({path, static_cast<double>(v.via.i64)}); break;
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64: out.push_back({path, v.via.f64}); break;
      case msgpack::type::MAP:
        if (depth_left <= 0) bad_snapshot("maps nested too deep at " + path.front());
        collect(v, path, out, depth_left - 1);
        break;
      default: bad_snapshot("the value of " + path.back() + " is not a number or a map");
    }
    path.pop_back();
  }
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e18) {
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
    return std::string(buf, end);
  }
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

struct metric {
  std::string name;  // full name, prefixed, sanitized, _total for counters
  std::string stem;  // name as in the snapshot
  bool gauge = false;
  std::vector<std::string> lines;
};

}  // namespace

snapshot parse_snapshot(std::string_view encoded, int max_depth) {
  msgpack::object_handle handle;
  try {
    std::size_t offset = 0;
    // Bounded, since the snapshot comes off the network.
    const msgpack::unpack_limit limit(0, 1 << 16, 1 << 16, 0, 0, max_depth + 1);
    handle = msgpack::unpack(encoded.data(), encoded.size(), offset, nullptr, nullptr, limit);
    if (offset != encoded.size()) bad_snapshot("trailing bytes after the map");
  } catch (const zmqkit::error&) {
    throw;
  } catch (const std::exception& e) {
    bad_snapshot(std::string("not msgpack: ") + e.what());
  }
  if (handle.get().type != msgpack::type::MAP) bad_snapshot("not a map");
  snapshot out;
  std::vector<std::string> path;
  collect(handle.get(), path, out, max_depth - 1);
  return out;
}

std::string sanitize_metric_name(std::string_view name) {
  std::string out(name);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) out[i] = '_';
  }
  if (out.empty()) out = "_";
  return out;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string render_prometheus(const snapshot& snap, const prometheus_options& options) {
  std::vector<metric> metrics;  // in first-seen order, so output follows the snapshot
  std::map<std::string, std::size_t> index;
  for (const auto& s : snap) {
    if (s.path.empty()) continue;
    const std::string& top = s.path.front();
    const auto unit = options.units.find(top);
    const std::string& stem = unit == options.units.end() ? top : unit->second.first;
    const double value = unit == options.units.end() ? s.value : s.value * unit->second.second;
    std::string first_label = "key";
    if (auto it = options.label_names.find(top); it != options.label_names.end()) {
      first_label = it->second;
    } else if (auto by = top.rfind("_by_"); by != std::string::npos && by > 0 && by + 4 < top.size()) {
      first_label = top.substr(by + 4);
    }
    const bool gauge = options.gauges.contains(top);
    std::string name = sanitize_metric_name(options.prefix + stem) + (gauge ? "" : "_total");
    auto [it, inserted] = index.try_emplace(name, metrics.size());
    if (inserted) metrics.push_back({name, stem, gauge, {}});

    std::string line = name;
    if (s.path.size() > 1) {
      line += '{';
      for (std::size_t i = 1; i < s.path.size(); ++i) {
        if (i > 1) line += ',';
        line += i == 1 ? sanitize_metric_name(first_label) : "key" + std::to_string(i);
        line += "=\"" + escape_label_value(s.path[i]) + '"';
      }
      line += '}';
    }
    line += ' ' + format_value(value) + '\n';
    metrics[it->second].lines.push_back(std::move(line));
  }
  std::string out;
  for (const auto& m : metrics) {
    out += "# HELP " + m.name + ' ' + m.stem + options.help_suffix + '\n';
    out += "# TYPE " + m.name + (m.gauge ? " gauge\n" : " counter\n");
    for (const auto& l : m.lines) out += l;
  }
  return out;
}

}  // namespace zmqkit::metrics
