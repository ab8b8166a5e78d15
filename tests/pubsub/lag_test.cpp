// Slow-subscriber policy: lag is the subscriber's wall clock minus the
// publisher's timestamp, both from an injected clock, so time is advanced
// instead of waited for.
#include <doctest/doctest.h>

#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

TEST_CASE("a subscriber further behind than max_lag is told once per episode and keeps going") {
  zmq::context_t ctx;
  manual_clock clk;
  pubsub::publisher pub(ctx, {.clock = &clk});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  std::vector<pubsub::lag> lags;
  pubsub::subscriber sub(ctx, {.max_lag = 1000ms,
                               .on_lag =
                                   [&](const pubsub::lag& l) {
                                     lags.push_back(l);
                                     return pubsub::lag_action::keep_going;
                                   },
                               .clock = &clk});
  sub.subscribe("t.");
  sub.connect(ep);
  test::await_subscription(pub, {&sub}, "t.sync");

  const std::uint64_t old1 = pub.publish(make_envelope("t.a", clk));
  pub.publish(make_envelope("t.a", clk));
  clk.advance(5s);                         // both are now 5 s old
  pub.publish(make_envelope("t.a", clk));  // fresh

  std::vector<std::uint64_t> got;
  for (int i = 0; i < 3; ++i) {
    auto n = sub.receive(1s);
    REQUIRE(n);
    got.push_back(n->sequence);
  }
  CHECK(got == std::vector<std::uint64_t>{old1, old1 + 1, old1 + 2});  // all delivered
  REQUIRE(lags.size() == 1);  // one report for the episode, not one per old message
  CHECK(lags[0].sequence == old1);
  CHECK(lags[0].behind == 5s);
  CHECK(lags[0].publisher == pub.id());

  // Caught up (the fresh message); a new episode is reported again.
  pub.publish(make_envelope("t.a", clk));
  clk.advance(3s);
  REQUIRE(sub.receive(1s));
  CHECK(lags.size() == 2);
  CHECK(sub.stats().lag_reports == 2);
  CHECK(sub.stats().gaps == 0);
}

TEST_CASE("lag within max_lag, or max_lag 0, is never reported") {
  zmq::context_t ctx;
  manual_clock clk;
  pubsub::publisher pub(ctx, {.clock = &clk});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  int reports = 0;
  auto count = [&](const pubsub::lag&) {
    ++reports;
    return pubsub::lag_action::keep_going;
  };
  pubsub::subscriber within(ctx, {.max_lag = 1000ms, .on_lag = count, .clock = &clk});
  pubsub::subscriber off(ctx, {.on_lag = count, .clock = &clk});
  for (auto* s : {&within, &off}) {
    s->subscribe("t.");
    s->connect(ep);
  }
  test::await_subscription(pub, {&within, &off}, "t.sync");
  pub.publish(make_envelope("t.a", clk));
  clk.advance(1s);  // exactly max_lag: not more than it
  REQUIRE(within.receive(1s));
  clk.advance(1h);
  REQUIRE(off.receive(1s));
  CHECK(reports == 0);
}

TEST_CASE("a lagging subscriber that resyncs skips the backlog and restarts from the snapshot") {
  zmq::context_t ctx;
  manual_clock clk;
  pubsub::publisher pub(ctx, {.snapshot_endpoint = "tcp://127.0.0.1:*", .clock = &clk});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {pub.snapshot_endpoint()},
                               .on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); },
                               .max_lag = 1000ms,
                               .on_lag = [](const pubsub::lag&) { return pubsub::lag_action::resync; },
                               .clock = &clk});
  sub.subscribe("price.");
  sub.connect(ep);
  test::await_subscription(pub, {&sub}, "price.sync");

  // A backlog of 100 old prices, then time passes.
  for (int i = 0; i < 100; ++i) pub.publish("price.book", i);
  clk.advance(10s);
  pub.publish("price.pen", 7);

  // The first old message triggers the resync: the backlog is dropped and the
  // newest value of each type comes from the snapshot instead.
  std::map<std::string, int> latest;
  while (auto n = sub.receive(300ms)) {
    CHECK(n->from_snapshot);
    if (n->env.type != "price.sync") latest[n->env.type] = n->env.body_as<int>();
  }
  CHECK(latest == std::map<std::string, int>{{"price.book", 99}, {"price.pen", 7}});
  CHECK(sub.stats().resyncs == 1);
  CHECK(sub.stats().lag_reports == 1);
  CHECK(gaps.empty());  // what the resync skipped is not a gap
}
