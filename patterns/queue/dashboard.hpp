// zmqkit-queue's live view: /api/stats (JSON, schema in docs/dashboard.md) and the page at /
// that reads it. Part of the program, not of the library (the library has no JSON).
#pragma once

#include <string>
#include <string_view>
#include <zmqkit/queue/device.hpp>

namespace zmqkit::queue {

// Returns: `status` as the /api/stats JSON document.
std::string status_json(const device_status& status, std::string_view version);

// Returns: the dashboard's <main> and script (embedded; dashboard_routes() frames it).
std::string_view dashboard_html();

}  // namespace zmqkit::queue
