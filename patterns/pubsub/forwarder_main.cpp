// zmqkit-forwarder: an XSUB/XPUB proxy so that publishers and subscribers meet
// at one address. Publishers connect to --frontend, subscribers to --backend.
// Runs until SIGINT or SIGTERM, then exits 0.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <zmqkit/error.hpp>
#include <zmqkit/metrics.hpp>
#include <zmqkit/metrics_http.hpp>
#include <zmqkit/pubsub/forwarder.hpp>

#ifndef ZMQKIT_VERSION
#define ZMQKIT_VERSION "unknown"
#endif

namespace {

// The forwarder's counters in Prometheus text: every one only grows, so all are counters.
std::string render_metrics(const zmqkit::pubsub::forwarder& fwd) {
  const auto st = fwd.stats();
  const zmqkit::metrics::snapshot snap = {
      {{"messages"}, static_cast<double>(st.messages)},
      {{"subscriptions"}, static_cast<double>(st.subscriptions)},
      {{"uncacheable"}, static_cast<double>(st.uncacheable)},
      {{"snapshots_served"}, static_cast<double>(st.snapshots_served)},
      {{"bad_snapshot_requests"}, static_cast<double>(st.bad_snapshot_requests)},
  };
  return zmqkit::metrics::render_prometheus(
      snap, {.prefix = "zmqkit_forwarder_", .help_suffix = " (zmqkit-forwarder stats)"});
}

}  // namespace

int main(int argc, char** argv) {
  zmqkit::pubsub::forwarder_options opts;
  // Loopback unless told otherwise, like every other program's examples: exposing
  // the proxy to the network is a decision (--frontend tcp://0.0.0.0:5559).
  opts.frontend = "tcp://127.0.0.1:5559";
  opts.backend = "tcp://127.0.0.1:5560";
  std::int64_t max_frame_bytes = opts.socket.max_message_bytes;
  int hwm = opts.socket.send_hwm;
  std::string metrics_http;

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
  app.add_option("--metrics-http", metrics_http,
                 "serve the counters in Prometheus text format at http://HOST:PORT/metrics (PORT 0 = any)");
  app.set_version_flag("--version", std::string("zmqkit-forwarder ") + ZMQKIT_VERSION);
  CLI11_PARSE(app, argc, argv);
  opts.socket.max_message_bytes = max_frame_bytes;
  opts.socket.send_hwm = opts.socket.receive_hwm = hwm;
  std::optional<zmqkit::metrics_http_options> http_address;
  try {
    if (!metrics_http.empty()) http_address = zmqkit::parse_http_address(metrics_http);
  } catch (const zmqkit::error& e) {
    std::fprintf(stderr, "zmqkit-forwarder: --metrics-http: %s\n", e.what());
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
    std::printf("frontend %s\nbackend %s\n", fwd.frontend_endpoint().c_str(), fwd.backend_endpoint().c_str());
    if (!fwd.snapshot_endpoint().empty()) std::printf("snapshot %s\n", fwd.snapshot_endpoint().c_str());
    std::optional<zmqkit::metrics_http_server> http;
    if (http_address) {
      http.emplace(*http_address, [&fwd] { return render_metrics(fwd); });
      std::printf("metrics http://%s:%d/metrics\n", http_address->host.c_str(), http->port());
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
