// zmqkit-forwarder: an XSUB/XPUB proxy so that publishers and subscribers meet
// at one address. Publishers connect to --frontend, subscribers to --backend.
// Runs until SIGINT or SIGTERM, then exits 0.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <zmqkit/error.hpp>
#include <zmqkit/metrics_http.hpp>
#include <zmqkit/pubsub/forwarder.hpp>

#include "forwarder_dashboard.hpp"

#ifndef ZMQKIT_VERSION
#define ZMQKIT_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  zmqkit::pubsub::forwarder_options opts;
  // Loopback unless told otherwise, like every other program's examples: exposing
  // the proxy to the network is a decision (--frontend tcp://0.0.0.0:5559).
  opts.frontend = "tcp://127.0.0.1:5559";
  opts.backend = "tcp://127.0.0.1:5560";
  std::int64_t max_frame_bytes = opts.socket.max_message_bytes;
  int hwm = opts.socket.send_hwm;
  std::string http, metrics_http;

  CLI::App app{"zmqkit-forwarder: XSUB/XPUB proxy for zmqkit pub/sub"};
  app.add_option("--frontend", opts.frontend, "XSUB endpoint to bind; publishers connect here")
      ->capture_default_str();
  app.add_option("--backend", opts.backend, "XPUB endpoint to bind; subscribers connect here")
      ->capture_default_str();
  app.add_option("--snapshot", opts.snapshot_endpoint,
                 "ROUTER endpoint to bind: cache the last value of every type and serve snapshots to late "
                 "joiners (the forwarder then receives every type)");
  app.add_option("--max-frame-bytes", max_frame_bytes, "larger frames disconnect the sender")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--hwm", hwm, "messages queued per peer before dropping")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--http", http,
                 "serve the dashboard at http://HOST:PORT/, its JSON at /api/stats, Prometheus text at /metrics "
                 "(PORT 0 = any)");
  app.add_option("--metrics-http", metrics_http, "the same server as --http (its older name)");
  app.set_config("--config", "", "read options from a TOML/INI file (keys: the long flag names)");
  app.set_version_flag("--version", std::string("zmqkit-forwarder ") + ZMQKIT_VERSION);
  CLI11_PARSE(app, argc, argv);
  opts.socket.max_message_bytes = max_frame_bytes;
  opts.socket.send_hwm = opts.socket.receive_hwm = hwm;
  if (!http.empty() && !metrics_http.empty() && http != metrics_http) {
    std::fprintf(stderr, "zmqkit-forwarder: --http and --metrics-http name one server: give one of them\n");
    return 2;
  }
  if (http.empty()) http = metrics_http;
  std::optional<zmqkit::metrics_http_options> http_address;
  try {
    if (!http.empty()) http_address = zmqkit::parse_http_address(http);
  } catch (const zmqkit::error& e) {
    std::fprintf(stderr, "zmqkit-forwarder: --http: %s\n", e.what());
    return 2;
  }

  // Block the stop signals before any thread starts, then wait for one here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  try {
    zmq::context_t ctx;
    zmqkit::pubsub::forwarder fwd(ctx, opts);
    // Declared after the forwarder: stopped before it. Reads the status the loop publishes.
    std::optional<zmqkit::metrics_http_server> http_server;
    if (http_address)
      http_server.emplace(
          *http_address, [&fwd] { return zmqkit::pubsub::status_prometheus(*fwd.status()); },
          std::vector<zmqkit::http_route>{
              {"/", "text/html; charset=utf-8", [] { return std::string(zmqkit::pubsub::dashboard_html()); }},
              {"/api/stats", "application/json",
               [&fwd] { return zmqkit::pubsub::status_json(*fwd.status(), ZMQKIT_VERSION); }}});
    std::printf("frontend %s\nbackend %s\n", fwd.frontend_endpoint().c_str(), fwd.backend_endpoint().c_str());
    if (!fwd.snapshot_endpoint().empty()) std::printf("snapshot %s\n", fwd.snapshot_endpoint().c_str());
    if (http_server) {
      std::printf("metrics http://%s:%d/metrics\n", http_address->host.c_str(), http_server->port());
      std::printf("dashboard http://%s:%d/\n", http_address->host.c_str(), http_server->port());
    }
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    const auto st = fwd.stats();
    std::printf("stopping on signal %d: %llu messages, %llu subscriptions forwarded\n", sig,
                static_cast<unsigned long long>(st.messages),
                static_cast<unsigned long long>(st.subscriptions));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zmqkit-forwarder: %s\n", e.what());
    return 1;
  }
  return 0;
}
