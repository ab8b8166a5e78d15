#include "forwarder_dashboard.hpp"

#include <map>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <zmqkit/metrics_http.hpp>
#include <vector>
#include <zmqkit/metrics.hpp>

namespace zmqkit::embedded {
extern const std::string_view forwarder_dashboard_html;  // dashboard/main.html, see CMakeLists.txt
}

namespace zmqkit::pubsub {

std::string status_json(const forwarder_status& status, std::string_view version) {
  const forwarder_stats& s = status.stats;
  nlohmann::json j = dashboard_stats("zmqkit-forwarder", version, status.uptime);
  j["rates"] = {{"messages_per_second", status.messages_per_second}};
  j["counters"] = {{"messages", s.messages},
                   {"subscriptions", s.subscriptions},
                   {"uncacheable", s.uncacheable},
                   {"snapshots_served", s.snapshots_served},
                   {"bad_snapshot_requests", s.bad_snapshot_requests}};
  j["caching"] = status.caching;
  j["streams"] = status.streams;
  j["types_cached"] = status.types_cached;
  j["topics"] = {{"total", status.topics_total}, {"list", status.topics}};
  return dump_dashboard_stats(j);
}

namespace {
// The forwarder's counters and gauges, as one list for /api/stats and /metrics.
std::vector<std::pair<const char*, std::uint64_t>> fields_of(const forwarder_status& status) {
  const forwarder_stats& s = status.stats;
  return {{"messages", s.messages},
          {"subscriptions", s.subscriptions},
          {"oversize_subscriptions", s.oversize_subscriptions},
          {"refused_subscriptions", s.refused_subscriptions},
          {"bad_subscriptions", s.bad_subscriptions},
          {"uncacheable", s.uncacheable},
          {"snapshots_served", s.snapshots_served},
          {"snapshots_dropped", s.snapshots_dropped},
          {"bad_snapshot_requests", s.bad_snapshot_requests},
          {"evicted_values", s.evicted_values},
          {"cached_values", s.cached_values},
          {"cached_bytes", s.cached_bytes},
          {"subscriptions_held", s.subscriptions_held},
          {"subscription_bytes_held", s.subscription_bytes_held},
          {"streams", status.streams},
          {"types_cached", status.types_cached},
          {"topics", status.topics_total}};
}
}  // namespace

std::string status_prometheus(const forwarder_status& status) {
  const forwarder_stats& s = status.stats;
  const auto fields = fields_of(status);
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(static_cast<std::uint32_t>(fields.size()) + 1);
  for (const auto& [name, value] : fields) {
    pk.pack(std::string_view(name));
    pk.pack(value);
  }
  pk.pack(std::string_view("curve_refused"));
  pk.pack(std::map<std::string, std::uint64_t>{{"unknown_key", s.curve_refused_unknown_key},
                                               {"plaintext", s.curve_refused_plaintext},
                                               {"bad_handshake", s.curve_refused_bad_handshake}});
  return metrics::render_prometheus(
      metrics::parse_snapshot(std::string_view(buf.data(), buf.size())),
      {.prefix = "zmqkit_forwarder_",
       .label_names = {{"curve_refused", "reason"}},
       .gauges = {"cached_values", "cached_bytes", "subscriptions_held", "subscription_bytes_held", "streams",
                  "types_cached", "topics"},
       .help_suffix = " (zmqkit-forwarder)"});
}

std::string_view dashboard_html() { return embedded::forwarder_dashboard_html; }

}  // namespace zmqkit::pubsub
