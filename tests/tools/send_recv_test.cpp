// `zmqkit send` and `zmqkit recv` against real PUSH/PULL sockets.
#include <doctest/doctest.h>

#include <regex>
#include <set>
#include <support/sockets.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/pipeline/worker.hpp>

#include "tool.hpp"

using namespace zmqkit::test;
using zmqkit::envelope;

namespace {

std::vector<envelope> receive(zmq::socket_t& pull, int n) {
  std::vector<envelope> out;
  for (int i = 0; i < n; ++i) {
    zmq::message_t m;
    if (!pull.recv(m)) break;
    out.push_back(zmqkit::decode(m));
  }
  return out;
}

const std::regex rfc3339_ns(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z)");

}  // namespace

TEST_CASE("send pushes the described envelope --count times, each with its own id") {
  zmq::context_t ctx;
  auto pull = test_socket(ctx, zmq::socket_type::pull, 10s);
  const auto ep = bind_ephemeral(pull);
  auto r = run_tool({"send", "-c", ep, "-t", "order.created", "-p", "7", "--ttl", "1500", "-H", "tenant=acme",
                     "-j", R"({"sku":"book","qty":2,"tags":["a",null,true],"price":9.5})", "-n", "2"});
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());
  auto got = receive(pull, 2);
  REQUIRE(got.size() == 2);
  for (const auto& env : got) {
    CHECK(env.type == "order.created");
    CHECK(env.priority == 7);
    CHECK(env.ttl == 1500ms);
    CHECK(env.headers.at("tenant") == "acme");
    CHECK(!env.correlation_id);
    // The body is msgpack: a map in the JSON's order.
    auto handle = msgpack::unpack(env.body.data(), env.body.size());
    auto body = handle.get().as<std::map<std::string, msgpack::object>>();
    CHECK(body.at("sku").as<std::string>() == "book");
    CHECK(body.at("qty").as<int>() == 2);
    CHECK(body.at("price").as<double>() == 9.5);
    CHECK(body.at("tags").type == msgpack::type::ARRAY);
  }
  CHECK(got[0].id != got[1].id);
}

TEST_CASE("send takes a raw body from stdin, byte for byte") {
  zmq::context_t ctx;
  auto pull = test_socket(ctx, zmq::socket_type::pull, 10s);
  const auto ep = bind_ephemeral(pull);
  const std::string raw("\x00\x01\xff not msgpack\n", 16);
  auto r = run_tool({"send", "-c", ep, "-t", "blob.raw", "-r", "-"}, raw);
  REQUIRE(r.code == 0);
  auto got = receive(pull, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].body == raw);
}

TEST_CASE("send --jsonl sends one envelope per stdin line, keeping the ids it is given") {
  zmq::context_t ctx;
  auto pull = test_socket(ctx, zmq::socket_type::pull, 10s);
  const auto ep = bind_ephemeral(pull);
  const auto id = zmqkit::message_id::generate();
  const std::string input = R"({"type":"a.one","id":")" + id.to_string() + R"(","body":{"n":1}})" + "\n\n" +
                            R"({"type":"a.two","priority":9,"headers":{"k":"v"},"body":{"base64":"AAE="}})" +
                            "\n";
  auto r = run_tool({"send", "-c", ep, "--jsonl"}, input);
  REQUIRE(r.code == 0);
  auto got = receive(pull, 2);
  REQUIRE(got.size() == 2);
  CHECK(got[0].type == "a.one");
  CHECK(got[0].id == id);
  CHECK(got[1].type == "a.two");
  CHECK(got[1].priority == 9);
  CHECK(got[1].headers.at("k") == "v");
  CHECK(got[1].body == std::string("\x00\x01", 2));
}

TEST_CASE("recv prints each envelope as one JSON line") {
  zmq::context_t ctx;
  auto push = test_socket(ctx, zmq::socket_type::push, 15s);  // until the child has connected
  const auto ep = bind_ephemeral(push);
  piped_process recv({tool, "recv", "-c", ep, "-n", "2", "--timeout", "15000"});

  auto first = zmqkit::make_envelope("course.subscribed", std::map<std::string, int>{{"course", 42}});
  first.priority = 2;
  first.ttl = 250ms;
  first.headers["zmk.attempt"] = "1";
  first.correlation_id = zmqkit::message_id::generate();
  auto second = zmqkit::make_envelope("blob.raw");
  second.body = std::string("\xc1 never msgpack", 15);
  REQUIRE(push.send(zmqkit::encode(first), zmq::send_flags::none));
  REQUIRE(push.send(zmqkit::encode(second), zmq::send_flags::none));

  REQUIRE(recv.wait(15s) == 0);
  auto lines = json_lines(recv.out());
  REQUIRE(lines.size() == 2);
  const auto& j = lines[0];
  CHECK(j["type"] == "course.subscribed");
  CHECK(j["priority"] == 2);
  CHECK(j["ttl_ms"] == 250);
  CHECK(j["id"] == first.id.to_string());
  CHECK(j["correlation_id"] == first.correlation_id->to_string());
  CHECK(j["headers"]["zmk.attempt"] == "1");
  CHECK(j["body"] == json{{"course", 42}});
  CHECK(std::regex_match(j["timestamp"].get<std::string>(), rfc3339_ns));
  CHECK(lines[1]["correlation_id"].is_null());
  CHECK(lines[1]["body"] == json{{"base64", "wSBuZXZlciBtc2dwYWNr"}});
}

