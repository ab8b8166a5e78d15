// `zmqkit pub` and `zmqkit sub` against real PUB/SUB sockets.
#include <doctest/doctest.h>

#include <support/sockets.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>

#include "tool.hpp"

using namespace zmqkit::test;
using zmqkit::envelope;

namespace {

// Publishes `type` as publisher `pub` with sequence number `seq`.
void publish(zmq::socket_t& xpub, const std::string& type, const std::string& pub, std::uint64_t seq) {
  auto env = zmqkit::make_envelope(type, std::map<std::string, std::uint64_t>{{"seq", seq}});
  env.headers["zmk.pub"] = pub;
  env.headers["zmk.seq"] = std::to_string(seq);
  xpub.send(zmq::buffer(type), zmq::send_flags::sndmore);
  xpub.send(zmqkit::encode(env), zmq::send_flags::none);
}

// Waits until the child's subscription reaches our XPUB.
bool await_subscription(zmq::socket_t& xpub, const std::string& prefix) {
  for (;;) {
    zmq::message_t m;
    if (!xpub.recv(m)) return false;
    if (m.size() >= 1 && m.data<char>()[0] == 1 && m.to_string().substr(1) == prefix) return true;
  }
}

}  // namespace

TEST_CASE("pub waits for a subscriber, then publishes [type, envelope] stamped with zmk.pub and zmk.seq") {
  zmq::context_t ctx;
  auto sub = test_socket(ctx, zmq::socket_type::sub, 15s);
  sub.set(zmq::sockopt::subscribe, "course.");
  const auto ep = bind_ephemeral(sub);
  // The child runs while this thread receives: a bound SUB sends its subscription
  // to a new peer only once its owner thread uses the socket.
  piped_process pub({tool, "pub", "-c", ep, "-t", "course.subscribed", "-j", R"({"course":7})", "-n", "3",
                     "--wait-subscribers", "1", "--publisher-id", "tool-1", "--timeout", "15000"});
  for (int seq = 1; seq <= 3; ++seq) {
    std::vector<zmq::message_t> frames;
    REQUIRE(zmq::recv_multipart(sub, std::back_inserter(frames)));
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].to_string() == "course.subscribed");
    auto env = zmqkit::decode(frames[1]);
    CHECK(env.type == "course.subscribed");
    CHECK(env.header("zmk.pub") == "tool-1");
    CHECK(env.header("zmk.seq") == std::to_string(seq));
  }
  CHECK(pub.wait(15s) == 0);
  CHECK(pub.err().empty());
}

TEST_CASE("pub --wait-subscribers times out when no matching subscription arrives") {
  zmq::context_t ctx;
  auto sub = test_socket(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::subscribe, "other.");  // does not match course.*
  const auto ep = bind_ephemeral(sub);
  piped_process pub(
      {tool, "pub", "-c", ep, "-t", "course.subscribed", "--wait-subscribers", "1", "--timeout", "300"});
  zmq::message_t m;
  CHECK(!sub.recv(m));  // keeps the SUB socket serviced while the child waits, in vain
  tool_result r{pub.wait(15s).value_or(-1), pub.out(), pub.err()};
  CHECK(r.code == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("timeout: 0 of 1 subscriptions") != std::string::npos);
}

TEST_CASE("sub tails the types under its prefixes as JSON lines") {
  zmq::context_t ctx;
  auto xpub = test_socket(ctx, zmq::socket_type::xpub, 15s);
  const auto ep = bind_ephemeral(xpub);
  piped_process sub({tool, "sub", "-c", ep, "-s", "course.", "-n", "2", "--timeout", "15000"});
  REQUIRE(await_subscription(xpub, "course."));
  publish(xpub, "order.created", "p", 1);
  publish(xpub, "course.subscribed", "p", 2);
  publish(xpub, "course.cancelled", "p", 3);
  REQUIRE(sub.wait(15s) == 0);
  auto lines = json_lines(sub.out());
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["type"] == "course.subscribed");
  CHECK(lines[0]["body"] == json{{"seq", 2}});
  CHECK(lines[1]["type"] == "course.cancelled");
  // Filtering is not a gap: seq 1 went to nobody, and this subscriber saw p first at 2.
  CHECK(sub.err().empty());
}

