// Counter snapshots, their Prometheus rendering, and the /metrics HTTP server
// scraped with curl.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <msgpack.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/metrics.hpp>
#include <zmqkit/metrics_http.hpp>

#include "tool.hpp"

using namespace zmqkit::test;
namespace metrics = zmqkit::metrics;

namespace {

using packer = msgpack::packer<msgpack::sbuffer>;
std::string pack(const std::function<void(packer&)>& fn) {
  msgpack::sbuffer b;
  packer pk(b);
  fn(pk);
  return std::string(b.data(), b.size());
}

std::string device_like_snapshot() {
  return pack([](packer& pk) {
    pk.pack_map(5);
    pk.pack("received");
    pk.pack(12);
    pk.pack("rejected");
    pk.pack(std::map<std::string, int>{{"expired", 2}, {"no-service", 1}});
    pk.pack("pending");
    pk.pack(3);
    pk.pack("pending_by_type");
    pk.pack(std::map<std::string, int>{{"order.\"x\"", 1}, {"(plain)", 2}});
    pk.pack("load");
    pk.pack(0.25);
  });
}

// GETs `url` with curl. Returns: {exit code, body, status code}.
struct http_result {
  int curl_exit;
  std::string body;
  std::string status;
};
http_result curl(const std::string& url) {
  piped_process p({"/usr/bin/curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", url});
  const int code = p.wait(20s).value_or(-1);
  std::string out = p.out();
  const auto nl = out.rfind('\n');
  if (nl == std::string::npos) return {code, out, ""};
  return {code, out.substr(0, nl), out.substr(nl + 1)};
}

}  // namespace

TEST_CASE("a snapshot parses into its numbers, depth first, in map order") {
  auto snap = metrics::parse_snapshot(device_like_snapshot());
  REQUIRE(snap.size() == 7);
  CHECK(snap[0] == metrics::sample{{"received"}, 12});
  CHECK(snap[1] == metrics::sample{{"rejected", "expired"}, 2});
  CHECK(snap[2] == metrics::sample{{"rejected", "no-service"}, 1});
  CHECK(snap[3] == metrics::sample{{"pending"}, 3});
  CHECK(snap[6] == metrics::sample{{"load"}, 0.25});
}

TEST_CASE("a snapshot that is not a map of numbers is refused") {
  const std::string bad[] = {
      pack([](packer& pk) { pk.pack(1); }),
      pack([](packer& pk) {
        pk.pack(std::map<std::string, std::string>{{"a", "b"}});
      }),
      pack([](packer& pk) {
        pk.pack(std::map<int, int>{{1, 2}});
      }),
      pack([](packer& pk) {
        pk.pack(std::map<std::string, std::vector<int>>{{"a", {1}}});
      }),
      pack([](packer& pk) {
        pk.pack(std::map<std::string, std::map<std::string, std::map<std::string, int>>>{
            {"a", {{"b", {{"c", 1}}}}}});
      }),
      pack([](packer& pk) {
        pk.pack(std::map<std::string, int>{{"a", 1}});
      }) + "x",
      "\xc1",
      "",
  };
  for (const auto& b : bad) {
    CHECK_THROWS_AS(metrics::parse_snapshot(b, 2), zmqkit::error);
  }
  CHECK_NOTHROW(metrics::parse_snapshot(bad[4], 3));
}

TEST_CASE("Prometheus text: counters with _total, gauges, labels from nested maps") {
  const auto text = metrics::render_prometheus(metrics::parse_snapshot(device_like_snapshot()),
                                               {.prefix = "zmqkit_queue_",
                                                .label_names = {{"rejected", "code"}},
                                                .gauges = {"pending", "pending_by_type", "load"}});
  CHECK(text ==
        "# HELP zmqkit_queue_received_total received\n"
        "# TYPE zmqkit_queue_received_total counter\n"
        "zmqkit_queue_received_total 12\n"
        "# HELP zmqkit_queue_rejected_total rejected\n"
        "# TYPE zmqkit_queue_rejected_total counter\n"
        "zmqkit_queue_rejected_total{code=\"expired\"} 2\n"
        "zmqkit_queue_rejected_total{code=\"no-service\"} 1\n"
        "# HELP zmqkit_queue_pending pending\n"
        "# TYPE zmqkit_queue_pending gauge\n"
        "zmqkit_queue_pending 3\n"
        "# HELP zmqkit_queue_pending_by_type pending_by_type\n"
        "# TYPE zmqkit_queue_pending_by_type gauge\n"
        "zmqkit_queue_pending_by_type{type=\"(plain)\"} 2\n"
        "zmqkit_queue_pending_by_type{type=\"order.\\\"x\\\"\"} 1\n"
        "# HELP zmqkit_queue_load load\n"
        "# TYPE zmqkit_queue_load gauge\n"
        "zmqkit_queue_load 0.25\n");
}

TEST_CASE("metric names and label values are made safe") {
  CHECK(metrics::sanitize_metric_name("a.b-c 9") == "a_b_c_9");
  CHECK(metrics::sanitize_metric_name("9lives") == "_lives");
  CHECK(metrics::escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
}

TEST_CASE("HOST:PORT addresses") {
  auto a = zmqkit::parse_http_address("127.0.0.1:9102");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 9102);
  CHECK(zmqkit::parse_http_address("[::1]:0").host == "::1");
  for (const char* bad : {"9102", ":9102", "host:", "host:65536", "host:x", "host:-1"})
    CHECK_THROWS_AS(zmqkit::parse_http_address(bad), zmqkit::error);
}

TEST_CASE("the HTTP server serves /metrics to curl, live, and stops synchronously") {
  std::atomic<int> scrapes{0};
  std::optional<zmqkit::metrics_http_server> server;
  server.emplace(zmqkit::metrics_http_options{.host = "127.0.0.1", .port = 0},
                 [&] { return "zmqkit_scrapes_total " + std::to_string(++scrapes) + "\n"; });
  const std::string base = "http://127.0.0.1:" + std::to_string(server->port());
  auto first = curl(base + "/metrics");
  CHECK(first.curl_exit == 0);
  CHECK(first.status == "200");
  CHECK(first.body == "zmqkit_scrapes_total 1\n");
  CHECK(curl(base + "/metrics").body == "zmqkit_scrapes_total 2\n");
  CHECK(curl(base + "/other").status == "404");

  server->stop();
  auto after = curl(base + "/metrics");
  CHECK(after.curl_exit == 7);  // connection refused: nothing listens any more
  server.reset();
  CHECK(scrapes == 2);
}

TEST_CASE("a failing render is a 500, and the server keeps serving") {
  std::atomic<bool> fail{true};
  zmqkit::metrics_http_server server({.port = 0}, [&]() -> std::string {
    if (fail) throw std::runtime_error("snapshot unavailable");
    return "ok 1\n";
  });
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/metrics";
  auto bad = curl(url);
  CHECK(bad.status == "500");
  CHECK(bad.body.find("snapshot unavailable") != std::string::npos);
  fail = false;
  CHECK(curl(url).body == "ok 1\n");
}

TEST_CASE("a port in use is a bad_config error") {
  zmqkit::metrics_http_server first({.port = 0}, [] { return std::string(); });
  try {
    zmqkit::metrics_http_server second({.port = first.port()}, [] { return std::string(); });
    FAIL("bound twice");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == zmqkit::errc::bad_config);
  }
}
