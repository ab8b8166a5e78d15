// Pub/sub wire format and topic filtering: [topic = type, envelope], zmk.pub
// and zmk.seq stamped, prefix subscriptions, receive timeouts, bad frames.
#include <doctest/doctest.h>

#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using zmqkit::test::await_subscription;

TEST_CASE("a publisher sends [type, envelope] stamped with its id and a per-type sequence from 1") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.id = "pub-a"});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  auto raw = test::test_socket(ctx, zmq::socket_type::sub);
  raw.set(zmq::sockopt::subscribe, "");
  raw.connect(ep);
  REQUIRE(test::wait_until([&] {
    pub.publish(make_envelope("sync"));
    zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
    return zmq::poll(&item, 1, 5ms) > 0;
  }));
  std::vector<zmq::message_t> frames;
  while (zmq::recv_multipart(raw, std::back_inserter(frames), zmq::recv_flags::dontwait)) frames.clear();
  REQUIRE(test::wait_until([&] {  // drain the sync messages still in flight
    zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, 50ms) == 0) return true;
    (void)zmq::recv_multipart(raw, std::back_inserter(frames), zmq::recv_flags::dontwait);
    frames.clear();
    return false;
  }));

  const std::uint64_t first = pub.publish("course.subscribed", std::string("c++"));
  const std::uint64_t other = pub.publish(make_envelope("course.dropped"));
  const std::uint64_t second = pub.publish(make_envelope("course.subscribed"));
  CHECK(first == 1);
  CHECK(other == 1);  // numbering is per type
  CHECK(second == 2);

  REQUIRE(zmq::recv_multipart(raw, std::back_inserter(frames)) == 2);
  CHECK(frames[0].to_string() == "course.subscribed");
  const envelope env = decode(frames[1]);
  CHECK(env.type == "course.subscribed");
  CHECK(env.header(header::publisher) == "pub-a");
  CHECK(env.header(header::sequence) == std::to_string(first));
  CHECK(env.body_as<std::string>() == "c++");
  frames.clear();
  REQUIRE(zmq::recv_multipart(raw, std::back_inserter(frames)) == 2);
  CHECK(decode(frames[1]).header(header::sequence) == "1");
  frames.clear();
  REQUIRE(zmq::recv_multipart(raw, std::back_inserter(frames)) == 2);
  CHECK(decode(frames[1]).header(header::sequence) == "2");
  const auto published = pub.stats().published;
  pub.publish(make_envelope("x"));
  CHECK(pub.stats().published == published + 1);
}

TEST_CASE("a random publisher id is generated when none is given") {
  zmq::context_t ctx;
  pubsub::publisher a(ctx), b(ctx);
  CHECK(a.id().size() == 12);
  CHECK(a.id() != b.id());
}

TEST_CASE("subscribing to a type prefix receives exactly the types it starts") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx);
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  pubsub::subscriber courses(ctx), orders(ctx);
  courses.subscribe("course.");
  orders.subscribe("order.");
  courses.connect(ep);
  orders.connect(ep);
  await_subscription(pub, {&courses}, "course.sync");
  await_subscription(pub, {&orders}, "order.sync");

  pub.publish(make_envelope("course.subscribed"));
  pub.publish(make_envelope("order.created"));
  pub.publish(make_envelope("courses.typo"));  // "course." is not a prefix of it
  pub.publish(make_envelope("course.dropped"));

  std::vector<std::string> got;
  while (auto n = courses.receive(200ms)) got.push_back(n->env.type);
  CHECK(got == std::vector<std::string>{"course.subscribed", "course.dropped"});
  auto o = orders.receive(1s);
  REQUIRE(o);
  CHECK(o->env.type == "order.created");
  CHECK_FALSE(o->from_snapshot);
  CHECK(o->sequence == std::stoull(std::string(*o->env.header(header::sequence))));
  CHECK_FALSE(orders.receive(100ms));
  CHECK(courses.stats().gaps == 0);
}

TEST_CASE("receive returns nullopt when nothing arrives in time") {
  zmq::context_t ctx;
  pubsub::subscriber sub(ctx);
  sub.subscribe("");
  sub.connect(test::unique_inproc("nobody"));
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(sub.receive(50ms));
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  CHECK_FALSE(sub.receive(0ms));
}

TEST_CASE("bad frames are counted and dropped, and the subscriber keeps receiving") {
  zmq::context_t ctx;
  auto raw = test::test_socket(ctx, zmq::socket_type::pub);
  const std::string ep = test::bind_ephemeral(raw);
  pubsub::subscriber sub(ctx);
  sub.subscribe("course.");
  sub.connect(ep);
  test::await_subscription(raw, sub, "course.sync");
  const auto before = sub.stats();

  test::send_raw(raw, {"course.x"});                                                // one frame
  test::send_raw(raw, {"course.x", "not msgpack"});                                 // not an envelope
  test::send_raw(raw, {"course.y", test::stamped("course.x", "p", "1")});           // topic != type
  test::send_raw(raw, {"course.x", test::stamped("course.x", "p", "abc")});         // seq not decimal
  test::send_raw(raw, {"course.x", test::stamped("course.x", "p", "0")});           // seq starts at 1
  test::send_raw(raw, {"course.x", test::stamped("course.x", "", "1")});            // empty publisher
  test::send_raw(raw, {"course.x", test::stamped("course.x", "p", "1"), "extra"});  // three frames
  test::send_raw(raw, {"course.ok", test::stamped("course.ok", "p", "7")});

  auto n = sub.receive(1s);
  REQUIRE(n);
  CHECK(n->env.type == "course.ok");
  CHECK(n->sequence == 7);
  CHECK(sub.stats().bad_frames - before.bad_frames == 7);
  CHECK(sub.stats().received - before.received == 1);
}