TEST_CASE("sub reports sequence gaps per (publisher, type) stream") {
  zmq::context_t ctx;
  auto xpub = test_socket(ctx, zmq::socket_type::xpub, 15s);
  const auto ep = bind_ephemeral(xpub);
  piped_process sub({tool, "sub", "-c", ep, "-n", "9", "--timeout", "15000"});
  REQUIRE(await_subscription(xpub, ""));
  publish(xpub, "a.x", "P1", 1);
  publish(xpub, "a.x", "P2", 7);  // first seen at 7: joined late, not a gap
  publish(xpub, "b.y", "P1", 1);  // another stream of P1: counts on its own
  publish(xpub, "a.x", "P1", 2);
  publish(xpub, "a.x", "P2", 8);
  publish(xpub, "a.x", "P1", 5);   // 3 and 4 lost
  publish(xpub, "a.x", "P2", 10);  // 9 lost
  publish(xpub, "b.y", "P1", 2);
  publish(xpub, "a.x", "P1", 1);  // P1 restarted
  REQUIRE(sub.wait(15s) == 0);
  CHECK(count_lines(sub.out()) == 9);
  const auto err = sub.err();
  CHECK(err.find("gap: publisher P1 type a.x lost seq 3..4 (2 envelopes)") != std::string::npos);
  CHECK(err.find("gap: publisher P2 type a.x lost seq 9 (1 envelope)") != std::string::npos);
  CHECK(err.find("publisher P1 type a.x restarted: seq 1") != std::string::npos);
  CHECK(err.find("9 envelopes received, 3 lost in 2 gaps") != std::string::npos);
  CHECK(err.find("b.y") == std::string::npos);
  CHECK(count_lines(err) == 4);
}

TEST_CASE("pub numbers each type on its own") {
  zmq::context_t ctx;
  auto sub = test_socket(ctx, zmq::socket_type::sub, 15s);
  sub.set(zmq::sockopt::subscribe, "");
  const auto ep = bind_ephemeral(sub);
  piped_process pub({tool, "pub", "-c", ep, "--jsonl", "--wait-subscribers", "1", "--timeout", "15000"});
  pub.write_stdin("{\"type\":\"a.x\"}\n{\"type\":\"b.y\"}\n{\"type\":\"a.x\"}\n");
  pub.close_stdin();
  std::vector<std::string> seen;
  for (int i = 0; i < 3; ++i) {
    std::vector<zmq::message_t> frames;
    REQUIRE(zmq::recv_multipart(sub, std::back_inserter(frames)));
    auto env = zmqkit::decode(frames.at(1));
    seen.push_back(env.type + "#" + std::string(env.header("zmk.seq").value_or("?")));
  }
  CHECK(seen == std::vector<std::string>{"a.x#1", "b.y#1", "a.x#2"});
  CHECK(pub.wait(15s) == 0);
}

TEST_CASE("pub and sub talk to each other") {
  zmq::context_t ctx;
  // pub binds and waits for the subscription of sub, which connects (and retries until pub is up).
  const std::string ep = unused_tcp_endpoint();
  piped_process sub({tool, "sub", "-c", ep, "-s", "news.", "-n", "2", "--body-only", "--timeout", "15000"});
  auto r = run_tool({"pub", "-b", ep, "-t", "news.flash", "-j", R"("extra")", "-n", "2", "--wait-subscribers",
                     "1", "--timeout", "15000"});
  REQUIRE(r.code == 0);
  REQUIRE(sub.wait(15s) == 0);
  CHECK(sub.out() == "\"extra\"\n\"extra\"\n");
  CHECK(sub.err().empty());
}

TEST_CASE("sub only connects") {
  auto r = run_tool({"sub", "-b", "tcp://127.0.0.1:*", "--timeout", "100"});
  CHECK(r.code == 2);
  CHECK(one_line(r.err));
}

TEST_CASE("sub with nothing arriving fails with a timeout") {
  zmq::context_t ctx;
  auto xpub = test_socket(ctx, zmq::socket_type::xpub);
  const auto ep = bind_ephemeral(xpub);
  auto r = run_tool({"sub", "-c", ep, "--timeout", "300"});
  CHECK(r.code == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("timeout: received 0 envelopes") != std::string::npos);
}

