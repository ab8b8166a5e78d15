// zmqkit-queue with CURVE on the frontend and the backend, each side with its
// own key and allow-list: a garbage flood at the frontend leaves it serving a
// good client; unknown keys on either side get nothing delivered.
// Default: 300 flood connections; ZMQKIT_FULL=1: 3000.
#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <utility>  // before process.hpp, which uses std::exchange
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/metrics.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include "support/process.hpp"
#include "support/raw_tcp.hpp"
#include "support/sockets.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using zmqkit::test::wait_until;

namespace {

const std::string queue_binary = ZMQKIT_QUEUE_BINARY;

std::size_t flood_size() {
  const char* full = std::getenv("ZMQKIT_FULL");
  return full && std::string(full) == "1" ? 3000 : 300;
}

zmqkit::socket_options client_of(const zmqkit::curve_keypair& me, const std::string& server_key) {
  return {.security = zmqkit::curve_client{
              .public_key = me.public_key, .secret_key = me.secret_key, .server_key = server_key}};
}

// Keys on disk, laid out as docs/security.md says, and the device running on them.
struct secured_queue {
  zmqkit::test::temp_dir dir;
  zmqkit::curve_keypair frontend = zmqkit::generate_keypair(), backend = zmqkit::generate_keypair();
  zmqkit::curve_keypair client = zmqkit::generate_keypair(), worker = zmqkit::generate_keypair();
  std::string front_endpoint, back_endpoint;
  std::optional<zmqkit::test::child_process> device;

  explicit secured_queue(std::vector<std::string> extra = {}) {
    std::filesystem::create_directory(dir / "clients");
    std::filesystem::create_directory(dir / "workers");
    zmqkit::save_keypair(frontend, dir / "frontend");
    zmqkit::save_keypair(backend, dir / "backend");
    zmqkit::save_public_key(client.public_key, dir / "clients/client.pub");
    zmqkit::save_public_key(worker.public_key, dir / "workers/worker.pub");
    zmqkit::save_keypair(client, dir / "client");  // each on its own host, in real life
    zmqkit::save_keypair(worker, dir / "worker");
    front_endpoint = "tcp://127.0.0.1:" + std::to_string(zmqkit::test::free_tcp_port());
    back_endpoint = "ipc://" + (dir / "backend.ipc").string();
    std::vector<std::string> argv{
        queue_binary, "--frontend", front_endpoint, "--backend", back_endpoint, "--no-service-ms", "500",
        "--log-level", "warn", "--frontend-curve-secret", (dir / "frontend.key").string(), "--frontend-allow",
        (dir / "clients").string(), "--backend-curve-secret", (dir / "backend.key").string(),
        "--backend-allow", (dir / "workers").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    device.emplace(argv);
  }
};

// A raw worker (READY, heartbeats, echo) on its own thread, counting requests.
class echo_worker {
 public:
  echo_worker(zmq::context_t& ctx, const std::string& endpoint, const zmqkit::socket_options& opts)
      : s_(ctx, zmq::socket_type::dealer) {
    zmqkit::apply(s_, opts);
    s_.set(zmq::sockopt::linger, 0);
    s_.connect(endpoint);
    thread_ = std::thread([this] { run(); });
  }
  ~echo_worker() {
    stop_ = true;
    thread_.join();
  }
  int requests() const { return requests_; }

 private:
  void run() {
    s_.send(zmq::buffer("\x01", 1));  // READY (queued until the handshake completes)
    auto next_heartbeat = std::chrono::steady_clock::now();
    while (!stop_) {
      zmq::pollitem_t item{s_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 50ms);
      std::vector<zmq::message_t> frames;
      if ((item.revents & ZMQ_POLLIN) &&
          zmq::recv_multipart(s_, std::back_inserter(frames), zmq::recv_flags::dontwait) &&
          frames.size() >= 3) {
        ++requests_;
        zmq::send_multipart(s_, frames, zmq::send_flags::dontwait);
      }
      if (std::chrono::steady_clock::now() >= next_heartbeat) {
        s_.send(zmq::buffer("\x02", 1), zmq::send_flags::dontwait);
        next_heartbeat = std::chrono::steady_clock::now() + 300ms;
      }
    }
  }
  zmq::socket_t s_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
};

// One request through the device. Returns: the reply envelope, or nullopt on timeout.
std::optional<zmqkit::envelope> request(zmq::context_t& ctx, const std::string& endpoint,
                                        const zmqkit::socket_options& opts,
                                        std::chrono::milliseconds timeout) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  zmqkit::apply(s, opts);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
  s.connect(endpoint);
  const auto req = zmqkit::make_envelope("echo");
  s.send(zmq::message_t{}, zmq::send_flags::sndmore);
  s.send(zmqkit::encode(req), zmq::send_flags::none);
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(s, std::back_inserter(frames)) || frames.size() != 2) return std::nullopt;
  return zmqkit::decode(frames[1]);
}

