// The cost of CURVE: the same work with CURVE (encryption + ZAP allow-list) and
// in plaintext, in one run, and the ratio CURVE / plaintext.
//   build/bench/security_bench [messages]
//
// 1. The queue device (zmqkit::queue::device, in-process, tcp loopback): 4 clients
//    x 100 requests in flight x 4 echo workers, 64-byte bodies in ZMK/1 envelopes,
//    CURVE + allow-list on both the frontend and the backend vs plaintext.
// 2. ROUTER/DEALER: one DEALER keeps a window of requests outstanding at an
//    echo ROUTER (throughput), then does strict one-at-a-time round trips (latency).
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/queue/device.hpp>
#include <zmqkit/socket_options.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "bench_util.hpp"

using namespace zmqkit::bench;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

// Keys and an allow-list in a temporary directory, removed at exit.
struct curve_setup {
  fs::path dir;
  zmqkit::curve_keypair server = zmqkit::generate_keypair();
  zmqkit::curve_keypair client = zmqkit::generate_keypair();
  zmqkit::curve_keypair backend = zmqkit::generate_keypair();
  zmqkit::curve_keypair worker = zmqkit::generate_keypair();
  curve_setup() {
    std::string tmpl = (fs::temp_directory_path() / "zmqkit-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
    zmqkit::save_public_key(client.public_key, dir / "client.pub");
    fs::create_directory(dir / "workers");
    zmqkit::save_public_key(worker.public_key, dir / "workers/worker.pub");
  }
  ~curve_setup() { fs::remove_all(dir); }
  zmqkit::socket_options server_options(bool curve) const {
    zmqkit::socket_options o;
    if (curve) o.security = zmqkit::curve_server{.secret_key = server.secret_key};
    return o;
  }
  zmqkit::socket_options client_options(bool curve) const {
    zmqkit::socket_options o;
    if (curve)
      o.security = zmqkit::curve_client{
          .public_key = client.public_key, .secret_key = client.secret_key, .server_key = server.public_key};
    return o;
  }
};

struct figures {
  double msgs_per_s = 0;
  double p50_us = 0;
};

// An echo ROUTER on its own thread; `curve` with an allow-list authenticator.
figures router_dealer(const curve_setup& keys, bool curve, std::size_t messages, std::size_t body_bytes) {
  zmq::context_t ctx;
  std::optional<zmqkit::zap_authenticator> auth;
  if (curve) auth.emplace(ctx, zmqkit::zap_options{.allow_dir = keys.dir});
  zmq::socket_t router(ctx, zmq::socket_type::router);
  zmqkit::apply(router, keys.server_options(curve));
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    while (!stop) {
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 50ms);
      std::vector<zmq::message_t> msg;
      while (zmq::recv_multipart(router, std::back_inserter(msg), zmq::recv_flags::dontwait)) {
        zmq::send_multipart(router, msg);
        msg.clear();
      }
    }
  });

  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  zmqkit::apply(dealer, keys.client_options(curve));
  dealer.set(zmq::sockopt::rcvtimeo, 5000);
  dealer.connect(endpoint);
  const std::string body(body_bytes, 'x');
  zmq::message_t reply;
  // Warm up: the handshake and the first round trip are not measured.
  dealer.send(zmq::buffer(body));
  if (!dealer.recv(reply)) std::abort();

  figures f;
  constexpr std::size_t window = 100;
  std::size_t sent = 0, received = 0;
  const auto start = bench_clock::now();
  while (received < messages) {
    while (sent < messages && sent - received < window) {
      dealer.send(zmq::buffer(body));
      ++sent;
    }
    if (!dealer.recv(reply)) std::abort();
    ++received;
  }
  f.msgs_per_s =
      static_cast<double>(messages) / std::chrono::duration<double>(bench_clock::now() - start).count();

  std::vector<double> samples;
  for (std::size_t i = 0; i < std::min<std::size_t>(messages / 10, 20000); ++i) {
    const auto t0 = bench_clock::now();
    dealer.send(zmq::buffer(body));
    if (!dealer.recv(reply)) std::abort();
    samples.push_back(std::chrono::duration<double, std::micro>(bench_clock::now() - t0).count());
  }
  f.p50_us = percentile(samples, 50);
  stop = true;
  echo.join();
  return f;
}

// --- 1. the queue device -----------------------------------------------------

constexpr int device_clients = 4;
constexpr int device_workers = 4;
constexpr std::size_t device_window = 100;

// An echo worker speaking the device protocol: READY, heartbeats, echo.
void device_worker(zmq::context_t& ctx, const std::string& endpoint, const zmqkit::socket_options& opts,
                   std::atomic<bool>& stop) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  zmqkit::apply(s, opts);
  s.set(zmq::sockopt::linger, 0);
  s.connect(endpoint);
  s.send(zmq::buffer("\x01", 1));
  auto next_heartbeat = bench_clock::now() + 500ms;
  std::vector<zmq::message_t> frames;
  while (!stop) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 50ms);
    while (item.revents & ZMQ_POLLIN) {
      frames.clear();
      if (!zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      if (frames.size() >= 3) zmq::send_multipart(s, frames);  // else a heartbeat
    }
    if (bench_clock::now() >= next_heartbeat) {
      next_heartbeat = bench_clock::now() + 500ms;
      s.send(zmq::buffer("\x02", 1));
    }
  }
}

