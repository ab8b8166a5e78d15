// Gap detection per publisher, driven by a raw PUB socket so that the exact
// sequence numbers on the wire are chosen by the test.
#include <doctest/doctest.h>

#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

struct fixture {
  zmq::context_t ctx;
  zmq::socket_t raw = test::test_socket(ctx, zmq::socket_type::pub);
  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub{ctx, {.on_gap = [this](const pubsub::gap& g) { gaps.push_back(g); }}};

  fixture() {
    const std::string ep = test::bind_ephemeral(raw);
    sub.subscribe("t.");
    sub.connect(ep);
    test::await_subscription(raw, sub, "t.sync");
  }

  void send(const std::string& publisher, std::uint64_t seq) {
    test::send_raw(raw, {"t.x", test::stamped("t.x", publisher, std::to_string(seq))});
  }

  // Returns: the sequence numbers delivered until the stream goes quiet.
  std::vector<std::uint64_t> drain() {
    std::vector<std::uint64_t> got;
    while (auto n = sub.receive(200ms)) got.push_back(n->sequence);
    return got;
  }
};

}  // namespace

TEST_CASE("consecutive sequence numbers are no gap, whatever the first one is") {
  fixture f;
  for (std::uint64_t s : {41, 42, 43, 44}) f.send("p", s);
  CHECK(f.drain() == std::vector<std::uint64_t>{41, 42, 43, 44});
  CHECK(f.gaps.empty());
  CHECK(f.sub.stats().missed == 0);
}

TEST_CASE("a jump in the sequence is reported once with the first missing number and the count") {
  fixture f;
  for (std::uint64_t s : {1, 2, 5, 6, 10}) f.send("p", s);
  CHECK(f.drain() == std::vector<std::uint64_t>{1, 2, 5, 6, 10});
  REQUIRE(f.gaps.size() == 2);
  CHECK(f.gaps[0].publisher == "p");
  CHECK(f.gaps[0].first_missing == 3);
  CHECK(f.gaps[0].count == 2);
  CHECK(f.gaps[1].first_missing == 7);
  CHECK(f.gaps[1].count == 3);
  CHECK(f.sub.stats().gaps == 2);
  CHECK(f.sub.stats().missed == 5);
}

TEST_CASE("sequences are tracked per publisher and type") {
  fixture f;
  f.send("a", 1);
  f.send("b", 100);
  f.send("a", 2);
  f.send("b", 102);
  f.send("a", 3);
  CHECK(f.drain().size() == 5);
  REQUIRE(f.gaps.size() == 1);
  CHECK(f.gaps[0].publisher == "b");
  CHECK(f.gaps[0].type == "t.x");
  CHECK(f.gaps[0].first_missing == 101);
  CHECK(f.gaps[0].count == 1);

  // Another type from "a" has numbering of its own.
  test::send_raw(f.raw, {"t.y", test::stamped("t.y", "a", "1")});
  test::send_raw(f.raw, {"t.x", test::stamped("t.x", "a", "4")});
  CHECK(f.drain().size() == 2);
  CHECK(f.gaps.size() == 1);
}

TEST_CASE("a sequence that goes backwards is a restarted publisher, not a gap") {
  fixture f;
  for (std::uint64_t s : {7, 8, 1, 2}) f.send("p", s);
  CHECK(f.drain() == std::vector<std::uint64_t>{7, 8, 1, 2});
  CHECK(f.gaps.empty());
  CHECK(f.sub.stats().restarts == 1);
}

TEST_CASE("the least recently heard stream is forgotten beyond max_streams") {
  zmq::context_t ctx;
  auto raw = test::test_socket(ctx, zmq::socket_type::pub);
  const std::string ep = test::bind_ephemeral(raw);
  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(ctx, {.on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); }, .max_streams = 2});
  sub.subscribe("t.");
  sub.connect(ep);
  test::await_subscription(raw, sub, "t.sync");
  auto send = [&](const char* p, int s) {
    test::send_raw(raw, {"t.x", test::stamped("t.x", p, std::to_string(s))});
  };
  send("a", 1);
  send("b", 1);
  send("c", 1);  // forgets a
  send("a", 5);  // a has no baseline any more: no gap
  send("c", 3);  // c is still tracked: gap of 1
  int n = 0;
  while (sub.receive(200ms)) ++n;
  CHECK(n == 5);
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].publisher == "c");
}
