// Publisher and subscriber attached to one zmqkit::loop: subscriptions are
// reported as they arrive, messages and gaps come through callbacks, and
// snapshot values queued by request_snapshot() are delivered by the loop.
#include <doctest/doctest.h>

#include <zmqkit/loop.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {
bool run_until(loop& l, const std::function<bool()>& condition) {
  return test::wait_until([&] {
    l.run_once(5ms);
    return condition();
  });
}
}  // namespace

TEST_CASE("pub/sub on one loop: publishing starts when the subscription is reported, every message arrives") {
  zmq::context_t ctx;
  loop l;
  pubsub::publisher pub(ctx);
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  pubsub::subscriber sub(ctx);
  sub.subscribe("course.");
  sub.connect(ep);
  std::vector<std::uint64_t> sequences;
  sub.attach(l, [&](const pubsub::notification_view& n) {
    CHECK(n.env.type == "course.subscribed");
    sequences.push_back(n.sequence);
  });
  std::vector<std::size_t> reported;
  pub.attach(l, [&](std::size_t live) {
    reported.push_back(live);
    if (live == 1)
      for (int i = 0; i < 100; ++i) pub.publish("course.subscribed", std::string("c++"));
  });
  REQUIRE(run_until(l, [&] { return sequences.size() == 100; }));
  CHECK(reported == std::vector<std::size_t>{1});
  CHECK(sequences.front() == 1);
  CHECK(sequences.back() == 100);
  CHECK(sub.stats().gaps == 0);
}

TEST_CASE("subscriber on a loop: a gap reaches on_gap on the loop's thread") {
  zmq::context_t ctx;
  loop l;
  auto raw = test::test_socket(ctx, zmq::socket_type::pub);
  const std::string ep = test::bind_ephemeral(raw);
  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(ctx, {.on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); }});
  sub.subscribe("t.");
  sub.connect(ep);
  test::await_subscription(raw, sub, "t.sync");
  std::vector<std::uint64_t> got;
  sub.attach(l, [&](const pubsub::notification_view& n) { got.push_back(n.sequence); });
  for (std::uint64_t s : {1, 2, 5}) test::send_raw(raw, {"t.x", test::stamped("t.x", "p", std::to_string(s))});
  REQUIRE(run_until(l, [&] { return got.size() == 3; }));
  CHECK(got == std::vector<std::uint64_t>{1, 2, 5});
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].first_missing == 3);
  CHECK(gaps[0].count == 2);
  sub.detach();
  test::send_raw(raw, {"t.x", test::stamped("t.x", "p", "6")});
  l.run_once(50ms);
  CHECK(got.size() == 3);  // detached: the loop no longer reads it
  auto n = sub.receive(2000ms);
  REQUIRE(n.has_value());
  CHECK(n->sequence == 6);
}

TEST_CASE("subscriber on a loop: snapshot values are delivered by the loop, before live messages") {
  zmq::context_t ctx;
  loop l;
  pubsub::publisher pub(ctx, {.snapshot_endpoint = "tcp://127.0.0.1:*"});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  pub.publish("course.a", std::string("first"));
  pub.publish("course.b", std::string("second"));
  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {pub.snapshot_endpoint()}});
  sub.subscribe("course.");
  sub.connect(ep);
  std::vector<bool> from_snapshot;
  sub.attach(l, [&](const pubsub::notification_view& n) { from_snapshot.push_back(n.from_snapshot); });
  REQUIRE(sub.request_snapshot(2000ms) == 2u);
  REQUIRE(run_until(l, [&] { return from_snapshot.size() == 2; }));
  CHECK(from_snapshot == std::vector<bool>{true, true});
}