struct run_result {
  int exit_code = -1;
  std::string output;
};

run_result run_queue(const std::string& args) {
  run_result r;
  FILE* p = ::popen((queue_binary + " " + args + " 2>&1").c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

TEST_CASE("a garbage flood at a CURVE-protected zmqkit-queue frontend leaves it serving a good client") {
  secured_queue q;
  zmq::context_t ctx;
  echo_worker worker(ctx, q.back_endpoint, client_of(q.worker, q.backend.public_key));
  // Ready: a good request goes through (the device may still be starting: retry within the deadline).
  std::optional<zmqkit::envelope> first;
  REQUIRE(wait_until(
      [&] {
        return (first = request(ctx, q.front_endpoint, client_of(q.client, q.frontend.public_key), 500ms)) &&
               first->type == "echo";
      },
      15s));
  const int before = worker.requests();

  const auto port = zmqkit::test::tcp_port(q.front_endpoint);
  zmqkit::test::flood_stats during;
  std::thread flood([&] { during = zmqkit::test::garbage_flood(port, flood_size(), 8192, 7); });
  const auto t0 = std::chrono::steady_clock::now();
  const auto reply_during = request(ctx, q.front_endpoint, client_of(q.client, q.frontend.public_key), 10s);
  const auto during_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  flood.join();
  const auto after = zmqkit::test::garbage_flood(port, flood_size(), 8192, 8);
  const auto t1 = std::chrono::steady_clock::now();
  const auto reply_after = request(ctx, q.front_endpoint, client_of(q.client, q.frontend.public_key), 10s);
  const auto after_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1);

  REQUIRE(reply_during);
  CHECK(reply_during->type == "echo");
  REQUIRE(reply_after);
  CHECK(reply_after->type == "echo");
  CHECK(worker.requests() == before + 2);  // the garbage delivered nothing to the worker
  CHECK_FALSE(q.device->wait(0ms));        // and the device is still running
  MESSAGE("zmqkit-queue flood: " << during.connections + after.connections << " connections, "
                                 << (during.bytes + after.bytes) / 1024 << " KiB; good request during "
                                 << during_ms.count() << " ms, after " << after_ms.count() << " ms");
}

// The admin stats as name path -> value ("frontend_curve_refused/plaintext").
std::map<std::string, double> admin_stats(zmq::context_t& ctx, const std::string& admin) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, 2000);
  s.connect(admin);
  s.send(zmq::message_t{}, zmq::send_flags::sndmore);
  s.send(zmq::str_buffer("stats"), zmq::send_flags::none);
  std::vector<zmq::message_t> frames;
  std::map<std::string, double> out;
  if (!zmq::recv_multipart(s, std::back_inserter(frames)) || frames.empty()) return out;
  for (const auto& smp : zmqkit::metrics::parse_snapshot(frames.back().to_string_view())) {
    std::string name;
    for (const auto& part : smp.path) name += (name.empty() ? "" : "/") + part;
    out[name] = smp.value;
  }
  return out;
}

