// zmqkit/metrics.hpp — counter snapshots (as the queue device's admin endpoint
// sends them) and their Prometheus text exposition.
//
//   ```cpp
//   std::string admin_reply_body;  // the msgpack map an admin endpoint answered
//   auto snap = zmqkit::metrics::parse_snapshot(admin_reply_body);
//   std::string text = zmqkit::metrics::render_prometheus(snap, {
//       .prefix = "zmqkit_queue_",
//       .label_names = {{"rejected", "code"}},
//       .gauges = {"pending", "pending_by_type"}});
//   ```
//
// A snapshot is a msgpack map name -> number, or name -> map of the same. A
// nested map becomes one metric with a label per level: `pending_by_type`
// {"order.": 3} renders as `zmqkit_queue_pending_by_type{type="order."} 3` (a
// `_by_<label>` suffix names the label), `rejected` {"expired": 2} as
// `zmqkit_queue_rejected_total{code="expired"} 2`.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace zmqkit::metrics {

// One number of a snapshot and the names leading to it from the root map.
struct sample {
  std::vector<std::string> path;
  double value = 0;
  friend bool operator==(const sample&, const sample&) = default;
};
using snapshot = std::vector<sample>;  // in the order of the encoded maps

// Returns: every number of the msgpack map `encoded`, depth first.
// Throws: zmqkit::error{errc::protocol} when it is not a map of name -> number
// or name -> map (nested at most `max_depth` levels), or has trailing bytes.
snapshot parse_snapshot(std::string_view encoded, int max_depth = 4);

struct prometheus_options {
  std::string prefix = "zmqkit_";  // prepended to every metric name
  // Label name of a nested map's keys, by the map's name. Default: the text after
  // `_by_` in the name (`pending_by_type` -> `type`), else `key`.
  std::map<std::string, std::string, std::less<>> label_names{};
  // Names (as in the snapshot) exported as gauges; the others are counters,
  // named with the `_total` suffix.
  std::set<std::string, std::less<>> gauges{};
  std::string help_suffix{};  // appended to each # HELP line (e.g. " (zmqkit-queue)")
  // Snapshot names counted in a unit Prometheus wants in its base unit: the
  // metric's stem and the factor to it ({"sync_us", {"sync_seconds", 1e-6}}).
  std::map<std::string, std::pair<std::string, double>, std::less<>> units{};
};

// Returns: the snapshot in the Prometheus text exposition format 0.0.4, one
// # HELP / # TYPE block per metric, samples of a metric grouped together.
std::string render_prometheus(const snapshot& snap, const prometheus_options& options = {});

// Returns: `name` with every character Prometheus does not allow replaced by `_`.
std::string sanitize_metric_name(std::string_view name);
// Returns: `value` escaped for a label value (backslash, double quote, newline).
std::string escape_label_value(std::string_view value);

}  // namespace zmqkit::metrics
