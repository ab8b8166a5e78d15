// Fault injection against the real zmqkit-queue binary with worker processes
// (queue_fault_worker) and retrying clients: workers SIGKILLed every 200 ms,
// a worker SIGSTOPped, the device SIGKILLed and restarted mid-load.
// Small by default; ZMQKIT_FULL=1 runs the full sizes.
#include <utility>  // support/process.hpp uses std::exchange without including it

// clang-format off
#include "fault_support.hpp"
#include <support/process.hpp>
#include <support/sockets.hpp>
// clang-format on

#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <msgpack.hpp>
#include <random>

using namespace zmqkit;
using namespace zmqkit::test;
using namespace std::chrono_literals;

namespace {

struct endpoints {
  std::string front, back, admin;
  explicit endpoints(const std::string& name)
      : front("ipc://" + temp_path(name + "-front")),
        back("ipc://" + temp_path(name + "-back")),
        admin("ipc://" + temp_path(name + "-admin")) {}
};

std::unique_ptr<child_process> start_device(const endpoints& ep, int heartbeat_ms) {
  return std::make_unique<child_process>(std::vector<std::string>{
      ZMQKIT_QUEUE_BINARY, "--frontend", ep.front, "--backend", ep.back, "--admin", ep.admin,
      "--heartbeat-ms", std::to_string(heartbeat_ms), "--liveness", "3", "--log-level", "warn"});
}

std::unique_ptr<child_process> start_worker(const endpoints& ep, const std::string& log, int heartbeat_ms,
                                            int delay_us, unsigned capacity = 1) {
  return std::make_unique<child_process>(
      std::vector<std::string>{ZMQKIT_QUEUE_FAULT_WORKER, ep.back, log, std::to_string(heartbeat_ms), "3",
                               std::to_string(delay_us), std::to_string(capacity)});
}

// Returns: one counter from the admin endpoint (-1 when it does not answer).
long long admin_counter(zmq::context_t& ctx, const std::string& endpoint, const std::string& name) {
  zmq::socket_t a = test_socket(ctx, zmq::socket_type::req, 500ms);
  a.connect(endpoint);
  a.send(zmq::buffer(std::string("stats")));
  zmq::message_t reply;
  if (!a.recv(reply)) return -1;
  auto h = msgpack::unpack(static_cast<const char*>(reply.data()), reply.size());
  auto m = h.get().as<std::map<std::string, msgpack::object>>();
  return m.count(name) ? m.at(name).as<long long>() : -1;
}

std::size_t count_lines(const std::string& path) {
  std::size_t n = 0;
  for (const auto& [id, pids] : read_executions(path)) n += pids.size();
  return n;
}

std::size_t count_pid(const std::string& path, pid_t pid) {
  std::size_t n = 0;
  const std::string p = std::to_string(pid);
  for (const auto& [id, pids] : read_executions(path))
    for (const auto& x : pids) n += x == p;
  return n;
}

}  // namespace

TEST_CASE("a random worker SIGKILLed every 200 ms: every request answered or failed, none executed twice") {
  const bool full = full_run();
  const std::size_t requests = full ? 100000 : 5000;
  const int delay_us = full ? 100 : 1000;
  // Workers of capacity 8 hold several requests each: a kill requeues them all.
  unsigned capacity = 1;
  SUBCASE("workers of capacity 1 (Paranoid Pirate)") { capacity = 1; }
  SUBCASE("workers of capacity 8") { capacity = 8; }
  const endpoints ep("kill" + std::to_string(capacity));
  const std::string log = temp_path("kill-executions");
  std::remove(log.c_str());
  auto device = start_device(ep, 200);
  std::vector<std::unique_ptr<child_process>> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(start_worker(ep, log, 200, delay_us, capacity));
  zmq::context_t ctx;
  REQUIRE(wait_until([&] { return admin_counter(ctx, ep.admin, "workers_ready") == 4; }));

  std::set<std::string> killed;
  std::atomic<bool> clients_done{false};
  std::thread killer([&] {
    std::mt19937 rng(42);
    auto next = std::chrono::steady_clock::now();
    while (!clients_done) {
      next += 200ms;  // the kill cadence under test, not a wait for an event
      std::this_thread::sleep_until(next);
      auto& victim = workers[rng() % workers.size()];
      killed.insert(std::to_string(victim->pid()));
      victim->signal(SIGKILL);
      victim->wait(5000ms);
      victim = start_worker(ep, log, 200, delay_us, capacity);
    }
  });
  const auto started = std::chrono::steady_clock::now();
  const client_result res = run_clients(ctx, ep.front, 4, requests, 25, 400ms, 60s);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  clients_done = true;
  killer.join();

  // Twice, by cause. A second 'S' or 'D' record whose earlier worker lived
  // would be the device delivering one request twice: must be 0. When the
  // earlier worker was killed, it died holding the request (or before its sent
  // reply left its socket buffer), so the device requeued it: at-least-once.
  std::size_t twice_alive = 0, started_again_after_kill = 0, completed_again_after_kill = 0;
  for (const char kind : {'S', 'D'})
    for (const auto& [id, pids] : read_executions(log, kind))
      for (std::size_t i = 0; i + 1 < pids.size(); ++i)
        (killed.count(pids[i]) ? (kind == 'S' ? started_again_after_kill : completed_again_after_kill)
                               : twice_alive)++;
  const long long requeued = admin_counter(ctx, ep.admin, "requeued");
  const long long suppressed = admin_counter(ctx, ep.admin, "duplicates_suppressed");
  std::printf(
      "[fault] kill a worker (capacity %u) every 200 ms: %zu requests in %.1f s, %zu workers killed; %s; "
      "device requeued %lld, duplicates suppressed %lld; executed twice while the first worker lived %zu; "
      "because the first worker was killed: started again %zu, completed again %zu (its reply died with "
      "it)\n",
      capacity, requests, seconds, killed.size(), describe(res).c_str(), requeued, suppressed, twice_alive,
      started_again_after_kill, completed_again_after_kill);
  CHECK(res.lost == 0);
  std::size_t failed = 0;
  for (const auto& [code, n] : res.failed) failed += n;
  CHECK(res.ok + failed == requests);
  CHECK(twice_alive == 0);
  CHECK(killed.size() >= 3);
  device->signal(SIGTERM);
  CHECK(device->wait(5000ms));
  std::remove(log.c_str());
}

