// The publisher's defaults carry a realistic burst: 3000 messages published as
// fast as possible reach each of three reading subscribers, none lost. And
// wait_for_subscribers() is how a program knows they are there first.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

TEST_CASE("burst: 3000 messages to 3 reading subscribers with default options, 0 lost") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx);
  const std::string endpoint = pub.bind("tcp://127.0.0.1:*");
  CHECK_FALSE(pub.wait_for_subscribers(1, 0ms));  // nobody yet

  constexpr std::size_t subscribers = 3;
  constexpr std::uint64_t burst = 3000;
  std::vector<std::unique_ptr<pubsub::subscriber>> subs;
  for (std::size_t i = 0; i < subscribers; ++i) {
    auto& s = subs.emplace_back(std::make_unique<pubsub::subscriber>(ctx));
    s->subscribe("grade.");
    s->connect(endpoint);
  }
  REQUIRE(pub.wait_for_subscribers(subscribers, 5000ms));
  CHECK(pub.subscriptions() == subscribers);

  std::vector<std::uint64_t> received(subscribers, 0);
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < subscribers; ++i)
    readers.emplace_back([&, i] {
      while (received[i] < burst && subs[i]->receive(2000ms)) ++received[i];
    });
  const std::string body(200, 'x');  // a grade record's worth
  for (std::uint64_t i = 0; i < burst; ++i) pub.publish("grade.posted", body);
  for (auto& t : readers) t.join();
  for (std::size_t i = 0; i < subscribers; ++i) {
    CAPTURE(i);
    CHECK(received[i] == burst);
    CHECK(subs[i]->stats().missed == 0);
  }
}

TEST_CASE("wait_for_subscribers counts subscriptions, and forgets those that leave") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx);
  const std::string endpoint = pub.bind("tcp://127.0.0.1:*");
  {
    pubsub::subscriber a(ctx), b(ctx);
    a.subscribe("x.");
    a.connect(endpoint);
    b.subscribe("x.");  // the same prefix: still one more subscriber
    b.connect(endpoint);
    REQUIRE(pub.wait_for_subscribers(2, 5000ms));
    CHECK(pub.subscriptions() == 2);
  }
  // Both closed: their subscriptions are withdrawn when the connections end.
  CHECK(test::wait_until([&] {
    pub.wait_for_subscribers(1, 10ms);
    return pub.subscriptions() == 0;
  }));
}
