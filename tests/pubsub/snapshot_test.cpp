// Late joiners: the last value of each subscribed type from the publisher's
// snapshot socket, and how the snapshot's sequence number meets live traffic.
#include <doctest/doctest.h>

#include <thread>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

TEST_CASE("a late joiner gets the newest value of each subscribed type, then live messages without a gap") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.snapshot_endpoint = "tcp://127.0.0.1:*"});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  pub.publish("course.opened", std::string("v1"));
  pub.publish("course.opened", std::string("v2"));
  pub.publish("course.closed", std::string("c"));
  pub.publish("order.created", std::string("o"));

  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {pub.snapshot_endpoint()},
                               .on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); }});
  sub.subscribe("course.");
  sub.connect(ep);
  // Make sure the live subscription is in place before the snapshot is taken,
  // so nothing falls between the two.
  test::await_subscription(pub, {&sub}, "course.sync");

  const auto values = sub.request_snapshot(2s);
  REQUIRE(values);
  CHECK(*values == 3);  // course.closed, course.opened, course.sync; not order.created
  std::map<std::string, std::string> snapshot;
  for (std::size_t i = 0; i < *values; ++i) {
    auto n = sub.receive(0ms);
    REQUIRE(n);
    CHECK(n->from_snapshot);
    if (n->env.type != "course.sync") snapshot[n->env.type] = n->env.body_as<std::string>();
  }
  CHECK(snapshot == std::map<std::string, std::string>{{"course.closed", "c"}, {"course.opened", "v2"}});

  const std::uint64_t live = pub.publish("course.opened", std::string("v3"));
  auto n = sub.receive(1s);
  REQUIRE(n);
  CHECK_FALSE(n->from_snapshot);
  CHECK(n->sequence == live);
  CHECK(n->env.body_as<std::string>() == "v3");
  CHECK(gaps.empty());
  CHECK(sub.stats().snapshots == 1);
  // Counted by the snapshot thread once its reply is sent: the subscriber may have it first.
  CHECK(test::wait_until([&] { return pub.stats().snapshots_served == 1; }, 2s));
}

TEST_CASE(
    "live messages at or below the snapshot's sequence of their type are stale; numbering continues from "
    "it") {
  zmq::context_t ctx;
  auto raw = test::test_socket(ctx, zmq::socket_type::pub);
  const std::string ep = test::bind_ephemeral(raw);
  auto router = test::test_socket(ctx, zmq::socket_type::router);
  const std::string snapshot_ep = test::bind_ephemeral(router);

  // A hand-made snapshot server: publisher "p" was at sequence 10.
  std::thread server([&] {
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(router, std::back_inserter(request))) return;
    msgpack::sbuffer map;
    msgpack::packer<msgpack::sbuffer> pk(map);
    pk.pack_map(1);
    pk.pack(std::string("p"));
    pk.pack_map(1);
    pk.pack(std::string("t.x"));
    pk.pack(std::uint64_t{10});
    test::send_raw(router, {request[0].to_string(), "zmk.snapshot", std::string(map.data(), map.size()),
                            test::stamped("t.x", "p", "10")});
  });

  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(
      ctx, {.snapshot_endpoints = {snapshot_ep}, .on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); }});
  sub.subscribe("t.");
  sub.connect(ep);
  test::await_subscription(raw, sub, "t.sync");
  const auto values = sub.request_snapshot(2s);
  server.join();
  REQUIRE(values == 1u);

  for (int s : {9, 10, 11, 13}) test::send_raw(raw, {"t.x", test::stamped("t.x", "p", std::to_string(s))});
  std::vector<std::pair<std::uint64_t, bool>> got;
  while (auto n = sub.receive(200ms)) got.emplace_back(n->sequence, n->from_snapshot);
  CHECK(got == std::vector<std::pair<std::uint64_t, bool>>{{10, true}, {11, false}, {13, false}});
  CHECK(sub.stats().stale == 2);
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].first_missing == 12);
  CHECK(gaps[0].count == 1);
}

