// zmqkit-queue: the queue device as a program. See README.md in this folder.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <zmqkit/envelope.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/metrics.hpp>
#include <zmqkit/metrics_http.hpp>
#include <zmqkit/queue/device.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "dashboard.hpp"

namespace {

zmqkit::queue::device* running_device = nullptr;

// A whole decimal number in [low, high]: digits only, so a sign, an exponent
// (1e23), a fraction or an overflowing value (18446744073709551616) is an error
// naming the flag or config key, never a wrapped or saturated "unbounded".
CLI::Validator whole_number(unsigned long long low, unsigned long long high) {
  const std::string range = "[" + std::to_string(low) + ", " + std::to_string(high) + "]";
  return CLI::Validator(
      [low, high, range](std::string& text) -> std::string {
        unsigned long long value = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < low || value > high)
          return "'" + text + "' is not a whole number in " + range;
        return {};
      },
      "UINT in " + range);
}

constexpr std::size_t max_config_bytes = 1 << 20;

// Checks the --config file before CLI11 reads it: a regular file (a FIFO or a
// device would block or never end), at most 1 MiB, UTF-8 text without NULs,
// no [sections], and every key one of `keys`. Returns: an error naming the
// path or the key, or an empty string.
std::string check_config_file(const std::string& path, const std::set<std::string>& keys) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path + ": " + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return path + ": not a regular file";
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return path + ": " + std::strerror(errno);
  std::string text(max_config_bytes + 1, '\0');
  std::size_t got = 0;
  for (ssize_t n; got < text.size() && (n = ::read(fd, text.data() + got, text.size() - got)) > 0;)
    got += static_cast<std::size_t>(n);
  ::close(fd);
  if (got > max_config_bytes) return path + ": larger than " + std::to_string(max_config_bytes) + " bytes";
  text.resize(got);
  if (text.find('\0') != std::string::npos || !zmqkit::is_valid_utf8(text))
    return path + ": not a text file (NUL bytes or invalid UTF-8)";
  std::size_t line_number = 0;
  for (std::size_t start = 0; start < text.size();) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_number;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) continue;
    line.remove_prefix(first);
    if (line[0] == '#' || line[0] == ';') continue;
    const std::string where = path + " line " + std::to_string(line_number);
    if (line[0] == '[') return where + ": sections are not supported: '" + std::string(line) + "'";
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) return where + ": not 'key = value'";
    std::string key(line.substr(0, eq));
    key.erase(key.find_last_not_of(" \t") + 1);
    std::replace(key.begin(), key.end(), '_', '-');
    if (!keys.count(key)) return where + ": unknown key '" + key + "'";
  }
  return {};
}

// Returns: the value of --config in argv, if any.
std::optional<std::string> config_argument(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) return std::string(argv[i + 1]);
    if (a.starts_with("--config=")) return std::string(a.substr(9));
  }
  return std::nullopt;
}