TEST_CASE("pub refuses invalid JSON") {
  auto r = run_tool({"pub", "-c", "tcp://127.0.0.1:1", "-t", "a.b", "-j", "[1,,2]"});
  CHECK(r.code == 2);
  CHECK(one_line(r.err));
  CHECK(r.err.find("invalid JSON") != std::string::npos);
}

TEST_CASE("pub -n 5000 without --interval delivers every envelope to a reading subscriber") {
  // Issue 12: a burst beyond the send high-water mark lost its tail, silently, with exit 0.
  zmq::context_t ctx;
  auto sub = test_socket(ctx, zmq::socket_type::sub, 15s);
  sub.set(zmq::sockopt::subscribe, "burst.");
  const auto ep = bind_ephemeral(sub);
  piped_process pub({tool, "pub", "-c", ep, "-t", "burst.tick", "-j", R"({"pad":"0123456789abcdef"})", "-n",
                     "5000", "--wait-subscribers", "1", "--timeout", "15000"});
  std::uint64_t received = 0, expected_seq = 1;
  bool in_order = true;
  for (; received < 5000; ++received) {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(sub, std::back_inserter(frames))) break;  // 15 s of silence
    const auto env = zmqkit::decode(frames.at(1));
    in_order = in_order && env.header("zmk.seq") == std::to_string(expected_seq++);
  }
  CHECK(pub.wait(15s) == 0);
  CHECK(received == 5000);
  CHECK(in_order);
}

namespace {
// Sends [topic, envelope] whose zmk.seq header is `seq_text` verbatim.
void publish_raw(zmq::socket_t& xpub, const std::string& topic, const std::string& type, const std::string& pub,
                 const std::string& seq_text) {
  auto env = zmqkit::make_envelope(type, topic + "/" + type + "#" + seq_text);
  env.headers["zmk.pub"] = pub;
  env.headers["zmk.seq"] = seq_text;
  xpub.send(zmq::buffer(topic), zmq::send_flags::sndmore);
  xpub.send(zmqkit::encode(env), zmq::send_flags::none);
}
}  // namespace

TEST_CASE("sub drops what the library subscriber drops: topic other than the type, malformed zmk.seq") {
  // Issue 12: the tool's own gap detection printed these, read "2abc" as 2 and "0" as 0, and
  // reported false gaps and restarts.
  zmq::context_t ctx;
  auto xpub = test_socket(ctx, zmq::socket_type::xpub, 15s);
  const auto ep = bind_ephemeral(xpub);
  piped_process sub({tool, "sub", "-c", ep, "-s", "a.", "-n", "2", "--body-only", "--timeout", "15000"});
  REQUIRE(await_subscription(xpub, "a."));
  publish_raw(xpub, "a.x", "a.x", "P", "5");
  publish_raw(xpub, "a.x", "a.y", "P", "6");  // topic is not the type
  for (const std::string bad : {"0", "0x9", "2abc", "+2", " 2", "", "-1", "99999999999999999999"})
    publish_raw(xpub, "a.x", "a.x", "P", bad);
  publish_raw(xpub, "a.x", "a.x", "P", "6");
  REQUIRE(sub.wait(15s) == 0);
  CHECK(sub.out() == "\"a.x/a.x#5\"\n\"a.x/a.x#6\"\n");  // only the two well-formed ones, in order
  CHECK(sub.err().find("gap") == std::string::npos);
  CHECK(sub.err().find("restarted") == std::string::npos);
  CHECK(sub.err().find("dropped") != std::string::npos);  // the drops are reported, not silent
}

TEST_CASE("zmqkit pub -n 5000 to zmqkit sub: all 5000 arrive, no gap reported") {
  const std::string ep = unused_tcp_endpoint();
  piped_process sub({tool, "sub", "-c", ep, "-s", "burst.", "-n", "5000", "--body-only", "--timeout", "15000"});
  auto pub = run_tool({"pub", "-b", ep, "-t", "burst.tick", "-j", "1", "-n", "5000", "--wait-subscribers", "1",
                       "--timeout", "15000"},
                      {}, 30s);
  CHECK(pub.code == 0);
  REQUIRE(sub.wait(30s) == 0);
  CHECK(count_lines(sub.out()) == 5000);
  CHECK(sub.err().empty());
}
