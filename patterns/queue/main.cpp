// zmqkit-queue: the queue device as a program. See README.md in this folder.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <optional>
#include <tuple>
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/metrics.hpp>
#include <zmqkit/metrics_http.hpp>
#include <zmqkit/queue/device.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "dashboard.hpp"

namespace {

zmqkit::queue::device* running_device = nullptr;

// How the admin snapshot maps onto Prometheus metrics: counters get _total,
// nested maps become labels (pending_by_type -> type, pending_by_priority -> priority).
zmqkit::metrics::prometheus_options prometheus_options() {
  return {.prefix = "zmqkit_queue_",
          .label_names = {{"rejected", "code"}, {"dropped", "reason"}},
          .gauges = {"pending", "pending_by_priority", "pending_by_type", "in_flight", "workers_ready",
                     "workers_busy", "worker_capacity", "reply_cache_size"},
          .help_suffix = " (zmqkit-queue admin stats)"};
}

extern "C" void on_stop_signal(int) {
  if (running_device) running_device->stop();  // async-signal-safe: an atomic store and a write()
}

// One side's CURVE flags: the side's secret key file and its allow-list directory.
struct side_flags {
  std::string secret, allow;
};

// Loads one side's key (if any) into `security`, and adds its allow-list to `zap`,
// under a ZAP domain of its own so the two sides admit different keys.
void configure_side(const std::string& side, const side_flags& flags,
                    std::optional<zmqkit::security>& security, zmqkit::zap_options& zap) {
  if (flags.secret.empty()) return;
  const std::string domain = "zmqkit-" + side;
  security = zmqkit::load_curve_server(flags.secret, domain);
  if (flags.allow.empty()) {
    zap.open_domains.push_back(domain);
    spdlog::warn("{}: CURVE without --{}-allow: traffic is encrypted but any client key is admitted", side,
                 side);
  } else {
    zap.domain_dirs[domain] = flags.allow;
  }
}

// Says at start-up which side speaks CURVE, with which server key, and how many
// client keys the allow-lists admit (nothing when neither side uses CURVE).
void log_security(const side_flags& front, const std::optional<zmqkit::security>& front_security,
                  const side_flags& back, const std::optional<zmqkit::security>& back_security,
                  const std::optional<zmqkit::zap_authenticator>& auth) {
  if (!front_security && !back_security) return;
  for (const auto& [side, flags, security] : {std::tuple{"frontend", &front, &front_security},
                                              std::tuple{"backend", &back, &back_security}}) {
    const auto* server = *security ? std::get_if<zmqkit::curve_server>(&**security) : nullptr;
    if (!server) {
      spdlog::info("{}: CURVE off (plaintext)", side);
      continue;
    }
    spdlog::info("{}: CURVE on, server public key {}, {}", side, zmqkit::public_key_of(server->secret_key),
                 flags->allow.empty() ? std::string("any client key admitted")
                                      : "client keys from allow-list " + flags->allow);
  }
  if (auth)
    spdlog::info("CURVE allow-lists: {} client keys allowed ({} files skipped)", auth->counters().allowed_keys,
                 auth->counters().skipped_files);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono;
  CLI::App app{"zmqkit-queue: load-balancing queue device between ZMK/1 request/reply clients and workers",
               "zmqkit-queue"};
  zmqkit::queue::device_options opts;
  long long heartbeat_ms = 1000, no_service_ms = 5000;
  std::string log_level = "info";
  std::string metrics_http, http;

  app.add_option("--frontend", opts.frontend, "endpoint clients connect to (bound), e.g. tcp://*:5555")
      ->required();
  app.add_option("--backend", opts.backend, "endpoint workers connect to (bound), e.g. tcp://*:5556")
      ->required();
  app.add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval to and from workers")
      ->check(CLI::Range(1LL, 3'600'000LL))
      ->capture_default_str();
  app.add_option("--liveness", opts.liveness, "missed heartbeats before a worker is dead")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--max-requeue", opts.max_requeue, "requeues before a request is dead-lettered")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  app.add_option("--max-pending", opts.max_pending, "requests waiting before new ones are 'overloaded'")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32))
      ->capture_default_str();
  app.add_option("--reply-cache", opts.reply_cache, "recent replies kept to answer retries (0 = off)")
      ->capture_default_str();
  app.add_option("--no-service-ms", no_service_ms, "wait for a worker serving the type, then 'no-service'")
      ->check(CLI::Range(0LL, 86'400'000LL))
      ->capture_default_str();
  app.add_option("--max-frame-bytes", opts.max_frame_bytes, "largest frame accepted on either socket")
      ->check(CLI::Range(std::size_t{64}, std::size_t{1} << 31))
      ->capture_default_str();
  app.add_option("--admin", opts.admin, "stats endpoint (ROUTER, bound): send [empty, \"stats\"]");
  app.add_option("--http", http,
                 "serve the dashboard at http://HOST:PORT/, its JSON at /api/stats, Prometheus text at /metrics "
                 "(PORT 0 = any)");
  app.add_option("--metrics-http", metrics_http, "the same server as --http (its older name)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  side_flags front, back;
  app.add_option("--frontend-curve-secret", front.secret,
                 "CURVE on the frontend: its secret key file (zmqkit-keygen); clients need the .pub");
  app.add_option("--frontend-allow", front.allow,
                 "directory of client public keys (*.pub) admitted on the frontend; re-read when it changes");
  app.add_option("--backend-curve-secret", back.secret,
                 "CURVE on the backend: its secret key file; workers need the .pub");
  app.add_option("--backend-allow", back.allow,
                 "directory of worker public keys (*.pub) admitted on the backend; re-read when it changes");
  app.set_config("--config", "", "read options from a TOML/INI file (keys: the long flag names)");
  app.set_version_flag("--version", std::string(ZMQKIT_VERSION));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "zmqkit-queue: %s (see --help)\n", e.what());
    return 2;
  }
  for (const auto& [side, flags] : {std::pair{"frontend", front}, std::pair{"backend", back}}) {
    if (!flags.allow.empty() && flags.secret.empty()) {
      std::fprintf(stderr, "zmqkit-queue: --%s-allow needs --%s-curve-secret (see --help)\n", side, side);
      return 2;
    }
  }
  if (!http.empty() && !metrics_http.empty() && http != metrics_http) {
    std::fprintf(stderr, "zmqkit-queue: --http and --metrics-http name one server: give one of them (see --help)\n");
    return 2;
  }
  if (http.empty()) http = metrics_http;
  opts.heartbeat = milliseconds(heartbeat_ms);
  opts.no_service = milliseconds(no_service_ms);

