// The XSUB/XPUB forwarder: many publishers and subscribers meet at one
// address; subscriptions pass through to the publishers.
#include <doctest/doctest.h>

#include <zmqkit/keys.hpp>
#include <zmqkit/pubsub/forwarder.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include <zmqkit/zap_authenticator.hpp>

#include "pubsub_helpers.hpp"
#include "support/raw_tcp.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

TEST_CASE("subscribers behind the forwarder receive only their prefix, from every publisher") {
  zmq::context_t ctx;
  pubsub::forwarder fwd(ctx, {.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*"});
  pubsub::publisher a(ctx, {.id = "a"}), b(ctx, {.id = "b"});
  a.connect(fwd.frontend_endpoint());
  b.connect(fwd.frontend_endpoint());
  pubsub::subscriber courses(ctx), orders(ctx);
  courses.subscribe("course.");
  orders.subscribe("order.");
  courses.connect(fwd.backend_endpoint());
  orders.connect(fwd.backend_endpoint());
  test::await_subscription(a, {&courses}, "course.sync");
  test::await_subscription(b, {&courses}, "course.sync");
  test::await_subscription(a, {&orders}, "order.sync");
  test::await_subscription(b, {&orders}, "order.sync");

  for (int i = 0; i < 10; ++i) {
    a.publish(make_envelope("course.subscribed"));
    b.publish(make_envelope("order.created"));
    b.publish(make_envelope("course.dropped"));
    a.publish(make_envelope("invoice.sent"));
  }
  std::map<std::string, int> c, o;
  while (auto n = courses.receive(300ms))
    ++c[n->env.type + "@" + std::string(*n->env.header(header::publisher))];
  while (auto n = orders.receive(300ms))
    ++o[n->env.type + "@" + std::string(*n->env.header(header::publisher))];
  CHECK(c == std::map<std::string, int>{{"course.dropped@b", 10}, {"course.subscribed@a", 10}});
  CHECK(o == std::map<std::string, int>{{"order.created@b", 10}});
  CHECK(courses.stats().gaps == 0);  // per-publisher numbering survives the hop
  CHECK(orders.stats().gaps == 0);
}

TEST_CASE("subscriptions pass upstream: a type nobody subscribed to never reaches the forwarder") {
  zmq::context_t ctx;
  pubsub::forwarder fwd(ctx, {.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*"});
  pubsub::publisher pub(ctx);
  pub.connect(fwd.frontend_endpoint());
  pubsub::subscriber sub(ctx);
  sub.subscribe("wanted.");
  sub.connect(fwd.backend_endpoint());
  test::await_subscription(pub, {&sub}, "wanted.sync");
  const auto before = fwd.stats().messages;
  CHECK(fwd.stats().subscriptions >= 1);

  for (int i = 0; i < 50; ++i) pub.publish(make_envelope("unwanted.x"));
  pub.publish(make_envelope("wanted.x"));
  auto n = sub.receive(1s);
  REQUIRE(n);
  CHECK(n->env.type == "wanted.x");
  // The publisher filtered at the source: only the wanted message crossed.
  CHECK(fwd.stats().messages - before == 1);

  // Unsubscribing passes through too. The probe subscription travels the same
  // path after the unsubscription, so once probes arrive, it has been applied.
  sub.unsubscribe("wanted.");
  sub.subscribe("probe.");
  test::await_subscription(pub, {&sub}, "probe.sync");
  const auto at = fwd.stats().messages;
  pub.publish(make_envelope("wanted.y"));
  pub.publish(make_envelope("probe.z"));
  n = sub.receive(1s);
  REQUIRE(n);
  CHECK(n->env.type == "probe.z");
  CHECK(fwd.stats().messages - at == 1);
}

TEST_CASE("the forwarder starts and stops synchronously and rejects missing endpoints") {
  zmq::context_t ctx;
  for (int i = 0; i < 5; ++i) {
    pubsub::forwarder fwd(ctx, {.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*"});
    CHECK(fwd.frontend_endpoint().starts_with("tcp://127.0.0.1:"));
  }
  CHECK_THROWS_AS(pubsub::forwarder(ctx, {.frontend = "", .backend = "inproc://x"}), zmqkit::error);
}

TEST_CASE("a caching forwarder serves late joiners the last value of each type from every publisher") {
  zmq::context_t ctx;
  pubsub::forwarder fwd(ctx, {.frontend = "tcp://127.0.0.1:*",
                              .backend = "tcp://127.0.0.1:*",
                              .snapshot_endpoint = "tcp://127.0.0.1:*"});
  pubsub::publisher a(ctx, {.id = "a"}), b(ctx, {.id = "b"});
  a.connect(fwd.frontend_endpoint());
  b.connect(fwd.frontend_endpoint());
  // The forwarder subscribes to everything; wait until each publisher has heard so.
  for (auto* p : {&a, &b}) {
    const auto at = fwd.stats().messages;
    REQUIRE(test::wait_until([&] {
      p->publish(make_envelope("warmup"));
      return fwd.stats().messages > at;
    }));
  }
  a.publish("course.a", std::string("a1"));
  a.publish("course.a", std::string("a2"));
  b.publish("course.b", std::string("b1"));
  b.publish("order.x", std::string("o"));
  a.publish(make_envelope("done.a"));
  b.publish(make_envelope("done.b"));
  // Each publisher's messages arrive in order: once both done.* are cached, all are.
  auto probe = test::test_socket(ctx, zmq::socket_type::dealer);
  probe.connect(fwd.snapshot_endpoint());
  REQUIRE(test::wait_until([&] {
    test::send_raw(probe, {"zmk.snapshot", "done."});
    std::vector<zmq::message_t> reply;
    return zmq::recv_multipart(probe, std::back_inserter(reply)) == 4;  // command, table, 2 values
  }));

  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {fwd.snapshot_endpoint()},
                               .on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); }});
  sub.subscribe("course.");
  sub.connect(fwd.backend_endpoint());
  test::await_subscription(a, {&sub}, "course.sync");
  const auto values = sub.request_snapshot(2s);
  REQUIRE(values == 3u);
  std::map<std::string, std::string> got;
  for (int i = 0; i < 3; ++i) {
    auto n = sub.receive(0ms);
    REQUIRE(n);
    CHECK(n->from_snapshot);
    if (n->env.type != "course.sync") got[n->env.type] = n->env.body_as<std::string>();
  }
  CHECK(got == std::map<std::string, std::string>{{"course.a", "a2"}, {"course.b", "b1"}});

  // Live traffic continues from the snapshot's numbers without a false gap.
  a.publish("course.a", std::string("a3"));
  b.publish("course.b", std::string("b2"));
  for (int i = 0; i < 2; ++i) {
    auto n = sub.receive(1s);
    REQUIRE(n);
    CHECK_FALSE(n->from_snapshot);
  }
  CHECK(gaps.empty());
  CHECK(fwd.stats().snapshots_served >= 2);
}

TEST_CASE("a caching forwarder forwards but does not cache what is not a stamped envelope") {
  zmq::context_t ctx;
  pubsub::forwarder fwd(ctx, {.frontend = "tcp://127.0.0.1:*",
                              .backend = "tcp://127.0.0.1:*",
                              .snapshot_endpoint = "tcp://127.0.0.1:*"});
  auto raw = test::test_socket(ctx, zmq::socket_type::pub);
  raw.connect(fwd.frontend_endpoint());
  REQUIRE(test::wait_until([&] {
    test::send_raw(raw, {"plain", "not an envelope"});
    return fwd.stats().messages > 0;
  }));
  CHECK(fwd.stats().uncacheable == fwd.stats().messages);
  auto dealer = test::test_socket(ctx, zmq::socket_type::dealer);
  dealer.connect(fwd.snapshot_endpoint());
  test::send_raw(dealer, {"zmk.snapshot"});
  std::vector<zmq::message_t> reply;
  REQUIRE(zmq::recv_multipart(dealer, std::back_inserter(reply)) == 2);  // an empty table, no values
  test::send_raw(dealer, {"nonsense"});
  REQUIRE(test::wait_until([&] { return fwd.stats().bad_snapshot_requests == 1; }));
}

TEST_CASE("a CURVE forwarder counts refused handshakes by reason in its stats") {
  zmqkit::test::temp_dir dir;
  std::filesystem::create_directory(dir / "allow");
  const auto server = generate_keypair(), allowed = generate_keypair(), stranger = generate_keypair();
  save_public_key(allowed.public_key, dir / "allow/allowed.pub");
  zmq::context_t ctx;
  zap_authenticator auth(ctx, {.allow_dir = dir / "allow"});
  pubsub::forwarder_options o{.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*"};
  o.socket.security = curve_server{.secret_key = server.secret_key};
  pubsub::forwarder fwd(ctx, o);

  const auto subscriber_with = [&](const curve_keypair& me) {
    pubsub::subscriber_options so;
    so.socket.security = curve_client{.public_key = me.public_key, .secret_key = me.secret_key,
                                      .server_key = server.public_key};
    return pubsub::subscriber(ctx, so);
  };
  auto refused = subscriber_with(stranger);
  refused.subscribe("x.");
  refused.connect(fwd.backend_endpoint());
  CHECK(test::wait_until([&] { return fwd.stats().curve_refused_unknown_key >= 1; }));
  {
    test::raw_tcp plaintext(test::tcp_port(fwd.backend_endpoint()));
    plaintext.write_some(test::zmtp_greeting("NULL"));
    CHECK(plaintext.closed_by_peer_within(5s));
  }
  CHECK(test::wait_until([&] { return fwd.stats().curve_refused_plaintext >= 1; }));
  CHECK(fwd.stats().subscriptions == 0);  // nothing of theirs went upstream

  // An allowed subscriber and publisher get through: CURVE's handshake and framing
  // fit the 512-byte frame limit of the forwarder's subscription socket.
  auto good = subscriber_with(allowed);
  good.subscribe(std::string(max_type_bytes - 2, 'g'));  // the longest useful prefix, encrypted
  good.connect(fwd.backend_endpoint());
  pubsub::publisher_options po{.id = "p"};
  po.socket.security = curve_client{.public_key = allowed.public_key, .secret_key = allowed.secret_key,
                                    .server_key = server.public_key};
  pubsub::publisher pub(ctx, po);
  pub.connect(fwd.frontend_endpoint());
  test::await_subscription(pub, {&good}, std::string(max_type_bytes - 2, 'g') + ".x");
  CHECK(fwd.stats().curve_refused_bad_handshake == 0);
}
