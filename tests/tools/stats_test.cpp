// `zmqkit stats` against a fake admin endpoint: [empty, "stats"] in,
// [empty, msgpack map] out, the map changing with each query.
#include <doctest/doctest.h>

#include <regex>

#include "fake_peers.hpp"
#include "tool.hpp"

using namespace zmqkit::test;

namespace {

std::string snapshot(int n) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(5);
  pk.pack("received");
  pk.pack(n);
  pk.pack("routed");
  pk.pack(2 * n);
  pk.pack("rejected");
  pk.pack(std::map<std::string, int>{{"expired", 1}, {"no-service", 4}});
  pk.pack("pending_by_priority");
  pk.pack(std::map<std::string, int>{{"4", 3}, {"9", 1}});
  pk.pack("workers_ready");
  pk.pack(2);
  return std::string(buf.data(), buf.size());
}

router_peer::answer_fn admin() {
  auto queries = std::make_shared<int>(0);
  return [queries](const std::vector<std::string>& body) {
    if (body.size() != 2 || !body[0].empty() || body[1] != "stats") return std::vector<std::string>{};
    return std::vector<std::string>{"", snapshot(++*queries)};
  };
}

}  // namespace

TEST_CASE("stats prints the counters as a table, nested maps indented") {
  zmq::context_t ctx;
  router_peer peer(ctx, admin());
  auto r = run_tool({"stats", "-c", peer.endpoint()});
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());
  const std::regex row_received(R"((^|\n)received +1\n)");
  const std::regex row_expired(R"(\nrejected\n  expired +1\n  no-service +4\n)");
  const std::regex row_priority(R"(\npending_by_priority\n  4 +3\n  9 +1\nworkers_ready +2\n$)");
  CHECK(std::regex_search(r.out, row_received));
  CHECK(std::regex_search(r.out, row_expired));
  CHECK(std::regex_search(r.out, row_priority));
}

TEST_CASE("stats --json prints the map as one JSON object, in the device's order") {
  zmq::context_t ctx;
  router_peer peer(ctx, admin());
  auto r = run_tool({"stats", "-c", peer.endpoint(), "--json"});
  REQUIRE(r.code == 0);
  auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].dump() == R"({"received":1,"routed":2,"rejected":{"expired":1,"no-service":4},)"
                           R"("pending_by_priority":{"4":3,"9":1},"workers_ready":2})");
}

TEST_CASE("stats --watch refreshes every N seconds") {
  zmq::context_t ctx;
  router_peer peer(ctx, admin());
  SUBCASE("as JSON lines") {
    auto r = run_tool({"stats", "-c", peer.endpoint(), "--json", "--watch", "0.1", "--count", "3"});
    REQUIRE(r.code == 0);
    auto lines = json_lines(r.out);
    REQUIRE(lines.size() == 3);
    for (int i = 0; i < 3; ++i) CHECK(lines[i]["received"] == i + 1);
  }
  SUBCASE("as tables, each under a timestamp") {
    auto r = run_tool({"stats", "-c", peer.endpoint(), "--watch", "0.1", "--count", "2"});
    REQUIRE(r.code == 0);
    CHECK(std::regex_search(r.out, std::regex(R"(^# \d{4}-\d{2}-\d{2}T[^\n]+Z\nreceived +1\n)")));
    CHECK(std::regex_search(r.out, std::regex(R"(\n\n# [^\n]+\nreceived +2\n)")));
  }
  SUBCASE("until interrupted") {
    piped_process p({tool, "stats", "-c", peer.endpoint(), "--json", "--watch", "0.05"});
    REQUIRE(p.wait_for_stdout([](const std::string& out) { return count_lines(out) >= 2; }));
    p.signal(SIGINT);
    CHECK(p.wait(10s) == 0);
  }
}

TEST_CASE("stats against an unreachable admin endpoint fails with a timeout") {
  zmq::context_t ctx;
  const std::string ep = unused_tcp_endpoint();
  auto r = run_tool({"stats", "-c", ep, "--timeout", "300"});
  CHECK(r.code == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("timeout: no answer within 300 ms") != std::string::npos);
  CHECK(r.out.empty());
}

TEST_CASE("stats reports an answer that is not a msgpack map") {
  zmq::context_t ctx;
  router_peer peer(ctx, [](const std::vector<std::string>&) {
    return std::vector<std::string>{"", "hello"};
  });
  auto r = run_tool({"stats", "-c", peer.endpoint(), "--timeout", "300"});
  CHECK(r.code == 1);
  CHECK(r.err.find("not [empty, msgpack map]") != std::string::npos);
  CHECK(r.err.find("timeout") != std::string::npos);
}
