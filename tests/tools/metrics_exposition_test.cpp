// The /metrics expositions of zmqkit-queue and zmqkit-forwarder, checked by
// Prometheus' own linter (`promtool check metrics`) and for the type of each metric.
#include <doctest/doctest.h>

#include <msgpack.hpp>
#include <support/sockets.hpp>
#include <zmq_addon.hpp>

#include "programs.hpp"

using namespace zmqkit::test;

namespace {

// A Paranoid Pirate worker of the given capacity (READY map form); says nothing more.
zmq::socket_t ready_worker(zmq::context_t& ctx, const std::string& backend, std::uint64_t capacity) {
  auto s = test_socket(ctx, zmq::socket_type::dealer);
  s.connect(backend);
  msgpack::sbuffer map;
  msgpack::packer<msgpack::sbuffer> pk(map);
  pk.pack_map(1);
  pk.pack(std::string_view("capacity"));
  pk.pack(capacity);
  std::array<zmq::const_buffer, 2> ready{zmq::buffer(std::string_view("\x01", 1)), zmq::buffer(map.data(), map.size())};
  REQUIRE(zmq::send_multipart(s, ready));
  return s;
}

std::string metric_type(const std::string& exposition, const std::string& name) {
  std::smatch m;
  if (std::regex_search(exposition, m, std::regex("# TYPE " + name + " (\\w+)\n"))) return m[1];
  return "";
}

}  // namespace

TEST_CASE("zmqkit-queue's worker capacity is a gauge, and its exposition passes promtool") {
  // Issue 12: zmqkit_queue_worker_capacity_total was a counter that went down (4 -> 0).
  // A patient device (20 missed heartbeats of 200 ms), so the worker below need not heartbeat.
  queue_process queue({"--no-service-ms", "100", "--liveness", "20"});
  zmq::context_t ctx;
  std::string body;
  {
    auto worker = ready_worker(ctx, queue.backend, 4);
    REQUIRE(wait_until([&] { return has_line(body = scrape(queue.metrics_port).body, "zmqkit_queue_worker_capacity 4"); },
                       10s));
    CHECK(metric_type(body, "zmqkit_queue_worker_capacity") == "gauge");
    // A rejected request, so that a labelled counter family is in the exposition too.
    REQUIRE(run_tool({"request", "-c", queue.frontend, "-t", "nobody.serves", "--timeout", "5000"}).code == 3);
    body = scrape(queue.metrics_port).body;
    const auto lint = promtool_check(body);
    CHECK_MESSAGE(lint.code == 0, (lint.out + lint.err + "\n" + body));
  }
  // The silent worker dies (missed heartbeats): its capacity leaves, the gauge goes down.
  CHECK(wait_until([&] { return has_line(scrape(queue.metrics_port).body, "zmqkit_queue_worker_capacity 0"); },
                   10s));
  // Every metric's type: gauges for levels, counters (named _total) for what only grows.
  body = scrape(queue.metrics_port).body;
  for (const char* gauge : {"pending", "pending_by_priority", "in_flight", "workers_ready", "workers_busy",
                            "worker_capacity", "reply_cache_size"})
    CHECK_MESSAGE(metric_type(body, std::string("zmqkit_queue_") + gauge) == "gauge", gauge);
  for (const char* counter : {"received", "routed", "replied", "expired", "requeued", "dead_lettered",
                              "duplicates_suppressed", "answered_from_cache", "rejected"})
    CHECK_MESSAGE(metric_type(body, std::string("zmqkit_queue_") + counter + "_total") == "counter", counter);
  const auto lint = promtool_check(body);
  CHECK_MESSAGE(lint.code == 0, (lint.out + lint.err));
}

TEST_CASE("zmqkit-forwarder --metrics-http serves counters that pass promtool") {
  piped_process fwd({ZMQKIT_FORWARDER_BINARY, "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                     "--metrics-http", "127.0.0.1:0"});
  REQUIRE(fwd.wait_for_stdout([](const std::string& out) { return out.find("/metrics\n") != std::string::npos; }));
  std::smatch m;
  const std::string out = fwd.out();
  REQUIRE(std::regex_search(out, m, std::regex(R"(metrics http://127\.0\.0\.1:(\d+)/metrics)")));
  const auto got = scrape(std::stoi(m[1]));
  REQUIRE(got.curl_exit == 0);
  CHECK(has_line(got.body, "# TYPE zmqkit_forwarder_messages_total counter"));
  CHECK(has_line(got.body, "zmqkit_forwarder_messages_total 0"));
  const auto lint = promtool_check(got.body);
  CHECK_MESSAGE(lint.code == 0, (lint.out + lint.err + "\n" + got.body));
  fwd.signal(SIGTERM);
  CHECK(fwd.wait(15s) == 0);
}