  auto logger = spdlog::stderr_color_mt("zmqkit-queue");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  opts.log = [](zmqkit::queue::log_level level, std::string_view text) {
    using L = zmqkit::queue::log_level;
    const auto l = level == L::debug  ? spdlog::level::debug
                   : level == L::info ? spdlog::level::info
                   : level == L::warn ? spdlog::level::warn
                                      : spdlog::level::err;
    spdlog::log(l, "{}", text);
  };

  try {
    // Checked before anything binds, so a typo fails fast.
    const auto http_address = http.empty() ? std::nullopt : std::optional(zmqkit::parse_http_address(http));
    zmq::context_t ctx;
    zmqkit::zap_options zap;
    configure_side("frontend", front, opts.frontend_security, zap);
    configure_side("backend", back, opts.backend_security, zap);
    // Before the device binds, so no handshake slips past; destroyed after it.
    std::optional<zmqkit::zap_authenticator> auth;
    if (!zap.domain_dirs.empty()) auth.emplace(ctx, zap);
    log_security(front, opts.frontend_security, back, opts.backend_security, auth);
    zmqkit::queue::device dev(ctx, opts);
    // Declared after the device: destroyed (stopped, joined) before it.
    std::optional<zmqkit::metrics_http_server> http_server;
    if (http_address) {
      // The dashboard reads the status the device thread publishes: a page load never
      // takes the device's lock.
      std::vector<zmqkit::http_route> routes{
          {"/", "text/html; charset=utf-8", [] { return std::string(zmqkit::queue::dashboard_html()); }},
          {"/api/stats", "application/json",
           [&dev] { return zmqkit::queue::status_json(*dev.status(), ZMQKIT_VERSION); }}};
      http_server.emplace(
          *http_address,
          [&dev, popts = prometheus_options()] {
            return zmqkit::metrics::render_prometheus(
                zmqkit::metrics::parse_snapshot(zmqkit::queue::encode_stats(dev.stats())), popts);
          },
          std::move(routes));
      spdlog::info("metrics http://{}:{}/metrics", http_address->host, http_server->port());
      spdlog::info("dashboard http://{}:{}/ (JSON: /api/stats)", http_address->host, http_server->port());
    }
    running_device = &dev;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    spdlog::info("frontend {} backend {}{}{}", dev.frontend_endpoint(), dev.backend_endpoint(),
                 opts.admin.empty() ? "" : " admin ", dev.admin_endpoint());
    dev.run();
    running_device = nullptr;
    if (http_server) http_server->stop();
    if (auth)
      spdlog::info("CURVE clients admitted {}, refused {}", auth->counters().accepted,
                   auth->counters().refused);
    spdlog::info("stopped");
    return 0;
  } catch (const zmqkit::error& e) {
    std::fprintf(stderr, "zmqkit-queue: %s\n", e.what());
    return 2;
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "zmqkit-queue: %s\n", e.what());
    return 1;
  }
}
