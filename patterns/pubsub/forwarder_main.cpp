// zmqkit-forwarder: an XSUB/XPUB proxy so that publishers and subscribers meet
// at one address. Publishers connect to --frontend, subscribers to --backend.
// Runs until SIGINT or SIGTERM, then exits 0; exits 2 on a bad configuration or
// a --store that cannot be opened or fails its checks (the message names the path).
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/zap_authenticator.hpp>
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
  app.add_option("--max-types", opts.max_types, "types cached (with --snapshot)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-cache-bytes", opts.max_cache_bytes, "bytes of cached last values (with --snapshot)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--snapshot-queue", opts.snapshot_queue,
                 "snapshot replies queued per requester that does not read; more are dropped")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--max-subscriptions", opts.max_subscriptions,
                 "distinct subscription prefixes forwarded upstream; more are dropped")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-subscription-bytes", opts.max_subscription_bytes,
                 "total bytes of the prefixes forwarded upstream; more are dropped")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  long long retain_age_s = opts.retain.age.count();
  app.add_option("--store", opts.store_dir,
                 "directory (created when absent) to keep every stamped message in, per (publisher, type) stream, "
                 "and the durable subscribers' cursors: replay, gap repair (needs --snapshot; docs/protocol.md 8.6)");
  app.add_option("--retain-messages", opts.retain.messages, "messages kept per stream (with --store)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--retain-bytes", opts.retain.bytes, "bytes kept per stream (with --store)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--retain-seconds", retain_age_s, "age (since the forwarder received it) kept; 0 = no limit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--store-bytes", opts.retain.max_bytes, "bytes kept in all, the oldest message of any stream going first")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  std::string store_sync = "none";
  app.add_option("--store-sync", store_sync,
                 "none: commits stay in the page cache (a crash of the forwarder loses nothing, a power loss the "
                 "last seconds); batch: fsync each commit (one per batch of up to 256 messages)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "batch"}));
  std::string curve_secret, curve_allow;
  app.add_option("--curve-secret", curve_secret,
                 "CURVE on all its sockets: the secret key file (zmqkit-keygen); peers need the .pub");
  app.add_option("--curve-allow", curve_allow,
                 "directory of admitted peer public keys (*.pub), publishers and subscribers; re-read when it changes")
      ->needs("--curve-secret");
  app.add_option("--http", http,
                 "serve the dashboard at http://HOST:PORT/, its JSON at /api/stats, Prometheus text at /metrics "
                 "(PORT 0 = any)");
  app.add_option("--metrics-http", metrics_http, "the same server as --http (its older name)");
  app.set_config("--config", "", "read options from a TOML/INI file (keys: the long flag names)");
  app.set_version_flag("--version", std::string("zmqkit-forwarder ") + ZMQKIT_VERSION);
  CLI11_PARSE(app, argc, argv);
  opts.socket.max_message_bytes = max_frame_bytes;
  opts.retain.age = std::chrono::seconds(retain_age_s);
  opts.store_sync = store_sync == "batch";
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
    std::optional<zmqkit::zap_authenticator> auth;  // before the forwarder binds; destroyed after it
    if (!curve_secret.empty()) {
      opts.socket.security = zmqkit::load_curve_server(curve_secret);
      if (curve_allow.empty())
        std::fprintf(stderr, "zmqkit-forwarder: CURVE without --curve-allow: any peer key is admitted\n");
      else
        auth.emplace(ctx, zmqkit::zap_options{.allow_dir = curve_allow});
    }
    zmqkit::pubsub::forwarder fwd(ctx, opts);
    // Declared after the forwarder: stopped before it. Reads the status the loop publishes.
    std::optional<zmqkit::metrics_http_server> http_server;
    if (http_address)
      http_server.emplace(
          *http_address,
          [&fwd] {
            auto now = *fwd.status();
            now.stats = fwd.stats();  // counters fresh, not as of the last status refresh
            return zmqkit::pubsub::status_prometheus(now);
          },
          zmqkit::dashboard_routes("zmqkit-forwarder", zmqkit::pubsub::dashboard_html(), [&fwd] {
            return zmqkit::pubsub::status_json(*fwd.status(), ZMQKIT_VERSION);
          }));
    std::printf("frontend %s\nbackend %s\n", fwd.frontend_endpoint().c_str(), fwd.backend_endpoint().c_str());
    if (!fwd.snapshot_endpoint().empty()) std::printf("snapshot %s\n", fwd.snapshot_endpoint().c_str());
    if (http_server) {
      std::printf("metrics http://%s:%d/metrics\n", http_address->host.c_str(), http_server->port());
      std::printf("dashboard http://%s:%d/\n", http_address->host.c_str(), http_server->port());
    }
    std::fflush(stdout);
    // Waits for a stop signal; meanwhile reports refused CURVE handshakes, at most every 10 s.
    int sig = -1;
    std::uint64_t refusals_logged = 0;
    while (sig < 0) {
      const timespec every{10, 0};
      sig = sigtimedwait(&stop, nullptr, &every);
      const auto st = fwd.stats();
      const auto refused = st.curve_refused_unknown_key + st.curve_refused_plaintext + st.curve_refused_bad_handshake;
      if (refused != refusals_logged) {
        std::fprintf(stderr,
                     "zmqkit-forwarder: %llu CURVE handshake(s) refused (so far unknown_key=%llu plaintext=%llu "
                     "bad_handshake=%llu)\n",
                     static_cast<unsigned long long>(refused - refusals_logged),
                     static_cast<unsigned long long>(st.curve_refused_unknown_key),
                     static_cast<unsigned long long>(st.curve_refused_plaintext),
                     static_cast<unsigned long long>(st.curve_refused_bad_handshake));
        refusals_logged = refused;
      }
    }
    if (http_server) http_server->stop();
    const auto st = fwd.stats();
    const auto n = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
    std::printf("stopping on signal %d: %llu messages, %llu subscriptions forwarded\n", sig, n(st.messages),
                n(st.subscriptions));
    std::printf(
        "stats messages=%llu subscriptions=%llu oversize_subscriptions=%llu refused_subscriptions=%llu "
        "bad_subscriptions=%llu uncacheable=%llu snapshots_served=%llu snapshots_dropped=%llu "
        "bad_snapshot_requests=%llu evicted_values=%llu cached_values=%llu cached_bytes=%llu\n",
        n(st.messages), n(st.subscriptions), n(st.oversize_subscriptions), n(st.refused_subscriptions),
        n(st.bad_subscriptions), n(st.uncacheable), n(st.snapshots_served), n(st.snapshots_dropped),
        n(st.bad_snapshot_requests), n(st.evicted_values), n(st.cached_values), n(st.cached_bytes));
    if (!opts.store_dir.empty())
      std::printf("store stored=%llu messages=%llu bytes=%llu streams=%llu replays_served=%llu replayed_messages=%llu "
                  "acks=%llu bad_replay_requests=%llu store_errors=%llu\n",
                  n(st.stored), n(st.store_messages), n(st.store_bytes), n(st.store_streams), n(st.replays_served),
                  n(st.replayed_messages), n(st.acks), n(st.bad_replay_requests), n(st.store_errors));
  } catch (const zmqkit::error& e) {
    // A bad configuration, or a store that cannot be opened or fails its checks:
    // never started (silently empty or otherwise).
    std::fprintf(stderr, "zmqkit-forwarder: %s\n", e.what());
    return e.code() == zmqkit::errc::bad_config ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zmqkit-forwarder: %s\n", e.what());
    return 1;
  }
  return 0;
}