// How the admin snapshot maps onto Prometheus metrics: counters get _total,
// nested maps become labels (pending_by_type -> type, pending_by_priority -> priority).
zmqkit::metrics::prometheus_options prometheus_options() {
  return {.prefix = "zmqkit_queue_",
          .label_names = {{"rejected", "code"},
                          {"dropped", "reason"},
                          {"frontend_curve_refused", "reason"},
                          {"backend_curve_refused", "reason"}},
          .gauges = {"pending", "pending_by_priority", "pending_by_type", "in_flight", "workers_ready",
                     "workers_busy", "worker_capacity", "reply_cache_size", "reply_cache_bytes", "pending_bytes",
                     "store_bytes", "store_last_sync_us"},
          .help_suffix = " (zmqkit-queue admin stats)",
          .units = {{"store_sync_us", {"store_sync_seconds", 1e-6}},
                    {"store_last_sync_us", {"store_last_sync_seconds", 1e-6}}}};
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
    spdlog::info("CURVE allow-lists: {} client keys allowed ({} files skipped)", auth->stats().allowed_keys,
                 auth->stats().skipped_files);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono;
  CLI::App app{"zmqkit-queue: load-balancing queue device between ZMK/1 request/reply clients and workers",
               "zmqkit-queue"};
  zmqkit::queue::device_options opts;
  long long heartbeat_ms = 1000, no_service_ms = 5000, delivery_timeout_ms = 30 * 60 * 1000;
  std::string log_level = "info";
  std::string metrics_http, http;

  app.add_option("--frontend", opts.frontend, "endpoint clients connect to (bound), e.g. tcp://*:5555")
      ->required();
  app.add_option("--backend", opts.backend, "endpoint workers connect to (bound), e.g. tcp://*:5556")
      ->required();
  app.add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval to and from workers")
      ->check(whole_number(1LL, 3'600'000LL))
      ->capture_default_str();
  app.add_option("--liveness", opts.liveness, "missed heartbeats before a worker is dead")
      ->check(whole_number(1, 1000))
      ->capture_default_str();
  app.add_option("--max-requeue", opts.max_requeue, "requeues before a request is dead-lettered")
      ->check(whole_number(0, 1000))
      ->capture_default_str();
  app.add_option("--max-pending", opts.max_pending, "requests waiting before new ones are 'overloaded'")
      ->check(whole_number(std::size_t{1}, std::size_t{1} << 32))
      ->capture_default_str();
  app.add_option("--max-pending-per-type", opts.max_pending_per_type,
                 "requests of one type waiting before new ones of that type are 'overloaded'")
      ->check(whole_number(std::size_t{1}, std::size_t{1} << 32))
      ->capture_default_str();
  app.add_option("--max-workers", opts.max_workers, "connected workers; past it a new worker's READY is refused")
      ->check(whole_number(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--max-prefixes-per-worker", opts.max_prefixes_per_worker,
                 "type prefixes one READY may list; past it the READY is refused")
      ->check(whole_number(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  app.add_option("--max-worker-capacity", opts.max_worker_capacity,
                 "requests one worker may hold (READY 'capacity'); past it the READY is refused")
      ->check(whole_number(std::uint64_t{1}, std::uint64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--reply-cache", opts.reply_cache, "recent replies kept to answer retries (0 = off)")
      ->check(whole_number(0, std::size_t{1} << 32))
      ->capture_default_str();
  app.add_option("--reply-cache-bytes", opts.reply_cache_bytes,
                 "total size of the cached replies; past it the oldest are evicted")
      ->check(whole_number(0, std::size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--max-pending-bytes", opts.max_pending_bytes,
                 "bytes of waiting requests (bodies and address stacks) before new ones are 'overloaded'")
      ->check(whole_number(1, std::size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--max-route-frames", opts.max_route_frames,
                 "address frames (ROUTER hops) a request may carry; past it the request is dropped")
      ->check(whole_number(1, 1024))
      ->capture_default_str();
  app.add_option("--max-route-bytes", opts.max_route_bytes,
                 "total size of a request's address frames; past it the request is dropped")
      ->check(whole_number(1, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--no-service-ms", no_service_ms, "wait for a worker serving the type, then 'no-service'")
      ->check(whole_number(0LL, 86'400'000LL))
      ->capture_default_str();
  app.add_option("--delivery-timeout-ms", delivery_timeout_ms,
                 "longest one request may stay at one worker, then it is requeued or dead-lettered (0 = no limit)")
      ->check(whole_number(0LL, 7LL * 86'400'000LL))
      ->capture_default_str();
  app.add_option("--max-frame-bytes", opts.max_frame_bytes, "largest frame accepted on either socket")
      ->check(whole_number(std::size_t{64}, std::size_t{1} << 31))
      ->capture_default_str();
  app.add_option("--store", opts.store,
                 "directory of the durable store (LMDB; created if absent): accepted requests survive a restart "
                 "or a crash, with the reply cache (default: none)");
  std::string store_sync = "batch";
  app.add_option("--store-sync", store_sync,
                 "when the store syncs to disk: always (each request), batch (once per loop turn), none (never)")
      ->check(CLI::IsMember({"always", "batch", "none"}))
      ->capture_default_str();
  app.add_option("--store-max-bytes", opts.store_max_bytes,
                 "bytes of stored requests before new ones are 'overloaded'")
      ->check(whole_number(std::size_t{1} << 10, std::size_t{1} << 40))
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

  if (const auto config = config_argument(argc, argv)) {
    std::set<std::string> keys;
    for (const CLI::Option* o : app.get_options())
      for (const std::string& name : o->get_lnames())
        if (name != "config" && name != "help" && name != "version") keys.insert(name);
    if (const std::string bad = check_config_file(*config, keys); !bad.empty()) {
      std::fprintf(stderr, "zmqkit-queue: --config %s\n", bad.c_str());
      return 2;
    }
  }
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
  opts.delivery_timeout = milliseconds(delivery_timeout_ms);
  opts.store_sync_policy = store_sync == "always" ? zmqkit::queue::store_sync::always
                           : store_sync == "none" ? zmqkit::queue::store_sync::none
                                                  : zmqkit::queue::store_sync::batch;

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
      auto routes = zmqkit::dashboard_routes("zmqkit-queue", zmqkit::queue::dashboard_html(), [&dev] {
        return zmqkit::queue::status_json(*dev.status(), ZMQKIT_VERSION);
      });
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
    // The effective settings (flags and config file merged, defaults included),
    // once the device is up: a bad flag still gets a one-line error.
    std::string settings = app.config_to_str(true, false);
    std::replace(settings.begin(), settings.end(), '\n', ' ');
    spdlog::info("settings: {}", settings);
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
      spdlog::info("CURVE clients admitted {}, refused {}", auth->stats().accepted,
                   auth->stats().refused);
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
