// zmqkit-forwarder's live view: /api/stats (JSON, docs/dashboard.md), /metrics
// (Prometheus) and the page at /. Part of the program, not of the library.
#pragma once

#include <string>
#include <string_view>
#include <zmqkit/pubsub/forwarder.hpp>

namespace zmqkit::pubsub {

// Returns: `status` as the /api/stats JSON document.
std::string status_json(const forwarder_status& status, std::string_view version);

// Returns: `status` in the Prometheus text format, metrics named zmqkit_forwarder_*.
std::string status_prometheus(const forwarder_status& status);

// Returns: the dashboard's <main> and script (embedded; dashboard_routes() frames it).
std::string_view dashboard_html();

}  // namespace zmqkit::pubsub