// One client keeping `device_window` requests in flight until `count` are answered.
void device_client(zmq::context_t& ctx, const std::string& endpoint, const zmqkit::socket_options& opts,
                   std::vector<zmq::message_t>& requests) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  zmqkit::apply(s, opts);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, 10000);
  s.connect(endpoint);
  std::size_t sent = 0, received = 0;
  auto send_next = [&] {
    s.send(zmq::message_t{}, zmq::send_flags::sndmore);
    s.send(requests[sent++], zmq::send_flags::none);
  };
  while (sent < requests.size() && sent < device_window) send_next();
  std::vector<zmq::message_t> frames;
  while (received < requests.size()) {
    frames.clear();
    if (!zmq::recv_multipart(s, std::back_inserter(frames))) {
      std::fprintf(stderr, "device client: timed out after %zu replies\n", received);
      std::exit(1);
    }
    ++received;
    if (sent < requests.size()) send_next();
  }
}

// Returns: requests per second through the device.
double device_throughput(const curve_setup& keys, bool curve, std::size_t per_client) {
  zmq::context_t ctx;
  std::optional<zmqkit::zap_authenticator> auth;
  zmqkit::queue::device_options opts{.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*"};
  zmqkit::socket_options client_opts, worker_opts;
  if (curve) {
    auth.emplace(
        ctx, zmqkit::zap_options{.domain_dirs = {{"frontend", keys.dir}, {"backend", keys.dir / "workers"}}});
    opts.frontend_security =
        zmqkit::curve_server{.secret_key = keys.server.secret_key, .zap_domain = "frontend"};
    opts.backend_security =
        zmqkit::curve_server{.secret_key = keys.backend.secret_key, .zap_domain = "backend"};
    client_opts = keys.client_options(true);
    worker_opts.security = zmqkit::curve_client{.public_key = keys.worker.public_key,
                                                .secret_key = keys.worker.secret_key,
                                                .server_key = keys.backend.public_key};
  }
  zmqkit::queue::device dev(ctx, opts);
  std::thread device_thread([&] { dev.run(); });
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int i = 0; i < device_workers; ++i)
    workers.emplace_back([&] { device_worker(ctx, dev.backend_endpoint(), worker_opts, stop); });
  // Timing starts once every worker has registered (handshake + READY), so it measures traffic only.
  while (dev.stats().workers_ready < device_workers) std::this_thread::sleep_for(1ms);

  std::vector<std::vector<zmq::message_t>> requests(device_clients);
  for (auto& r : requests)
    for (std::size_t i = 0; i < per_client; ++i) {
      zmqkit::envelope e = zmqkit::make_envelope("bench.echo");
      e.body.assign(64, 'x');
      r.push_back(zmqkit::encode(e));
    }
  const auto start = bench_clock::now();
  std::vector<std::thread> clients;
  for (auto& r : requests)
    clients.emplace_back([&, rp = &r] { device_client(ctx, dev.frontend_endpoint(), client_opts, *rp); });
  for (auto& t : clients) t.join();
  const double secs = std::chrono::duration<double>(bench_clock::now() - start).count();
  stop = true;
  for (auto& t : workers) t.join();
  dev.stop();
  device_thread.join();
  if (curve && auth->stats().refused != 0) std::fprintf(stderr, "unexpected ZAP refusals\n");
  return static_cast<double>(per_client * device_clients) / secs;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t messages = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100'000;
  constexpr int rounds = 3;  // plaintext and CURVE alternate; the median of each is reported
  curve_setup keys;
  std::printf(
      "security_bench: CURVE (encrypted, ZAP allow-list) in the zmqkit column, plaintext in the raw column; "
      "%zu messages, median of %d alternating rounds\n",
      messages, rounds);
  const auto median = [](std::vector<double> v) { return percentile(v, 50); };
  {
    const std::size_t per_client = messages / device_clients / 2;
    std::vector<double> plain, curve;
    for (int r = 0; r < rounds; ++r) {
      plain.push_back(device_throughput(keys, false, per_client));
      curve.push_back(device_throughput(keys, true, per_client));
    }
    report("queue device, CURVE both sides vs plaintext", "req/s", median(curve), median(plain), 0.25, true);
  }
  for (std::size_t bytes : {64, 1024}) {
    std::vector<double> plain_rate, curve_rate, plain_p50, curve_p50;
    for (int r = 0; r < rounds; ++r) {
      const auto plain = router_dealer(keys, false, messages, bytes);
      const auto curve = router_dealer(keys, true, messages, bytes);
      plain_rate.push_back(plain.msgs_per_s);
      curve_rate.push_back(curve.msgs_per_s);
      plain_p50.push_back(plain.p50_us);
      curve_p50.push_back(curve.p50_us);
    }
    const std::string what = "ROUTER/DEALER " + std::to_string(bytes) + " B";
    report(what + ", window 100 throughput", "msg/s", median(curve_rate), median(plain_rate), 0.25, true);
    report(what + " round trip p50", "us", median(curve_p50), median(plain_p50), 2.0, false);
  }
  return 0;
}