TEST_CASE("a snapshot's sequence is the baseline: a message missed right after it is a gap") {
  zmq::context_t ctx;
  auto raw = test::test_socket(ctx, zmq::socket_type::pub);
  const std::string ep = test::bind_ephemeral(raw);
  auto router = test::test_socket(ctx, zmq::socket_type::router);
  const std::string snapshot_ep = test::bind_ephemeral(router);
  std::thread server([&] {
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(router, std::back_inserter(request))) return;
    msgpack::sbuffer map;
    msgpack::packer<msgpack::sbuffer> pk(map);
    pk.pack_map(1);
    pk.pack(std::string("p"));
    pk.pack_map(1);
    pk.pack(std::string("t.x"));
    pk.pack(std::uint64_t{20});
    test::send_raw(router, {request[0].to_string(), "zmk.snapshot", std::string(map.data(), map.size())});
  });
  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(
      ctx, {.snapshot_endpoints = {snapshot_ep}, .on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); }});
  sub.subscribe("t.");
  sub.connect(ep);
  test::await_subscription(raw, sub, "t.sync");
  CHECK(sub.request_snapshot(2s) == 0u);
  server.join();
  test::send_raw(raw, {"t.x", test::stamped("t.x", "p", "23")});  // 21 and 22 never came
  REQUIRE(sub.receive(1s));
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].first_missing == 21);
  CHECK(gaps[0].count == 2);
}

TEST_CASE("expired last values are not served") {
  zmq::context_t ctx;
  manual_clock clk;
  pubsub::publisher pub(ctx, {.snapshot_endpoint = "tcp://127.0.0.1:*", .clock = &clk});
  auto short_lived = make_envelope("quote.fx", clk);
  short_lived.ttl = 1s;
  pub.publish(short_lived);
  pub.publish(make_envelope("quote.rate", clk));
  clk.advance(2s);

  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {pub.snapshot_endpoint()}});
  sub.subscribe("quote.");
  REQUIRE(sub.request_snapshot(2s) == 1u);
  auto n = sub.receive(0ms);
  REQUIRE(n);
  CHECK(n->env.type == "quote.rate");
}

TEST_CASE("a snapshot request that does not follow the protocol is counted and dropped") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.snapshot_endpoint = "tcp://127.0.0.1:*"});
  auto dealer = test::test_socket(ctx, zmq::socket_type::dealer);
  dealer.connect(pub.snapshot_endpoint());
  test::send_raw(dealer, {"hello"});
  REQUIRE(test::wait_until([&] { return pub.stats().bad_snapshot_requests == 1; }));
  // Still serving.
  test::send_raw(dealer, {"zmk.snapshot", ""});
  std::vector<zmq::message_t> reply;
  REQUIRE(zmq::recv_multipart(dealer, std::back_inserter(reply)) == 2);
  CHECK(reply[0].to_string() == "zmk.snapshot");
}

TEST_CASE("request_snapshot returns nullopt when a snapshot endpoint does not answer in time") {
  zmq::context_t ctx;
  auto silent = test::test_socket(ctx, zmq::socket_type::router);
  const std::string ep = test::bind_ephemeral(silent);
  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {ep}});
  sub.subscribe("");
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(sub.request_snapshot(100ms));
  CHECK(std::chrono::steady_clock::now() - start >= 100ms);
}

TEST_CASE("a malformed snapshot reply is counted and not taken") {
  zmq::context_t ctx;
  auto router = test::test_socket(ctx, zmq::socket_type::router);
  const std::string ep = test::bind_ephemeral(router);
  std::thread server([&] {
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(router, std::back_inserter(request))) return;
    test::send_raw(router, {request[0].to_string(), "zmk.snapshot", "\xc1"});  // 0xc1: never valid msgpack
  });
  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {ep}});
  sub.subscribe("");
  CHECK_FALSE(sub.request_snapshot(200ms));
  server.join();
  CHECK(sub.stats().bad_frames == 1);
  CHECK(sub.stats().snapshots == 0);
}