TEST_CASE("a SIGSTOPped worker is evicted within liveness x heartbeat and gets nothing afterwards") {
  const int heartbeat_ms = 100;
  const endpoints ep("stop");
  const std::string log = temp_path("stop-executions");
  std::remove(log.c_str());
  auto device = start_device(ep, heartbeat_ms);
  auto a = start_worker(ep, log, heartbeat_ms, 1000);
  auto b = start_worker(ep, log, heartbeat_ms, 1000);
  zmq::context_t ctx;
  REQUIRE(wait_until([&] { return admin_counter(ctx, ep.admin, "workers_ready") == 2; }));

  client_result res;
  std::thread clients(
      [&] { res = run_clients(ctx, ep.front, 2, full_run() ? 20000 : 1000, 4, 2000ms, 30s); });
  REQUIRE(wait_until([&] { return count_pid(log, a->pid()) >= 5; }));
  a->signal(SIGSTOP);
  const auto stopped = std::chrono::steady_clock::now();
  REQUIRE(wait_until([&] {
    return admin_counter(ctx, ep.admin, "workers_ready") + admin_counter(ctx, ep.admin, "workers_busy") == 1;
  }));
  const auto evicted_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - stopped).count();
  const std::size_t a_at_eviction = count_pid(log, a->pid());
  clients.join();
  const std::size_t b_total = count_pid(log, b->pid());
  a->signal(SIGCONT);  // it may now read what was already in its socket, and nothing else arrives
  wait_until([] { return false; }, 500ms);
  const std::size_t a_after = count_pid(log, a->pid());
  std::printf(
      "[fault] SIGSTOP: evicted after %.0f ms (limit %d ms = liveness 3 x %d ms); stopped worker received "
      "%zu "
      "before, %zu after eviction (<= 1: the one it held); other worker %zu; %s\n",
      evicted_ms, 3 * heartbeat_ms, heartbeat_ms, a_at_eviction, a_after - a_at_eviction, b_total,
      describe(res).c_str());
  CHECK(evicted_ms <= 3 * heartbeat_ms + 100);  // + one admin round trip and a device tick
  CHECK(a_after - a_at_eviction <= 1);
  CHECK(res.lost == 0);
  CHECK(res.failed.empty());
  device->signal(SIGTERM);
  CHECK(device->wait(5000ms));
  std::remove(log.c_str());
}

TEST_CASE("the device SIGKILLed and restarted mid-load: retries and re-READY recover, nothing lost") {
  const bool full = full_run();
  const std::size_t requests = full ? 20000 : 2000;
  const endpoints ep("restart");
  const std::string log = temp_path("restart-executions");
  std::remove(log.c_str());
  auto device = start_device(ep, 200);
  std::vector<std::unique_ptr<child_process>> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(start_worker(ep, log, 200, 500));
  zmq::context_t ctx;
  REQUIRE(wait_until([&] { return admin_counter(ctx, ep.admin, "workers_ready") == 4; }));

  client_result res;
  const auto started = std::chrono::steady_clock::now();
  std::thread clients([&] { res = run_clients(ctx, ep.front, 4, requests, 10, 500ms, 60s); });
  REQUIRE(wait_until([&] { return count_lines(log) >= requests / 3; }, 30s));
  device->signal(SIGKILL);
  device->wait(5000ms);
  const auto killed_at = std::chrono::steady_clock::now();
  device = start_device(ep, 200);
  REQUIRE(wait_until([&] { return admin_counter(ctx, ep.admin, "workers_ready") >= 1; }, 10s));
  const auto recovered_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed_at).count();
  clients.join();
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  std::size_t reexecuted = 0;
  for (const auto& [id, pids] : read_executions(log, 'D')) reexecuted += pids.size() - 1;
  std::printf(
      "[fault] device SIGKILLed after %zu of %zu requests and restarted: first worker READY again after %.0f "
      "ms; "
      "%s; total %.1f s; completed again after the restart (reply lost with the device) %zu\n",
      requests / 3, requests, recovered_ms, describe(res).c_str(), seconds, reexecuted);
  CHECK(res.lost == 0);
  CHECK(res.ok == requests);
  device->signal(SIGTERM);
  CHECK(device->wait(5000ms));
  std::remove(log.c_str());
}
