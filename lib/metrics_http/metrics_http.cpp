// A single-threaded, poll-based HTTP/1.x server for GET /metrics. Written
// here rather than on cpp-httplib: its thread-per-connection pool let four
// idle half-sent requests hold every worker (each scrape then waited behind
// them), and its queue of accepted connections had no bound.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <list>
#include <thread>
#include <vector>
#include <zmqkit/error.hpp>
#include <zmqkit/metrics_http.hpp>

namespace zmqkit {

namespace embedded {
extern const std::string_view dashboard_frame;  // metrics_http/dashboard/, see lib/CMakeLists.txt
extern const std::string_view dashboard_css;
extern const std::string_view dashboard_js;
}  // namespace embedded

namespace {
// Returns: `text` with every `{{name}}` replaced by `value`.
std::string fill_in(std::string text, std::string_view name, std::string_view value) {
  const std::string mark = "{{" + std::string(name) + "}}";
  for (auto at = text.find(mark); at != std::string::npos; at = text.find(mark, at + value.size()))
    text.replace(at, mark.size(), value);
  return text;
}
}  // namespace

std::vector<http_route> dashboard_routes(std::string_view program, std::string_view main,
                                         std::function<std::string()> stats_json) {
  auto constant = [](std::string_view text) { return [text] { return std::string(text); }; };
  auto page = fill_in(fill_in(std::string(embedded::dashboard_frame), "program", program), "main", main);
  return {{"/", "text/html; charset=utf-8", [page = std::move(page)] { return page; }},
          {"/api/stats", "application/json", std::move(stats_json)},
          {"/dashboard.css", "text/css; charset=utf-8", constant(embedded::dashboard_css)},
          {"/dashboard.js", "text/javascript; charset=utf-8", constant(embedded::dashboard_js)}};
}

nlohmann::json dashboard_stats(std::string_view program, std::string_view version, std::chrono::milliseconds uptime) {
  return {{"program", program}, {"version", version}, {"uptime_ms", uptime.count()}};
}

std::string dump_dashboard_stats(const nlohmann::json& stats) {
  return stats.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

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

namespace {

using steady = std::chrono::steady_clock;

struct connection {
  int fd = -1;
  std::string in;   // the request so far
  std::string out;  // the response, once the request is complete
  std::size_t written = 0;
  bool draining = false;  // response sent: reading what is left until the peer closes
  steady::time_point deadline;
};

std::string response(int status, std::string_view reason, std::string_view content_type, std::string_view body,
                     bool head_only) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  r += "Content-Type: " + std::string(content_type) + "\r\n";
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!head_only) r += body;
  return r;
}

}  // namespace

struct metrics_http_server::impl {
  metrics_http_options options;
  std::function<std::string()> render;
  std::vector<http_route> routes;  // further GET routes beside options.path
  int listener = -1;
  int wake[2] = {-1, -1};  // a byte on wake[1] stops the loop
  int port = 0;
  std::thread thread;
  std::list<connection> connections;  // oldest first
  std::atomic<std::uint64_t> served{0}, evicted{0}, timed_out{0}, bad_requests{0};

  ~impl() {
    stop();
    for (auto& c : connections) ::close(c.fd);
    for (int fd : {listener, wake[0], wake[1]})
      if (fd >= 0) ::close(fd);
  }

  void stop() {
    if (!thread.joinable()) return;
    const char byte = 1;
    (void)!::write(wake[1], &byte, 1);
    thread.join();
    // Nothing listens any more: later connections are refused.
    ::close(listener);
    listener = -1;
  }

