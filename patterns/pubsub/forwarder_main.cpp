// zmqkit-forwarder: an XSUB/XPUB proxy so that publishers and subscribers meet
// at one address. Publishers connect to --frontend, subscribers to --backend.
// Runs until SIGINT or SIGTERM, then exits 0.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <zmqkit/pubsub/forwarder.hpp>

#ifndef ZMQKIT_VERSION
#define ZMQKIT_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  zmqkit::pubsub::forwarder_options opts;
  opts.frontend = "tcp://*:5559";
  opts.backend = "tcp://*:5560";
  std::int64_t max_frame_bytes = opts.socket.max_message_bytes;
  int hwm = opts.socket.send_hwm;

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
  app.set_config("--config", "", "read options from a TOML/INI file (keys: the long flag names)");
  app.set_version_flag("--version", std::string("zmqkit-forwarder ") + ZMQKIT_VERSION);
  CLI11_PARSE(app, argc, argv);
  opts.socket.max_message_bytes = max_frame_bytes;
  opts.socket.send_hwm = opts.socket.receive_hwm = hwm;

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