TEST_CASE("an envelope without zmk.pub and zmk.seq is delivered untracked") {
  zmq::context_t ctx;
  auto raw = test::test_socket(ctx, zmq::socket_type::pub);
  const std::string ep = test::bind_ephemeral(raw);
  pubsub::subscriber sub(ctx);
  sub.subscribe("");
  sub.connect(ep);
  test::await_subscription(raw, sub, "sync");
  const auto before = sub.stats().untracked;
  test::send_raw(raw, {"plain.event", test::bytes(encode(make_envelope("plain.event")))});
  auto n = sub.receive(1s);
  REQUIRE(n);
  CHECK(n->sequence == 0);
  CHECK(sub.stats().untracked == before + 1);
  CHECK(sub.stats().gaps == 0);
}

TEST_CASE("user headers travel beside the stamp; a user's own zmk.pub and zmk.seq are overwritten") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.id = "real"});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  pubsub::subscriber sub(ctx);
  sub.subscribe("h.");
  sub.connect(ep);
  test::await_subscription(pub, {&sub}, "h.sync");

  envelope env = make_envelope("h.x");
  env.headers["a.short"] = "1";
  env.headers["b.medium"] = std::string(200, 'm');  // str8
  env.headers["c.long"] = std::string(70000, 'l');  // str32
  env.headers["zmk.pub"] = "forged";
  env.headers["zmk.seq"] = "999";
  const std::uint64_t seq = pub.publish(env);
  auto n = sub.receive(1s);
  REQUIRE(n);
  CHECK(n->sequence == seq);
  CHECK(n->env.header(header::publisher) == "real");
  CHECK(n->env.header(header::sequence) == std::to_string(seq));
  CHECK(n->env.header("b.medium")->size() == 200);
  CHECK(n->env.header("c.long")->size() == 70000);
  CHECK(n->env.header("a.short") == "1");
}

TEST_CASE("an envelope that breaks a rule throws and takes no sequence number") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx);
  envelope bad = make_envelope("t.x");
  bad.priority = 10;
  CHECK_THROWS_AS(pub.publish(bad), zmqkit::error);
  CHECK(pub.publish(make_envelope("t.x")) == 1);
  CHECK(pub.stats().published == 1);
}

TEST_CASE("a publisher forgets the least recently published type beyond max_types") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.max_types = 2});
  CHECK(pub.publish(make_envelope("a")) == 1);
  CHECK(pub.publish(make_envelope("b")) == 1);
  CHECK(pub.publish(make_envelope("a")) == 2);
  CHECK(pub.publish(make_envelope("c")) == 1);  // forgets b, the least recent
  CHECK(pub.stats().evicted_types == 1);
  CHECK(pub.publish(make_envelope("a")) == 3);
  CHECK(pub.publish(make_envelope("b")) == 1);  // numbering restarts
}

TEST_CASE("receive_view gives the same message without copying it, valid until the next receive") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.id = "v"});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  pubsub::subscriber sub(ctx);
  sub.subscribe("v.");
  sub.connect(ep);
  test::await_subscription(pub, {&sub}, "v.sync");
  const std::uint64_t seq = pub.publish("v.x", std::string("body"));
  auto v = sub.receive_view(1s);
  REQUIRE(v);
  CHECK(v->env.type == "v.x");
  CHECK(v->sequence == seq);
  CHECK(v->env.header(header::publisher) == "v");
  CHECK(v->env.to_envelope().body_as<std::string>() == "body");
}

TEST_CASE("publisher and subscriber keep working after a move") {
  zmq::context_t ctx;
  pubsub::publisher first(ctx, {.snapshot_endpoint = "tcp://127.0.0.1:*"});
  const std::string ep = first.bind("tcp://127.0.0.1:*");
  pubsub::publisher pub = std::move(first);
  pubsub::subscriber a(ctx, {.snapshot_endpoints = {pub.snapshot_endpoint()}});
  a.subscribe("m.");
  a.connect(ep);
  pubsub::subscriber sub = std::move(a);
  test::await_subscription(pub, {&sub}, "m.sync");
  pub.publish(make_envelope("m.x"));
  auto n = sub.receive(1s);
  REQUIRE(n);
  CHECK(n->env.type == "m.x");
  CHECK(sub.request_snapshot(2s) == 2u);  // m.sync and m.x
}
