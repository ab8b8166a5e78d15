#include <httplib.h>

#include <charconv>
#include <chrono>
#include <thread>
#include <zmqkit/error.hpp>
#include <zmqkit/metrics_http.hpp>

namespace zmqkit {

metrics_http_options parse_http_address(std::string_view host_port) {
  const auto colon = host_port.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    throw error(errc::bad_config, "metrics-http",
                "metrics-http: expected HOST:PORT, got '" + std::string(host_port) + "'");
  std::string_view host = host_port.substr(0, colon);
  const std::string_view port_text = host_port.substr(colon + 1);
  int port = -1;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port < 0 || port > 65535)
    throw error(errc::bad_config, "metrics-http", "metrics-http: bad port '" + std::string(port_text) + "'");
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {.host = std::string(host), .port = port};
}

struct metrics_http_server::impl {
  httplib::Server server;
  std::thread thread;
  int port = 0;
};

metrics_http_server::metrics_http_server(metrics_http_options options, std::function<std::string()> render,
                                         std::vector<http_route> routes)
    : impl_(std::make_unique<impl>()) {
  auto& srv = impl_->server;
  // cpp-httplib's default adds SO_REUSEPORT, which would let a second process
  // bind the same port silently; keep only SO_REUSEADDR (fast restarts).
  srv.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  srv.new_task_queue = [] { return new httplib::ThreadPool(2); };  // scrapes are rare and cheap
  srv.Get(options.path, [render = std::move(render)](const httplib::Request&, httplib::Response& res) {
    try {
      res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(std::string("cannot render metrics: ") + e.what() + "\n", "text/plain");
    }
  });
  for (auto& route : routes) {
    const std::string path = route.path;  // before the move below
    srv.Get(path, [route = std::move(route)](const httplib::Request&, httplib::Response& res) {
      try {
        res.set_content(route.render(), route.content_type);
        res.set_header("Cache-Control", "no-store");
      } catch (const std::exception& e) {
        res.status = 500;
        res.set_content(std::string("cannot render ") + route.path + ": " + e.what() + "\n", "text/plain");
      }
    });
  }
  const std::string where = options.host + ":" + std::to_string(options.port);
  if (options.port == 0) {
    impl_->port = srv.bind_to_any_port(options.host);
  } else {
    impl_->port = srv.bind_to_port(options.host, options.port) ? options.port : -1;
  }
  if (impl_->port <= 0)
    throw error(errc::bad_config, "metrics-http", "metrics-http: cannot listen on " + where);
  impl_->thread = std::thread([&srv] { srv.listen_after_bind(); });
  // stop() only works once the loop runs: wait for it, so start and stop are synchronous.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!srv.is_running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      impl_->thread.detach();
      throw error(errc::bad_config, "metrics-http", "metrics-http: server did not start on " + where);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

metrics_http_server::~metrics_http_server() { stop(); }
metrics_http_server::metrics_http_server(metrics_http_server&&) noexcept = default;
metrics_http_server& metrics_http_server::operator=(metrics_http_server&& other) noexcept {
  if (this != &other) {
    stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

int metrics_http_server::port() const noexcept { return impl_ ? impl_->port : -1; }

void metrics_http_server::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

}  // namespace zmqkit
