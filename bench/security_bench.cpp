// The cost of CURVE: the same work with CURVE (encryption + ZAP allow-list) and
// in plaintext, in one run, and the ratio CURVE / plaintext.
//   build/bench/security_bench [messages]
//
// 1. ROUTER/DEALER: one DEALER keeps a window of requests outstanding at an
//    echo ROUTER (throughput), then does strict one-at-a-time round trips (latency).
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>
#include <zmq_addon.hpp>
#include <zmqkit/keys.hpp>
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
  curve_setup() {
    std::string tmpl = (fs::temp_directory_path() / "zmqkit-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
    zmqkit::save_public_key(client.public_key, dir / "client.pub");
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

}  // namespace

int main(int argc, char** argv) {
  const std::size_t messages = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200'000;
  curve_setup keys;
  std::printf(
      "security_bench: CURVE (encrypted, ZAP allow-list) in the zmqkit column, plaintext in the raw "
      "column; %zu messages\n",
      messages);
  for (std::size_t bytes : {64, 1024}) {
    const auto plain = router_dealer(keys, false, messages, bytes);
    const auto curve = router_dealer(keys, true, messages, bytes);
    const std::string what = "ROUTER/DEALER " + std::to_string(bytes) + " B, window 100";
    report(what + " throughput", "msg/s", curve.msgs_per_s, plain.msgs_per_s, 0.25, true);
    report("ROUTER/DEALER " + std::to_string(bytes) + " B round trip p50", "us", curve.p50_us, plain.p50_us,
           2.0, false);
  }
  return 0;
}