TEST_CASE("zmqkit-queue counts refused CURVE handshakes by reason in admin stats and /metrics") {
  zmqkit::test::temp_dir admin_dir;
  const std::string admin = "ipc://" + (admin_dir / "admin.ipc").string();
  const int http_port = zmqkit::test::free_tcp_port();
  secured_queue q({"--admin", admin, "--metrics-http", "127.0.0.1:" + std::to_string(http_port)});
  zmq::context_t ctx;
  REQUIRE(wait_until([&] { return !admin_stats(ctx, admin).empty(); }, 15s));
  const auto stranger = zmqkit::generate_keypair(), impostor = zmqkit::generate_keypair();
  CHECK_FALSE(request(ctx, q.front_endpoint, client_of(stranger, q.frontend.public_key), 500ms));
  {
    // A plaintext peer whose whole greeting arrives: the server sees the mismatch
    // (a libzmq client may hang up before its greeting is complete).
    zmqkit::test::raw_tcp plaintext(zmqkit::test::tcp_port(q.front_endpoint));
    plaintext.write_some(zmqkit::test::zmtp_greeting("NULL"));
    CHECK(plaintext.closed_by_peer_within(5s));
  }
  CHECK_FALSE(request(ctx, q.front_endpoint, client_of(q.client, impostor.public_key), 500ms));
  std::map<std::string, double> st;
  CHECK(wait_until([&] {
    st = admin_stats(ctx, admin);
    return st["frontend_curve_refused/unknown_key"] >= 1 && st["frontend_curve_refused/plaintext"] >= 1 &&
           st["frontend_curve_refused/bad_handshake"] >= 1;
  }, 10s));
  MESSAGE("refused: unknown_key " << st["frontend_curve_refused/unknown_key"] << ", plaintext "
                                  << st["frontend_curve_refused/plaintext"] << ", bad_handshake "
                                  << st["frontend_curve_refused/bad_handshake"]);
  CHECK(st.count("backend_curve_refused/unknown_key") == 1);  // the backend is CURVE too: counted from 0
  CHECK(st["backend_curve_refused/unknown_key"] == 0);
  // The names docs/security.md tells operators to alert on.
  zmqkit::test::child_process curl({"/usr/bin/curl", "-sS", "--max-time", "5", "-o",
                                    (admin_dir / "metrics.txt").string(),
                                    "http://127.0.0.1:" + std::to_string(http_port) + "/metrics"});
  REQUIRE(curl.wait(10s) == std::optional<int>(0));
  std::ifstream in(admin_dir / "metrics.txt");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* reason : {"unknown_key", "plaintext", "bad_handshake"})
    CHECK(text.find(std::string("zmqkit_queue_frontend_curve_refused_total{reason=\"") + reason + "\"}") !=
          std::string::npos);
}

TEST_CASE("zmqkit-queue: unknown keys on either side get nothing delivered") {
  secured_queue q;
  zmq::context_t ctx;
  const auto stranger = zmqkit::generate_keypair();

  SUBCASE("a client key not on the frontend allow-list") {
    echo_worker worker(ctx, q.back_endpoint, client_of(q.worker, q.backend.public_key));
    REQUIRE(wait_until(
        [&] {
          return request(ctx, q.front_endpoint, client_of(q.client, q.frontend.public_key), 500ms)
              .has_value();
        },
        15s));
    const int before = worker.requests();
    CHECK_FALSE(request(ctx, q.front_endpoint, client_of(stranger, q.frontend.public_key), 1000ms));
    CHECK_FALSE(request(ctx, q.front_endpoint, {}, 500ms));  // plaintext
    // A worker's key is for the backend only.
    CHECK_FALSE(request(ctx, q.front_endpoint, client_of(q.worker, q.frontend.public_key), 500ms));
    CHECK(worker.requests() == before);
  }
  SUBCASE("a worker key not on the backend allow-list never receives a request") {
    echo_worker impostor(ctx, q.back_endpoint, client_of(stranger, q.backend.public_key));
    echo_worker client_as_worker(ctx, q.back_endpoint, client_of(q.client, q.backend.public_key));
    // The client is admitted, but no worker registered: the device answers no-service.
    std::optional<zmqkit::envelope> reply;
    REQUIRE(wait_until(
        [&] {
          return (reply = request(ctx, q.front_endpoint, client_of(q.client, q.frontend.public_key), 2000ms))
              .has_value();
        },
        15s));
    CHECK(reply->type == "zmk.error");
    CHECK(reply->headers["zmk.error"] == "no-service");
    CHECK(impostor.requests() == 0);
    CHECK(client_as_worker.requests() == 0);
  }
}

TEST_CASE("zmqkit-queue refuses unusable CURVE flags with a one-line error and exit 2") {
  zmqkit::test::temp_dir dir;
  zmqkit::save_keypair(zmqkit::generate_keypair(), dir / "front");
  const std::string base =
      "--frontend ipc://" + (dir / "f").string() + " --backend ipc://" + (dir / "b").string();

  SUBCASE("an allow-list without a secret key") {
    const auto r = run_queue(base + " --frontend-allow " + dir.path().string());
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("--frontend-allow needs --frontend-curve-secret") != std::string::npos);
  }
  SUBCASE("a missing secret key file") {
    const auto r = run_queue(base + " --backend-curve-secret " + (dir / "absent.key").string());
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("absent.key") != std::string::npos);
  }
  SUBCASE("a secret key file readable by others") {
    std::filesystem::permissions(dir / "front.key", std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
    const auto r = run_queue(base + " --frontend-curve-secret " + (dir / "front.key").string());
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("too open") != std::string::npos);
  }
  SUBCASE("a public key given as the secret") {
    const auto r = run_queue(base + " --frontend-curve-secret " + (dir / "front.pub").string());
    CHECK(r.exit_code == 2);  // 0644: too open for a secret
  }
}

TEST_CASE("reqrep client and worker reach a CURVE zmqkit-queue with key files, as docs/security.md shows") {
  secured_queue q;
  zmq::context_t ctx;
  zmqkit::reqrep::worker_options wopts;
  wopts.socket.security = zmqkit::load_curve_client(q.dir / "worker.key", q.dir / "backend.pub");
  zmqkit::reqrep::worker w(
      ctx, q.back_endpoint,
      [](const zmqkit::envelope& req) { return zmqkit::make_reply(req, "greeting", std::string("hello")); },
      wopts);
  std::jthread loop([&](std::stop_token st) { w.run(st); });

  zmqkit::reqrep::client_options copts{.retry = {.timeout = 1000ms, .retries = 10}};
  copts.socket.security = zmqkit::load_curve_client(q.dir / "client.key", q.dir / "frontend.pub");
  zmqkit::reqrep::client c(ctx, q.front_endpoint, copts);
  const auto r = c.request(zmqkit::make_envelope("greet"));
  REQUIRE(r.ok());
  CHECK(r.reply().type == "greeting");
  CHECK(r.reply().body_as<std::string>() == "hello");
}

TEST_CASE("a refused reqrep client reports the CURVE handshake failure, not a bare timeout") {
  secured_queue q;
  zmq::context_t ctx;
  const auto stranger = zmqkit::generate_keypair();
  const auto client_with = [&](const zmqkit::curve_keypair& me, const std::string& server_key) {
    zmqkit::reqrep::client_options copts{.retry = {.timeout = 300ms, .retries = 2}};
    copts.socket.security = zmqkit::curve_client{
        .public_key = me.public_key, .secret_key = me.secret_key, .server_key = server_key};
    return zmqkit::reqrep::client(ctx, q.front_endpoint, copts);
  };
  // The device is up once an allowed client completes its handshake (no worker needed).
  auto good = client_with(q.client, q.frontend.public_key);
  REQUIRE(wait_until([&] { return good.connected(); }, 15s));
  CHECK_FALSE(good.handshake_failure());

  auto refused = client_with(stranger, q.frontend.public_key);
  const auto r = refused.request(zmqkit::make_envelope("echo"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.failure().code == "timeout");
  CHECK(r.failure().reason.starts_with("CURVE handshake failed: the server does not allow our key"));
  CHECK_FALSE(refused.connected());
  REQUIRE(refused.handshake_failure());
  MESSAGE(r.failure().reason);

  auto lost = client_with(q.client, zmqkit::generate_keypair().public_key);  // the wrong server key
  CHECK(wait_until([&] { return lost.handshake_failure().has_value(); }, 10s));
  CHECK_FALSE(lost.connected());

  // A worker whose key the backend does not allow says so too.
  zmqkit::reqrep::worker_options wopts;
  wopts.socket.security = zmqkit::curve_client{
      .public_key = stranger.public_key, .secret_key = stranger.secret_key, .server_key = q.backend.public_key};
  zmqkit::reqrep::worker w(
      ctx, q.back_endpoint, [](const zmqkit::envelope& req) { return zmqkit::make_reply(req, "x"); }, wopts);
  CHECK(wait_until([&] {
    w.poll(20ms);
    return w.handshake_failure().has_value();
  }, 10s));
  CHECK_FALSE(w.connected());
  CHECK(w.handshake_failure()->starts_with("CURVE handshake failed: "));
}
