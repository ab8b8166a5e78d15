// zmqkit/metrics_http.hpp — a small HTTP server exposing GET /metrics for
// Prometheus, on cpp-httplib. Used by the programs (zmqkit-queue
// --metrics-http); not part of the zmqkit library, so that linking zmqkit never
// pulls in an HTTP stack.
//
//   zmqkit::metrics_http_server http({.host = "127.0.0.1", .port = 9102},
//                                    [&] { return render_prometheus(...); });
//   // serving now; http.port() is the bound port (useful with port 0)
//
// The server owns its thread: the constructor returns once it listens, the
// destructor (or stop()) returns once it has stopped. `render` runs on the
// server's threads, possibly concurrently: it must be thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zmqkit {

struct metrics_http_options {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 = an ephemeral port, see port()
  std::string path = "/metrics";
};

// A further GET route on the same server (the dashboard page, its JSON API):
// `render` makes the body, sent with `content_type`. Thread-safe like render above.
struct http_route {
  std::string path;
  std::string content_type;
  std::function<std::string()> render;
};

// Returns: HOST:PORT split into options ("[::1]:9102" for IPv6).
// Throws: zmqkit::error{bad_config} when it is not HOST:PORT with a port 0-65535.
metrics_http_options parse_http_address(std::string_view host_port);

class metrics_http_server {
 public:
  // Binds and starts serving. Throws: zmqkit::error{bad_config} when the
  // address cannot be bound.
  metrics_http_server(metrics_http_options options, std::function<std::string()> render,
                      std::vector<http_route> routes = {});
  ~metrics_http_server();
  metrics_http_server(metrics_http_server&&) noexcept;
  metrics_http_server& operator=(metrics_http_server&&) noexcept;
  metrics_http_server(const metrics_http_server&) = delete;
  metrics_http_server& operator=(const metrics_http_server&) = delete;

  int port() const noexcept;
  // Stops serving and joins the thread. Idempotent.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace zmqkit