TEST_CASE("recv --body-only prints just the bodies") {
  zmq::context_t ctx;
  auto push = test_socket(ctx, zmq::socket_type::push, 15s);
  const auto ep = bind_ephemeral(push);
  piped_process recv({tool, "recv", "-c", ep, "-n", "1", "--body-only", "--timeout", "15000"});
  REQUIRE(push.send(zmqkit::encode(zmqkit::make_envelope("x.y", std::vector<int>{1, 2, 3})),
                    zmq::send_flags::none));
  REQUIRE(recv.wait(15s) == 0);
  CHECK(recv.out() == "[1,2,3]\n");
}

TEST_CASE("recv reports a bad frame on stderr and keeps receiving") {
  zmq::context_t ctx;
  auto push = test_socket(ctx, zmq::socket_type::push, 15s);
  const auto ep = bind_ephemeral(push);
  piped_process recv({tool, "recv", "-c", ep, "-n", "1", "--timeout", "15000"});
  REQUIRE(push.send(zmq::str_buffer("\x93\x01\x02"), zmq::send_flags::none));  // an array, but no envelope
  REQUIRE(push.send(zmqkit::encode(zmqkit::make_envelope("ok.fine")), zmq::send_flags::none));
  REQUIRE(recv.wait(15s) == 0);
  CHECK(json_lines(recv.out()).at(0)["type"] == "ok.fine");
  CHECK(recv.err().find("bad frame") != std::string::npos);
}

TEST_CASE("recv and send pass envelopes through each other unchanged") {
  zmq::context_t ctx;
  auto pull = test_socket(ctx, zmq::socket_type::pull, 10s);
  const auto out_ep = bind_ephemeral(pull);
  auto push = test_socket(ctx, zmq::socket_type::push, 15s);
  const auto in_ep = bind_ephemeral(push);
  piped_process recv({tool, "recv", "-c", in_ep, "-n", "1", "--timeout", "15000"});
  auto original = zmqkit::make_envelope("round.trip", std::map<std::string, double>{{"pi", 3.25}});
  original.headers["h"] = "v";
  original.ttl = 60000ms;
  REQUIRE(push.send(zmqkit::encode(original), zmq::send_flags::none));
  REQUIRE(recv.wait(15s) == 0);
  auto r = run_tool({"send", "-c", out_ep, "--jsonl"}, recv.out());
  REQUIRE(r.code == 0);
  auto got = receive(pull, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == original);  // id, timestamp to the nanosecond, headers, body
}

TEST_CASE("send to an unreachable endpoint fails with a timeout") {
  zmq::context_t ctx;
  const auto ep = unused_tcp_endpoint();
  const auto start = std::chrono::steady_clock::now();
  auto r = run_tool({"send", "-c", ep, "-t", "a.b", "-j", "{}", "--timeout", "300"});
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.code == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("timeout") != std::string::npos);
  CHECK(r.err.find(ep) != std::string::npos);
  CHECK(took >= 300ms);
}

TEST_CASE("recv with nothing arriving fails with a timeout") {
  zmq::context_t ctx;
  const auto ep = unused_tcp_endpoint();
  auto r = run_tool({"recv", "-c", ep, "-n", "1", "--timeout", "300"});
  CHECK(r.code == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("timeout: received 0 of 1") != std::string::npos);
}

TEST_CASE("invalid JSON input is one line and exit 2") {
  SUBCASE("--json") {
    auto r = run_tool({"send", "-c", "tcp://127.0.0.1:1", "-t", "a.b", "-j", "{\"sku\": }"});
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find("invalid JSON in --json") != std::string::npos);
  }
  SUBCASE("--json @- from stdin") {
    auto r = run_tool({"send", "-c", "tcp://127.0.0.1:1", "-t", "a.b", "-j", "@-"}, "[1, 2,");
    CHECK(r.code == 2);
    CHECK(r.err.find("invalid JSON in stdin") != std::string::npos);
  }
  SUBCASE("--jsonl line") {
    zmq::context_t ctx;
    auto pull = test_socket(ctx, zmq::socket_type::pull, 10s);
    const auto ep = bind_ephemeral(pull);
    auto r = run_tool({"send", "-c", ep, "--jsonl"}, "{\"type\":\"a.b\"}\nnot json\n");
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find("stdin line 2") != std::string::npos);
    CHECK(receive(pull, 1).size() == 1);  // the good first line went out
  }
  SUBCASE("--jsonl envelope without a type") {
    auto r = run_tool({"send", "-c", "tcp://127.0.0.1:1", "--jsonl"}, "{\"body\":1}\n");
    CHECK(r.code == 2);
    CHECK(r.err.find("'type'") != std::string::npos);
  }
}

TEST_CASE("send --ventilator feeds a credit-based pipeline worker") {
  // Issue 12: send was only a PUSH, which a pipeline worker (a DEALER granting credit) cannot take
  // tasks from, although the README said "push envelopes into a pipeline".
  zmq::context_t ctx;
  const std::string ep = unused_tcp_endpoint();
  piped_process send({tool, "send", "--ventilator", "-b", ep, "-t", "thumb.make", "-j", "7", "-n", "20",
                      "--timeout", "15000"});
  zmqkit::pipeline::worker worker(ctx, ep, "", {.credit = 2});
  std::set<std::string> ids;
  while (ids.size() < 20) {
    auto task = worker.receive(15s);
    if (!task) break;
    CHECK(task->type == "thumb.make");
    ids.insert(task->id.to_string());
  }
  CHECK(ids.size() == 20);
  CHECK(send.wait(15s) == 0);
  CHECK(send.err().empty());
}

TEST_CASE("send --ventilator with no worker granting credit fails with a timeout") {
  auto r = run_tool({"send", "--ventilator", "-b", "tcp://127.0.0.1:*", "-t", "a.b", "--timeout", "300"});
  CHECK(r.code == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("no worker") != std::string::npos);
}
