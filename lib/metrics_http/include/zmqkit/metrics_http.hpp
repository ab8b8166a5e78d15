// zmqkit/metrics_http.hpp — a small HTTP/1.x server exposing GET /metrics for
// Prometheus. Used by the programs (zmqkit-queue --metrics-http); not part of
// the zmqkit library proper.
//
//   ```cpp
//   zmqkit::metrics_http_server http({.host = "127.0.0.1", .port = 9102},
//                                    [&] { return zmqkit::metrics::render_prometheus({}); });
//   // serving now; http.port() is the bound port (useful with port 0)
//   ```
//
// The server owns its thread: the constructor returns once it listens, the
// destructor (or stop()) returns once it has stopped. `render` runs on the
// server's thread: it must be safe to call from there.
//
// Bounded against idle and slow clients: one thread polls every connection (a
// connection costs a file descriptor and its buffers, never a thread). At most
// `max_connections` are open: a new one closes the oldest (an idle or
// half-sent request; a scrape takes milliseconds), so a flood of idle
// connections cannot keep a scrape out. A request whose headers are not
// complete within `header_timeout` (in total, not per byte: slow senders too)
// or larger than `max_header_bytes` is closed; a response not taken within
// `write_timeout` is dropped. Every response closes its connection (no
// keep-alive: a scraper reconnects every interval anyway).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>
#include <zmqkit/pimpl.hpp>

namespace zmqkit {

struct metrics_http_options {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 = an ephemeral port, see port()
  std::string path = "/metrics";
  std::size_t max_connections = 64;
  std::chrono::milliseconds header_timeout{5000};
  std::chrono::milliseconds write_timeout{5000};
  std::size_t max_header_bytes = 8192;
};

struct metrics_http_stats {
  std::uint64_t served = 0;               // responses sent (any status)
  std::uint64_t evicted = 0;              // connections closed to make room (max_connections)
  std::uint64_t timed_out = 0;            // headers not complete / response not taken in time
  std::uint64_t bad_requests = 0;         // malformed or oversized requests (answered 400/431)
};

// A further GET route on the same server (the dashboard page, its JSON API):
// `render` makes the body, sent with `content_type`. Thread-safe like render above.
struct http_route {
  std::string path;
  std::string content_type;
  std::function<std::string()> render;
};

// Returns: the routes of a live dashboard: at "/" the page, the shared frame (title,
// header with version, uptime and state) around `main` (the program's <main> and
// script); `stats_json()` at "/api/stats"; the style sheet and script every
// dashboard links (dashboard.css, dashboard.js).
std::vector<http_route> dashboard_routes(std::string_view program, std::string_view main,
                                         std::function<std::string()> stats_json);

// Returns: the start of a dashboard's /api/stats object: the fields its frame
// shows (program, version, uptime_ms); the program adds its own.
nlohmann::json dashboard_stats(std::string_view program, std::string_view version, std::chrono::milliseconds uptime);

// Returns: `stats` as /api/stats sends it. Names in it (types, topics, codes)
// come from the network: what is not UTF-8 is replaced rather than thrown on.
std::string dump_dashboard_stats(const nlohmann::json& stats);

// Returns: HOST:PORT split into options ("[::1]:9102" for IPv6).
// Throws: zmqkit::error{bad_config} when it is not HOST:PORT with a port 0-65535.
metrics_http_options parse_http_address(std::string_view host_port);

class metrics_http_server {
 public:
  // Binds and starts serving. Throws: zmqkit::error{bad_config} when the
  // address cannot be bound.
  metrics_http_server(metrics_http_options options, std::function<std::string()> render,
                      std::vector<http_route> routes = {});

  int port() const noexcept;
  // Safe from any thread.
  metrics_http_stats stats() const noexcept;
  // Stops serving and joins the thread. Idempotent.
  void stop();

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit
