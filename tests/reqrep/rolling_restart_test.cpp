// A rolling restart: two zmqkit-queue devices, clients configured with both
// frontends, and one device SIGTERMed (it drains: queued and new requests are
// answered `unavailable`) and started again under load. The clients retry
// `unavailable` on the other device and time-outs by failover: no request fails.
#include <utility>  // support/process.hpp uses std::exchange without including it

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <support/process.hpp>
#include <thread>
#include <unistd.h>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::reqrep;

namespace {

struct device_endpoints {
  std::string front, back, admin;
  explicit device_endpoints(const std::string& name) {
    const std::string stem = "ipc:///tmp/zmqkit-rolling-" + std::to_string(::getpid()) + "-" + name;
    front = stem + "-front";
    back = stem + "-back";
    admin = stem + "-admin";
  }
};

std::unique_ptr<test::child_process> start_device(const device_endpoints& ep) {
  return std::make_unique<test::child_process>(std::vector<std::string>{
      ZMQKIT_QUEUE_BINARY, "--frontend", ep.front, "--backend", ep.back, "--admin", ep.admin,
      "--heartbeat-ms", "100", "--liveness", "3", "--log-level", "warn"});
}

// Returns: whether the device's admin endpoint reports at least `workers` ready workers.
bool has_workers(zmq::context_t& ctx, const device_endpoints& ep, std::size_t workers) {
  zmq::socket_t a = test::test_socket(ctx, zmq::socket_type::req, 200ms);
  a.connect(ep.admin);
  a.send(zmq::buffer(std::string("stats")));
  zmq::message_t reply;
  if (!a.recv(reply)) return false;
  auto h = msgpack::unpack(static_cast<const char*>(reply.data()), reply.size());
  auto m = h.get().as<std::map<std::string, msgpack::object>>();
  return m.count("workers_ready") && m.at("workers_ready").as<std::size_t>() >= workers;
}

}  // namespace

TEST_CASE("rolling restart of one of two queue devices under load: 0 failed requests") {
  zmq::context_t ctx;
  const device_endpoints a("a"), b("b");
  auto device_a = start_device(a);
  auto device_b = start_device(b);

  std::atomic<std::uint64_t> executions{0};
  const handler work = [&](const envelope& req) {
    ++executions;
    std::this_thread::sleep_for(1ms);  // the work itself
    return make_reply(req, "job.done");
  };
  const worker_options wopts{.heartbeat_interval = 100ms, .reconnect_initial = 100ms, .reconnect_max = 400ms};
  std::vector<std::unique_ptr<worker>> workers;
  for (const auto* ep : {&a, &a, &b, &b}) workers.push_back(std::make_unique<worker>(ctx, ep->back, work, wopts));
  std::vector<std::jthread> worker_loops;
  for (auto& w : workers) worker_loops.emplace_back([&w](std::stop_token st) { w->run(st); });
  REQUIRE(test::wait_until([&] { return has_workers(ctx, a, 2) && has_workers(ctx, b, 2); }, 10000ms));

  constexpr int clients = 4;
  constexpr int per_client = 600;
  constexpr std::size_t window = 8;
  std::atomic<int> completed{0};
  std::mutex mu;
  std::map<std::string, int> failures;  // by code
  std::uint64_t error_retries = 0;
  std::vector<std::thread> client_threads;
  for (int i = 0; i < clients; ++i)
    client_threads.emplace_back([&, i] {
      // Half the clients start on a, half on b; every one knows both.
      std::vector<std::string> eps = i % 2 ? std::vector{b.front, a.front} : std::vector{a.front, b.front};
      client c(ctx, eps, {.retry = {.timeout = 500ms, .retries = 5}});
      int sent = 0, done = 0;
      while (done < per_client) {
        while (sent < per_client && c.in_flight() < window) {
          c.send(make_envelope("job"));
          ++sent;
        }
        if (auto d = c.poll(50ms)) {
          ++done;
          ++completed;
          if (!d->outcome.ok()) {
            std::lock_guard lock(mu);
            ++failures[d->outcome.failure().code];
          }
        }
      }
      std::lock_guard lock(mu);
      error_retries += c.stats().error_retries;
    });

  // Under load: drain a (SIGTERM), let it exit, start it again.
  REQUIRE(test::wait_until([&] { return completed >= clients * per_client / 4; }, 30000ms));
  device_a->signal(SIGTERM);
  const auto status = device_a->wait(5000ms);
  CHECK_MESSAGE(status.has_value(), "device a did not exit after SIGTERM");
  if (status) CHECK(WIFEXITED(*status));
  const int at_restart = completed;
  device_a = start_device(a);
  CHECK(test::wait_until([&] { return has_workers(ctx, a, 2); }, 10000ms));  // its workers come back

  for (auto& t : client_threads) t.join();
  CAPTURE(at_restart);
  CAPTURE(executions.load());
  CAPTURE(error_retries);
  std::string failed;
  for (const auto& [code, n] : failures) failed += code + "=" + std::to_string(n) + " ";
  CAPTURE(failed);
  CHECK(at_restart < clients * per_client);  // the restart happened under load
  CHECK(failures.empty());
}