  void listen_on(const std::string& where) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(options.port);
    const char* host = options.host.empty() || options.host == "*" ? nullptr : options.host.c_str();
    if (::getaddrinfo(host, service.c_str(), &hints, &found) != 0 || found == nullptr)
      throw error(errc::bad_config, "metrics-http", "metrics-http: cannot resolve " + where);
    for (addrinfo* a = found; a != nullptr && listener < 0; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      int yes = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);  // fast restarts; no SO_REUSEPORT
      if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
        listener = fd;
      } else {
        ::close(fd);
      }
    }
    ::freeaddrinfo(found);
    if (listener < 0) throw error(errc::bad_config, "metrics-http", "metrics-http: cannot listen on " + where);
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
    port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    if (::pipe2(wake, O_NONBLOCK | O_CLOEXEC) != 0)
      throw error(errc::bad_config, "metrics-http", "metrics-http: cannot create the stop pipe");
  }

  void close_connection(std::list<connection>::iterator it) {
    ::close(it->fd);
    connections.erase(it);
  }

  void accept_all() {
    for (int i = 0; i < 64; ++i) {  // a bounded batch, so one flood cannot starve the others
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of descriptors until one is closed
      if (connections.size() >= options.max_connections) {
        close_connection(connections.begin());  // the oldest: idle or slow, a scrape is quick
        ++evicted;
      }
      connection& c = connections.emplace_back();
      c.fd = fd;
      c.deadline = steady::now() + options.header_timeout;
    }
  }

  // Returns: the response to a complete request head `head` (up to the blank line).
  std::string answer(std::string_view head) {
    const auto line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
      ++bad_requests;
      return response(400, "Bad Request", "text/plain", "bad request\n", false);
    }
    const std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    target = target.substr(0, target.find('?'));
    const bool head_only = method == "HEAD";
    if (method != "GET" && !head_only) return response(405, "Method Not Allowed", "text/plain", "GET only\n", false);
    if (target == options.path) return render_with(render, "text/plain; version=0.0.4; charset=utf-8", head_only);
    for (const auto& route : routes)
      if (target == route.path) return render_with(route.render, route.content_type, head_only);
    return response(404, "Not Found", "text/plain", "not found\n", head_only);
  }

  static std::string render_with(const std::function<std::string()>& make, std::string_view content_type,
                                 bool head_only) {
    try {
      return response(200, "OK", content_type, make(), head_only);
    } catch (const std::exception& e) {
      return response(500, "Internal Server Error", "text/plain", std::string("cannot render: ") + e.what() + "\n",
                      head_only);
    }
  }

  // Returns: whether the connection stays open.
  bool on_readable(connection& c) {
    char buf[4096];
    for (;;) {
      const auto n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n == 0) return false;  // closed by the peer
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      if (c.draining || !c.out.empty()) continue;  // the request is answered: discard the rest
      c.in.append(buf, static_cast<std::size_t>(n));
      const auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos && c.in.size() > options.max_header_bytes) {
        ++bad_requests;
        c.out = response(431, "Request Header Fields Too Large", "text/plain", "headers too large\n", false);
      } else if (end != std::string::npos) {
        c.out = answer(std::string_view(c.in).substr(0, end));
      } else {
        continue;
      }
      c.in = std::string();
      c.deadline = steady::now() + options.write_timeout;
      return on_writable(c);
    }
  }

  bool on_writable(connection& c) {
    while (c.written < c.out.size()) {
      const auto n = ::send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      c.written += static_cast<std::size_t>(n);
    }
    if (!c.draining) {
      ++served;
      // Half-close, then read until the peer closes (briefly): closing with unread
      // bytes would reset the connection and could cut the response short.
      ::shutdown(c.fd, SHUT_WR);
      c.draining = true;
      c.out = std::string();
      c.written = 0;
      c.deadline = steady::now() + std::chrono::milliseconds(500);
    }
    return true;
  }

  void run() {
    std::vector<pollfd> fds;
    std::vector<std::list<connection>::iterator> order;
    for (;;) {
      const auto now = steady::now();
      for (auto it = connections.begin(); it != connections.end();) {
        auto next = std::next(it);
        if (now >= it->deadline) {
          if (!it->draining) ++timed_out;
          close_connection(it);
        }
        it = next;
      }
      fds.clear();
      order.clear();
      fds.push_back({wake[0], POLLIN, 0});
      fds.push_back({listener, POLLIN, 0});
      auto wait_until = now + std::chrono::hours(1);
      for (auto it = connections.begin(); it != connections.end(); ++it) {
        const bool writing = !it->draining && !it->out.empty();
        fds.push_back({it->fd, static_cast<short>(writing ? POLLOUT : POLLIN), 0});
        order.push_back(it);
        wait_until = std::min(wait_until, it->deadline);
      }
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(wait_until - now);
      const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(0, wait.count())));
      if (ready < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;
      for (std::size_t i = 0; i < order.size(); ++i) {
        const short ev = fds[i + 2].revents;
        if (ev == 0) continue;
        connection& c = *order[i];
        const bool keep = (ev & POLLOUT) ? on_writable(c) : on_readable(c);
        if (!keep || (ev & (POLLERR | POLLNVAL))) close_connection(order[i]);
      }
      if (fds[1].revents & POLLIN) accept_all();
    }
  }
};

metrics_http_server::metrics_http_server(metrics_http_options options, std::function<std::string()> render,
                                         std::vector<http_route> routes)
    : impl_(make_pimpl<impl>()) {
  auto& m = *impl_;
  if (options.max_connections == 0)
    throw error(errc::bad_config, "metrics-http", "metrics-http: max_connections must be at least 1");
  m.options = std::move(options);
  m.render = std::move(render);
  m.routes = std::move(routes);
  m.listen_on(m.options.host + ":" + std::to_string(m.options.port));
  m.thread = std::thread([&m] { m.run(); });  // listening already: start and stop are synchronous
}

int metrics_http_server::port() const noexcept { return impl_ ? impl_->port : -1; }

metrics_http_stats metrics_http_server::stats() const noexcept {
  if (!impl_) return {};
  return {.served = impl_->served, .evicted = impl_->evicted, .timed_out = impl_->timed_out,
          .bad_requests = impl_->bad_requests};
}

void metrics_http_server::stop() {
  if (impl_) impl_->stop();
}

}  // namespace zmqkit
