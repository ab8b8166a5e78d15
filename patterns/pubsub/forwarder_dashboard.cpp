#include "forwarder_dashboard.hpp"

#include <nlohmann/json.hpp>
#include <zmqkit/metrics.hpp>

namespace zmqkit::embedded {
extern const std::string_view forwarder_dashboard_html;  // dashboard/index.html, see CMakeLists.txt
}

namespace zmqkit::pubsub {

std::string status_json(const forwarder_status& status, std::string_view version) {
  const forwarder_stats& s = status.stats;
  nlohmann::json j;
  j["program"] = "zmqkit-forwarder";
  j["version"] = version;
  j["uptime_ms"] = status.uptime.count();
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
  // Topics come from subscribers: replace what is not UTF-8 rather than throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string status_prometheus(const forwarder_status& status) {
  const forwarder_stats& s = status.stats;
  const auto n = [](std::uint64_t v) { return static_cast<double>(v); };
  const metrics::snapshot snap{{{"messages"}, n(s.messages)},
                               {{"subscriptions"}, n(s.subscriptions)},
                               {{"uncacheable"}, n(s.uncacheable)},
                               {{"snapshots_served"}, n(s.snapshots_served)},
                               {{"bad_snapshot_requests"}, n(s.bad_snapshot_requests)},
                               {{"streams"}, n(status.streams)},
                               {{"types_cached"}, n(status.types_cached)},
                               {{"topics"}, n(status.topics_total)}};
  return metrics::render_prometheus(snap, {.prefix = "zmqkit_forwarder_",
                                           .gauges = {"streams", "types_cached", "topics"},
                                           .help_suffix = " (zmqkit-forwarder)"});
}

std::string_view dashboard_html() { return embedded::forwarder_dashboard_html; }

}  // namespace zmqkit::pubsub
