// Behaviour of zmqkit::queue::device, driven by raw cppzmq clients and workers
// over inproc, with a manual clock for TTL, heartbeat and no-service timing.
#include <doctest/doctest.h>

#include <random>
#include <set>

#include "queue_support.hpp"

using namespace zmqkit;
using namespace zmqkit::test;
using namespace std::chrono_literals;

namespace {
// Long heartbeats, so that advancing the clock for TTLs kills no worker.
queue::device_options quiet() { return {.heartbeat = std::chrono::hours(1)}; }
}  // namespace

TEST_CASE("a plain body reaches a Paranoid Pirate worker as exactly [client, empty, body]") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  raw_client c(fx.ctx, fx.frontend());
  c.send(zmq::message_t(std::string("hello 1")));

  auto req = w.request();
  REQUIRE(req.size() == 3);
  CHECK(req[0].size() == 5);  // the ROUTER's identity of the client
  CHECK(req[1].size() == 0);
  CHECK(str(req[2]) == "hello 1");
  w.reply(req, zmq::message_t(std::string("hello 1")));
  auto got = c.receive();
  REQUIRE(got);
  CHECK(str(*got) == "hello 1");
  const auto s = fx.stats();
  CHECK(s.received == 1);
  CHECK(s.routed == 1);
  CHECK(s.replied == 1);
}

TEST_CASE("requests go to the least recently used ready worker") {
  device_fixture fx(quiet());
  raw_worker a(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  raw_worker b(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(2));
  raw_worker c(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(3));
  raw_client client(fx.ctx, fx.frontend());

  client.send(request("t.x"));
  auto ra = a.request();
  REQUIRE(ra.size() == 3);
  client.send(request("t.x"));
  auto rb = b.request();
  REQUIRE(rb.size() == 3);
  // a finishes first, then b: a is now the least recently used ready worker,
  // ahead of b but behind c, which has waited longest.
  a.reply_to(ra);
  REQUIRE(client.receive());
  REQUIRE(fx.wait_ready(2));
  b.reply_to(rb);
  REQUIRE(client.receive());
  REQUIRE(fx.wait_ready(3));
  client.send(request("t.x"));
  auto rc = c.request();
  CHECK(rc.size() == 3);
  client.send(request("t.x"));
  auto ra2 = a.request();
  CHECK(ra2.size() == 3);
  client.send(request("t.x"));
  auto rb2 = b.request();
  CHECK(rb2.size() == 3);
}

TEST_CASE("a request goes only to workers serving its type; a plain body only to those that listed none") {
  device_fixture fx(quiet());
  raw_worker orders(fx.ctx, fx.backend(), {"order."});
  REQUIRE(fx.wait_ready(1));
  raw_worker any(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(2));
  raw_client client(fx.ctx, fx.frontend());

  SUBCASE("typed request skips the LRU worker that does not serve it") {
    client.send(request("course.subscribed"));
    auto r = any.request();
    REQUIRE(r.size() == 3);
    CHECK(decode(r.back()).type == "course.subscribed");
    CHECK_FALSE(orders.receives_request_within(50ms));
  }
  SUBCASE("prefix match") {
    client.send(request("order.created"));
    auto r = orders.request();
    REQUIRE(r.size() == 3);
    CHECK(decode(r.back()).type == "order.created");
  }
  SUBCASE("plain body waits for a worker that listed no prefixes") {
    client.send(request("x.busy"));  // occupies `any`
    auto busy = any.request();
    REQUIRE(busy.size() == 3);
    client.send(zmq::message_t(std::string("plain")));
    REQUIRE(fx.wait_pending(1));
    CHECK_FALSE(orders.receives_request_within(50ms));
    any.reply_to(busy);
    REQUIRE(client.receive());
    auto plain = any.request();
    REQUIRE(plain.size() == 3);
    CHECK(str(plain.back()) == "plain");
    CHECK(fx.stats().pending_by_type.empty());
  }
}

TEST_CASE("pending requests are served in priority order, FIFO within a priority") {
  device_fixture fx(quiet());
  raw_client client(fx.ctx, fx.frontend());
  const std::vector<std::pair<std::uint8_t, std::string>> sent = {
      {1, "low"}, {9, "urgent-1"}, {4, "normal-1"}, {9, "urgent-2"}, {4, "normal-2"}, {0, "lowest"}};
  for (const auto& [p, name] : sent) client.send(request("job." + name, p));
  REQUIRE(fx.wait_pending(sent.size()));
  const auto s = fx.stats();
  CHECK(s.pending_by_priority[9] == 2);
  CHECK(s.pending_by_priority[4] == 2);
  CHECK(s.pending_by_type.at("job.low") == 1);

  raw_worker w(fx.ctx, fx.backend());
  std::vector<std::string> order;
  for (std::size_t i = 0; i < sent.size(); ++i) {
    auto r = w.request();
    REQUIRE(r.size() == 3);
    order.push_back(decode(r.back()).type);
    w.reply_to(r);  // a reply is READY for the next one
  }
  CHECK(order == std::vector<std::string>{"job.urgent-1", "job.urgent-2", "job.normal-1", "job.normal-2",
                                          "job.low", "job.lowest"});
}

TEST_CASE("an expired request is answered 'expired' and never delivered") {
  device_fixture fx(quiet());
  raw_client client(fx.ctx, fx.frontend());

  SUBCASE("expired on arrival") {
    raw_worker w(fx.ctx, fx.backend());
    REQUIRE(fx.wait_ready(1));
    envelope e = request("t.x", 4, fx.clock);
    e.timestamp -= 10s;
    e.ttl = 1s;
    client.send(e);
    auto got = client.receive_envelope();
    REQUIRE(got);
    CHECK(error_of(got) == "expired");
    CHECK(got->correlation_id == e.id);
    CHECK_FALSE(w.receives_request_within(50ms));
  }
  SUBCASE("expired while queued") {
    envelope e = request("t.x", 4, fx.clock);
    e.ttl = 1s;
    client.send(e);
    REQUIRE(fx.wait_pending(1));
    fx.clock.advance(1001ms);
    auto got = client.receive_envelope();
    REQUIRE(got);
    CHECK(error_of(got) == "expired");
    CHECK(fx.stats().pending == 0);
    raw_worker w(fx.ctx, fx.backend());
    CHECK_FALSE(w.receives_request_within(50ms));
  }
  SUBCASE("expired when its worker frees up (checked at dispatch)") {
    raw_worker w(fx.ctx, fx.backend());
    REQUIRE(fx.wait_ready(1));
    client.send(request("t.first", 4, fx.clock));
    auto first = w.request();
    REQUIRE(first.size() == 3);
    envelope e = request("t.second", 4, fx.clock);
    e.ttl = 1s;
    client.send(e);
    REQUIRE(fx.wait_pending(1));
    fx.clock.advance(2s);
    w.reply_to(first);
    auto r1 = client.receive_envelope();
    auto r2 = client.receive_envelope();
    REQUIRE(r1);
    REQUIRE(r2);
    CHECK((error_of(r1) == "expired") != (error_of(r2) == "expired"));
    CHECK_FALSE(w.receives_request_within(50ms));
  }
  CHECK(fx.stats().expired == 1);
}

TEST_CASE("a type no connected worker serves is answered 'no-service' after the no-service time") {
  auto o = quiet();
  o.no_service = 5s;
  device_fixture fx(o);
  raw_worker other(fx.ctx, fx.backend(), {"other."});
  REQUIRE(fx.wait_ready(1));
  raw_client client(fx.ctx, fx.frontend());

  SUBCASE("no-service") {
    envelope e = request("lonely.type", 4, fx.clock);
    client.send(e);
    REQUIRE(fx.wait_pending(1));
    fx.clock.advance(4s);
    CHECK_FALSE(wait_until([&] { return fx.stats().pending == 0; }, 50ms));
    fx.clock.advance(1s);
    auto got = client.receive_envelope();
    REQUIRE(got);
    CHECK(error_of(got) == "no-service");
    CHECK(got->correlation_id == e.id);
  }
  SUBCASE("the TTL wins when it ends first") {
    envelope e = request("lonely.type", 4, fx.clock);
    e.ttl = 2s;
    client.send(e);
    REQUIRE(fx.wait_pending(1));
    fx.clock.advance(3s);
    CHECK(error_of(client.receive_envelope()) == "expired");
  }
  SUBCASE("a busy worker serving the type keeps it waiting") {
    raw_worker lonely(fx.ctx, fx.backend(), {"lonely."});
    REQUIRE(fx.wait_ready(2));
    client.send(request("lonely.type", 4, fx.clock));
    auto held = lonely.request();
    REQUIRE(held.size() == 3);
    client.send(request("lonely.type", 4, fx.clock));
    REQUIRE(fx.wait_pending(1));
    fx.clock.advance(10s);
    CHECK_FALSE(wait_until([&] { return fx.stats().pending == 0; }, 50ms));
    lonely.reply_to(held);
    REQUIRE(client.receive_envelope());
    auto second = lonely.request();
    CHECK(second.size() == 3);
  }
  SUBCASE("once its last serving worker leaves, a long-waiting request is answered within one no-service time") {
    raw_worker lonely(fx.ctx, fx.backend(), {"lonely."});
    REQUIRE(fx.wait_ready(2));
    client.send(request("lonely.type", 4, fx.clock));
    REQUIRE(lonely.request().size() == 3);
    const envelope waiting = request("lonely.type", 4, fx.clock);
    client.send(waiting);
    REQUIRE(fx.wait_pending(1));
    fx.clock.advance(6s);  // past its no-service time, but a (busy) worker serves the type
    CHECK_FALSE(wait_until([&] { return fx.stats().pending == 0; }, 50ms));
    lonely.disconnect();  // the held request is requeued: two wait, served by nobody now
    REQUIRE(fx.wait_pending(2));
    fx.clock.advance(4s);
    CHECK_FALSE(wait_until([&] { return fx.stats().pending == 0; }, 50ms));
    fx.clock.advance(1s);
    int no_service = 0;
    for (int i = 0; i < 2; ++i) no_service += error_of(client.receive_envelope()) == "no-service";
    CHECK(no_service == 2);
  }
  SUBCASE("no-service for plain bodies when only typed workers are connected") {
    client.send(zmq::message_t(std::string("plain")));
    REQUIRE(fx.wait_pending(1));
    fx.clock.advance(6s);
    CHECK(error_of(client.receive_envelope()) == "no-service");
  }
}

TEST_CASE("a dead worker's request is requeued at the head of its priority") {
  device_fixture fx({.heartbeat = 1000ms, .liveness = 3});
  raw_client client(fx.ctx, fx.frontend());
  raw_worker w1(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  const envelope first = request("t.first");
  client.send(first);
  auto held = w1.request();
  REQUIRE(held.size() == 3);
  client.send(request("t.second"));
  REQUIRE(fx.wait_pending(1));

  std::optional<raw_worker> w2;
  raw_worker* next = nullptr;
  SUBCASE("silent for liveness x heartbeat") {
    fx.clock.advance(2900ms);
    CHECK_FALSE(fx.wait_stats([](const auto& s) { return s.requeued == 1; }, 50ms));
    fx.clock.advance(200ms);
  }
  SUBCASE("DISCONNECT") { w1.disconnect(); }
  SUBCASE("READY again while holding a request: it restarted, and may take it again") {
    w1.send_ready();
    next = &w1;
  }
  REQUIRE(fx.wait_stats([](const auto& s) { return s.requeued == 1; }));
  if (!next) next = &w2.emplace(fx.ctx, fx.backend());
  auto again = next->request();
  REQUIRE(again.size() == 3);
  CHECK(decode(again.back()).id == first.id);  // ahead of t.second, which waited in the queue
  next->reply_to(again);
  auto reply = client.receive_envelope();
  REQUIRE(reply);
  CHECK(reply->correlation_id == first.id);
}

TEST_CASE("a request whose holders all die is answered 'dead-letter' after max-requeue + 1 deliveries") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_requeue = 2});
  raw_client client(fx.ctx, fx.frontend());
  const envelope e = request("t.poison");
  client.send(e);
  REQUIRE(fx.wait_pending(1));
  for (int delivery = 1; delivery <= 3; ++delivery) {
    raw_worker w(fx.ctx, fx.backend());
    auto r = w.request();
    REQUIRE(r.size() == 3);
    CHECK(decode(r.back()).id == e.id);
    w.disconnect();
    REQUIRE(fx.wait_stats(
        [&](const auto& s) { return s.requeued == std::uint64_t(delivery) || s.dead_lettered == 1; }));
  }
  auto got = client.receive_envelope();
  REQUIRE(got);
  CHECK(error_of(got) == "dead-letter");
  CHECK(got->correlation_id == e.id);
  auto s = fx.stats();
  CHECK(s.dead_lettered == 1);
  CHECK(s.requeued == 2);
  CHECK(s.routed == 3);

  // A retry gets the same answer from the reply cache and reaches no worker.
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  client.send(e);
  CHECK(error_of(client.receive_envelope()) == "dead-letter");
  CHECK_FALSE(w.receives_request_within(50ms));
  CHECK(fx.stats().answered_from_cache == 1);
}

TEST_CASE("a retried request is not queued twice and its reply goes to the newest sender") {
  device_fixture fx(quiet());
  raw_client first(fx.ctx, fx.frontend());
  raw_client second(fx.ctx, fx.frontend());
  const envelope e = request("t.retry");

  SUBCASE("retry while pending") {
    first.send(e);
    REQUIRE(fx.wait_pending(1));
    second.send(e);
    REQUIRE(fx.wait_stats([](const auto& s) { return s.duplicates_suppressed == 1; }));
    CHECK(fx.stats().pending == 1);
    raw_worker w(fx.ctx, fx.backend());
    auto r = w.request();
    REQUIRE(r.size() == 3);
    w.reply_to(r);
    CHECK_FALSE(w.receives_request_within(50ms));
  }
  SUBCASE("retry while in flight; the worker's echoed frames do not steer the reply") {
    raw_worker w(fx.ctx, fx.backend());
    REQUIRE(fx.wait_ready(1));
    first.send(e);
    auto r = w.request();
    REQUIRE(r.size() == 3);
    second.send(e);
    REQUIRE(fx.wait_stats([](const auto& s) { return s.duplicates_suppressed == 1; }));
    w.reply_to(r);  // echoes the first client's identity
    CHECK_FALSE(w.receives_request_within(50ms));
  }
  auto got = second.receive_envelope();
  REQUIRE(got);
  CHECK(got->correlation_id == e.id);
  CHECK_FALSE(first.receive_envelope());

  // Once answered, a retry is answered from the reply cache.
  first.send(e);
  auto cached = first.receive_envelope();
  REQUIRE(cached);
  CHECK(cached->correlation_id == e.id);
  CHECK(cached->type == "test.reply");
  const auto s = fx.stats();
  CHECK(s.answered_from_cache == 1);
  CHECK(s.routed == 1);
  CHECK(s.reply_cache_size == 1);
}

TEST_CASE("the reply cache is bounded") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .reply_cache = 2});
  raw_client client(fx.ctx, fx.frontend());
  raw_worker w(fx.ctx, fx.backend());
  std::vector<envelope> sent;
  for (int i = 0; i < 3; ++i) {
    sent.push_back(request("t.x"));
    client.send(sent.back());
    auto r = w.request();
    REQUIRE(r.size() == 3);
    w.reply_to(r);
    REQUIRE(client.receive_envelope());
  }
  CHECK(fx.stats().reply_cache_size == 2);
  client.send(sent[0]);  // evicted: executes again
  auto r = w.request();
  CHECK(r.size() == 3);
}

TEST_CASE("past max-pending waiting requests, new ones are answered 'overloaded'") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_pending = 2});
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("t.x"));
  client.send(request("t.x"));
  REQUIRE(fx.wait_pending(2));
  const envelope third = request("t.x");
  client.send(third);
  auto got = client.receive_envelope();
  REQUIRE(got);
  CHECK(error_of(got) == "overloaded");
  CHECK(got->correlation_id == third.id);
  CHECK(fx.stats().rejected.at("overloaded") == 1);
  CHECK(fx.stats().pending == 2);
}

TEST_CASE("heartbeats go to every live worker; a heartbeat never makes a busy worker ready") {
  device_fixture fx({.heartbeat = 1000ms, .liveness = 3});
  raw_worker a(fx.ctx, fx.backend());
  raw_worker b(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(2));
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("t.x"));
  client.send(request("t.x"));
  REQUIRE(fx.wait_stats([](const auto& s) { return s.workers_busy == 2; }));
  auto ra = a.request();
  auto rb = b.request();
  REQUIRE(ra.size() == 3);
  REQUIRE(rb.size() == 3);

  // Busy workers keep heartbeating; the device heartbeats both.
  for (int i = 0; i < 5; ++i) {
    fx.clock.advance(1000ms);
    int beats_a = 0, beats_b = 0;
    a.heartbeat();
    b.heartbeat();
    zmq::pollitem_t items[] = {{a.s.handle(), 0, ZMQ_POLLIN, 0}, {b.s.handle(), 0, ZMQ_POLLIN, 0}};
    REQUIRE(wait_until([&] {
      zmq::poll(items, 2, 10ms);
      if (items[0].revents & ZMQ_POLLIN && str(recv_all(a.s).at(0)) == "\x02") ++beats_a;
      if (items[1].revents & ZMQ_POLLIN && str(recv_all(b.s).at(0)) == "\x02") ++beats_b;
      return beats_a > 0 && beats_b > 0;
    }));
  }
  client.send(request("t.third"));
  REQUIRE(fx.wait_pending(1));
  auto s = fx.stats();
  CHECK(s.workers_busy == 2);
  CHECK(s.workers_ready == 0);
  CHECK(s.requeued == 0);  // heartbeats kept them alive through 5 s
  // A reply counts as READY: the next request follows without a READY frame.
  a.reply_to(ra);
  auto next = a.request();
  REQUIRE(next.size() == 3);
  CHECK(decode(next.back()).type == "t.third");
}

TEST_CASE("malformed input on either socket is counted and dropped; the device keeps serving") {
  device_fixture fx(quiet());
  raw_client client(fx.ctx, fx.frontend());
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));

  // Frontend: no delimiter, two bodies, an empty message body after the delimiter is fine (plain).
  client.s.send(zmq::buffer(std::string("no delimiter")));
  client.s.send(zmq::message_t{}, zmq::send_flags::sndmore);
  client.s.send(zmq::buffer(std::string("a")), zmq::send_flags::sndmore);
  client.s.send(zmq::buffer(std::string("b")));
  // A complete msgpack array that is not an envelope: bad-request, answered.
  client.send(zmq::message_t(std::string("\x93\x01\xa1x\x04", 5)));
  auto bad = client.receive_envelope();
  REQUIRE(bad);
  CHECK(error_of(bad) == "bad-request");
  CHECK(bad->header(header::reason).value_or("").find("ZMK/1") != std::string_view::npos);
  // An array of 10 arbitrary small integers.
  std::string noise(11, '\0');
  for (std::size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 37 + 11) & 0x7f);
  noise[0] = '\x9a';
  client.send(zmq::message_t(noise));
  CHECK(error_of(client.receive_envelope()) == "bad-request");

  // Backend: a stranger's reply and heartbeat, a reply from an idle worker,
  // bad READY prefixes, a control byte with extra frames.
  raw_worker stranger(fx.ctx, fx.backend(), {}, false);
  stranger.s.send(zmq::buffer(std::string("\x00\x01\x02\x03\x04", 5)), zmq::send_flags::sndmore);
  stranger.s.send(zmq::message_t{}, zmq::send_flags::sndmore);
  stranger.s.send(zmq::buffer(std::string("reply for nobody")));
  stranger.heartbeat();
  w.s.send(zmq::buffer(std::string("\x00\x01\x02\x03\x04", 5)), zmq::send_flags::sndmore);
  w.s.send(zmq::message_t{}, zmq::send_flags::sndmore);
  w.s.send(zmq::buffer(std::string("unsolicited")));
  stranger.s.send(zmq::buffer("\x01", 1), zmq::send_flags::sndmore);
  stranger.s.send(zmq::buffer(std::string("not msgpack \xc1")));
  stranger.s.send(zmq::buffer("\x02", 1), zmq::send_flags::sndmore);
  stranger.s.send(zmq::buffer(std::string("x")), zmq::send_flags::sndmore);
  stranger.s.send(zmq::buffer(std::string("y")));
  stranger.s.send(zmq::buffer(std::string("?")));

  REQUIRE(fx.wait_stats([](const queue::device_stats& s) {
    auto n = [&](const char* k) { return s.dropped.count(k) ? s.dropped.at(k) : 0; };
    return n("frontend-frames") == 2 && n("unknown-worker") == 2 && n("unknown-reply") == 1 &&
           n("backend-frames") == 3;
  }));
  auto s = fx.stats();
  CHECK(s.rejected.at("bad-request") == 2);
  CHECK(s.workers_ready == 1);

  // Still serving.
  client.send(request("t.after"));
  auto r = w.request();
  REQUIRE(r.size() == 3);
  w.reply_to(r);
  CHECK(client.receive_envelope());
}

TEST_CASE("a frame over max-frame-bytes never reaches a worker") {
  // Over tcp, where ZMQ_MAXMSGSIZE is enforced by the stream engine.
  zmq::context_t ctx;
  queue::device dev(ctx, {.frontend = "tcp://127.0.0.1:*",
                          .backend = "tcp://127.0.0.1:*",
                          .heartbeat = std::chrono::hours(1),
                          .max_frame_bytes = 4096});
  std::thread t([&] { dev.run(); });
  raw_worker tw(ctx, dev.backend_endpoint());
  REQUIRE(wait_until([&] { return dev.stats().workers_ready == 1; }));
  raw_client big(ctx, dev.frontend_endpoint());
  big.send(zmq::message_t(std::string(8192, 'x')));
  CHECK_FALSE(tw.receives_request_within(200ms));
  raw_client small(ctx, dev.frontend_endpoint());
  small.send(zmq::message_t(std::string(1024, 'y')));
  auto r = tw.request();
  REQUIRE(r.size() == 3);
  CHECK(r.back().size() == 1024);
  tw.reply(r, zmq::message_t(std::string("done")));
  CHECK(small.receive());
  dev.stop();
  t.join();
}

TEST_CASE("the admin endpoint answers [empty, \"stats\"] with a msgpack map of counters") {
  device_fixture fx({.admin = unique_inproc("queue-admin"), .heartbeat = std::chrono::hours(1)});
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("t.waiting", 7));
  REQUIRE(fx.wait_pending(1));

  zmq::socket_t admin = test_socket(fx.ctx, zmq::socket_type::req);
  admin.connect(fx.dev.admin_endpoint());
  admin.send(zmq::buffer(std::string("stats")));
  zmq::message_t reply;
  REQUIRE(admin.recv(reply));
  auto h = msgpack::unpack(static_cast<const char*>(reply.data()), reply.size());
  auto m = h.get().as<std::map<std::string, msgpack::object>>();
  for (const char* key : {"received", "routed", "replied", "expired", "requeued", "dead_lettered",
                          "duplicates_suppressed", "rejected", "pending", "pending_by_priority",
                          "pending_by_type", "in_flight", "workers_ready", "workers_busy", "worker_capacity"})
    CHECK_MESSAGE(m.count(key) == 1, key);
  CHECK(m.at("received").as<int>() == 1);
  CHECK(m.at("pending").as<int>() == 1);
  CHECK(m.at("pending_by_priority").as<std::map<std::string, int>>().at("7") == 1);
  CHECK(m.at("pending_by_type").as<std::map<std::string, int>>().at("t.waiting") == 1);
}

TEST_CASE("stop: queued requests are answered 'unavailable', replies from workers still forwarded") {
  device_fixture fx(quiet());
  raw_client client(fx.ctx, fx.frontend());
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  const envelope held = request("t.held");
  client.send(held);
  auto r = w.request();
  REQUIRE(r.size() == 3);
  const envelope queued = request("t.queued");
  client.send(queued);
  REQUIRE(fx.wait_pending(1));

  fx.dev.stop();
  auto got = client.receive_envelope();
  REQUIRE(got);
  CHECK(error_of(got) == "unavailable");
  CHECK(got->correlation_id == queued.id);
  CHECK(got->header(header::reason) == "shutting down");
  client.send(request("t.late"));
  CHECK(error_of(client.receive_envelope()) == "unavailable");
  CHECK_FALSE(fx.finished());  // still waiting for the held request

  w.reply_to(r);
  auto reply = client.receive_envelope();
  REQUIRE(reply);
  CHECK(reply->correlation_id == held.id);
  CHECK(wait_until([&] { return fx.finished(); }));
}

TEST_CASE("a reply for a client that has gone is counted, cached, and the device keeps serving") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  const envelope e = request("t.orphan");
  {
    raw_client gone(fx.ctx, fx.frontend());
    gone.send(e);
    auto r = w.request();
    REQUIRE(r.size() == 3);
    gone.s.close();
    // ROUTER_MANDATORY: the device learns the client is unreachable when it replies.
    wait_until([] { return false; }, 50ms);
    w.reply_to(r);
  }
  REQUIRE(
      fx.wait_stats([](const queue::device_stats& s) { return s.dropped.count("client-unreachable") == 1; }));
  raw_client back(fx.ctx, fx.frontend());
  back.send(e);  // the client's retry from a new socket
  auto cached = back.receive_envelope();
  REQUIRE(cached);
  CHECK(cached->correlation_id == e.id);
  CHECK_FALSE(w.receives_request_within(50ms));
}

TEST_CASE("random frames on both sockets never stop the device") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  raw_client noisy_client(fx.ctx, fx.frontend());
  raw_worker noisy_worker(fx.ctx, fx.backend(), {}, false);
  std::mt19937 rng(1234);
  auto random_frame = [&] {
    std::string f(rng() % 40, '\0');
    for (auto& c : f) c = static_cast<char>(rng());
    if (!f.empty() && rng() % 3 == 0) f[0] = static_cast<char>(0x90 | (rng() % 16));  // looks like an array
    return f;
  };
  for (int i = 0; i < 300; ++i) {
    zmq::socket_t& s = i % 2 ? noisy_client.s : noisy_worker.s;
    const int n = 1 + static_cast<int>(rng() % 5);
    for (int k = 0; k < n; ++k) {
      const std::string f = k == 1 && rng() % 2 ? std::string() : random_frame();
      s.send(zmq::buffer(f), k + 1 < n ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  REQUIRE(fx.wait_stats([](const queue::device_stats& s) {
    std::uint64_t n = s.received;
    for (const auto& [k, v] : s.dropped) n += v;
    return n >= 150;
  }));
  // With this seed no noise frame is a READY, so `w` is the only worker (a
  // noise READY would be a legitimate worker that never replies).
  const auto after = fx.stats();
  REQUIRE(after.workers_ready + after.workers_busy == 1);
  // Noise that is a plain request reaches `w`, which answers it; a real client is served.
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("t.after-noise"));
  std::optional<envelope> reply;
  REQUIRE(wait_until([&] {
    zmq::pollitem_t it{w.s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&it, 1, 10ms);
    if (it.revents & ZMQ_POLLIN) {
      auto r = w.request();
      if (r.size() >= 3 && looks_like_envelope(as_string_view(r.back()))) {
        try {
          if (decode(r.back()).type == "t.after-noise") w.reply_to(r);
        } catch (const zmqkit::error&) {
        }
      } else if (r.size() >= 2) {
        w.reply(r, zmq::message_t(std::string("noise")));
      }
    }
    zmq::pollitem_t c{client.s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&c, 1, 0ms);
    if (c.revents & ZMQ_POLLIN) reply = client.receive_envelope();
    return reply.has_value();
  }));
  CHECK(reply->type == "test.reply");
}

TEST_CASE("bad options are refused with zmqkit::error{bad_config}") {
  zmq::context_t ctx;
  auto refused = [&](queue::device_options o) {
    try {
      queue::device dev(ctx, std::move(o));
    } catch (const zmqkit::error& e) {
      return e.code() == errc::bad_config;
    }
    return false;
  };
  CHECK(refused({.frontend = "", .backend = unique_inproc()}));
  CHECK(refused({.frontend = unique_inproc(), .backend = unique_inproc(), .liveness = 0}));
  CHECK(refused({.frontend = unique_inproc(), .backend = unique_inproc(), .heartbeat = 0ms}));
  CHECK(refused({.frontend = "nonsense", .backend = unique_inproc()}));
  CHECK(refused({.frontend = unique_inproc(), .backend = unique_inproc(), .delivery_timeout = -1ms}));
}

TEST_CASE("a request at a worker past its ttl is answered 'expired'; the worker's later reply is dropped") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  raw_client client(fx.ctx, fx.frontend());
  envelope e = request("t.slow", default_priority, fx.clock);
  e.ttl = 500ms;
  client.send(e);
  auto held = w.request();
  REQUIRE(held.size() == 3);
  fx.clock.advance(500ms);
  CHECK(error_of(client.receive_envelope()) == "expired");
  // The worker keeps its slot until it answers: nothing else is sent to it meanwhile.
  client.send(request("t.next", default_priority, fx.clock));
  REQUIRE(fx.wait_pending(1));
  w.reply_to(held);
  REQUIRE(fx.wait_stats([](const auto& s) { return s.dropped.count("late-reply") == 1; }));
  auto next = w.request();
  REQUIRE(next.size() == 3);
  CHECK(decode(next.back()).type == "t.next");
  w.reply_to(next);
  auto got = client.receive_envelope();
  REQUIRE(got);
  CHECK(got->type == "test.reply");
  CHECK(fx.stats().expired == 1);
}

TEST_CASE("past the delivery timeout a request is requeued, then dead-lettered; the first reply wins") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_requeue = 1, .delivery_timeout = 1000ms});
  raw_worker a(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  raw_worker b(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(2));
  raw_client client(fx.ctx, fx.frontend());
  const envelope e = request("t.job", default_priority, fx.clock);
  client.send(e);
  auto at_a = a.request();
  REQUIRE(at_a.size() == 3);
  fx.clock.advance(999ms);
  CHECK_FALSE(b.receives_request_within(30ms));
  fx.clock.advance(1ms);
  auto at_b = b.request();
  REQUIRE(at_b.size() == 3);
  CHECK(decode(at_b.back()).id == e.id);
  SUBCASE("the first holder answers late: its reply wins, the second holder's is dropped") {
    a.reply_to(at_a);
    auto got = client.receive_envelope();
    REQUIRE(got);
    CHECK(got->correlation_id == e.id);
    b.reply_to(at_b);
    REQUIRE(fx.wait_stats([](const auto& s) { return s.dropped.count("late-reply") == 1; }));
    CHECK(fx.stats().in_flight == 0);
  }
  SUBCASE("nobody answers: dead-letter after max-requeue + 1 deliveries") {
    fx.clock.advance(1000ms);
    CHECK(error_of(client.receive_envelope()) == "dead-letter");
    const auto s = fx.stats();
    CHECK(s.delivery_timeouts == 2);
    CHECK(s.requeued == 1);
    CHECK(s.in_flight == 0);
  }
}

TEST_CASE("a worker evicted for silence that replies after all: first reply wins, and it is registered again") {
  device_fixture fx({.heartbeat = 1000ms, .liveness = 3});
  raw_worker slow(fx.ctx, fx.backend(), {"t."});
  REQUIRE(fx.wait_ready(1));
  raw_client client(fx.ctx, fx.frontend());
  const envelope e = request("t.job", default_priority, fx.clock);
  client.send(e);
  auto at_slow = slow.request();
  REQUIRE(at_slow.size() == 3);
  fx.clock.advance(2999ms);
  raw_worker other(fx.ctx, fx.backend());  // last seen now: outlives slow
  REQUIRE(fx.wait_ready(1));
  fx.clock.advance(2ms);  // slow has been silent for longer than liveness x heartbeat: evicted, its request requeued
  auto at_other = other.request();
  REQUIRE(at_other.size() == 3);
  CHECK(decode(at_other.back()).id == e.id);
  slow.reply_to(at_slow);
  auto got = client.receive_envelope();
  REQUIRE(got);
  CHECK(got->correlation_id == e.id);
  REQUIRE(fx.wait_stats([](const auto& s) { return s.workers_returned == 1; }));
  other.reply_to(at_other);
  REQUIRE(fx.wait_stats([](const auto& s) { return s.dropped.count("late-reply") == 1; }));
  CHECK_FALSE(client.receive_envelope());
  // Registered again as it announced itself: serving "t." only.
  client.send(request("u.job", default_priority, fx.clock));
  CHECK_FALSE(slow.receives_request_within(30ms));
  REQUIRE(other.request().size() == 3);
  client.send(request("t.next", default_priority, fx.clock));
  auto next = slow.request();
  REQUIRE(next.size() == 3);
  CHECK(decode(next.back()).type == "t.next");
}

// --- worker capacity (READY {"prefixes": [...], "capacity": n}) ----------------

namespace {
// Returns: `fn(packer)`'s output as a frame.
template <class Fn>
std::string packed(Fn&& fn) {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  fn(pk);
  return std::string(b.data(), b.size());
}

bool wait_workers(device_fixture& fx, std::size_t n) {
  return fx.wait_stats([n](const auto& s) { return s.workers_ready + s.workers_busy == n; });
}
}  // namespace

TEST_CASE("a capacity-3 worker holds 3 requests at once, and each reply lets one more through") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend(), {}, false);
  w.send_ready_capacity(3);
  REQUIRE(fx.wait_ready(1));
  CHECK(fx.stats().worker_capacity == 3);
  raw_client client(fx.ctx, fx.frontend());
  std::vector<envelope> sent;
  for (int i = 0; i < 5; ++i) {
    sent.push_back(request("t." + std::to_string(i)));
    client.send(sent.back());
  }

  std::vector<std::vector<zmq::message_t>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(w.request());
    REQUIRE(held.back().size() == 3);
    CHECK(decode(held.back().back()).id == sent[static_cast<std::size_t>(i)].id);
  }
  CHECK_FALSE(w.receives_request_within(50ms));  // not a 4th
  w.heartbeat();                                 // proves it alive, frees no slot
  CHECK_FALSE(w.receives_request_within(50ms));
  auto s = fx.stats();
  CHECK(s.in_flight == 3);
  CHECK(s.pending == 2);
  CHECK(s.workers_busy == 1);
  CHECK(s.workers_ready == 0);

  // Out of order: the reply to the second goes to its own request (by correlation id).
  w.reply_to(held[1]);
  auto r1 = client.receive_envelope();
  REQUIRE(r1);
  CHECK(r1->correlation_id == sent[1].id);
  auto fourth = w.request();
  REQUIRE(fourth.size() == 3);
  CHECK(decode(fourth.back()).id == sent[3].id);
  CHECK_FALSE(w.receives_request_within(50ms));  // still 3 held

  w.reply_to(held[0]);
  auto r0 = client.receive_envelope();
  REQUIRE(r0);
  CHECK(r0->correlation_id == sent[0].id);
  auto fifth = w.request();
  REQUIRE(fifth.size() == 3);
  CHECK(decode(fifth.back()).id == sent[4].id);

  w.reply_to(held[2]);
  w.reply_to(fourth);
  w.reply_to(fifth);
  for (int i = 0; i < 3; ++i) CHECK(client.receive_envelope());
  REQUIRE(fx.wait_ready(1));
  s = fx.stats();
  CHECK(s.in_flight == 0);
  CHECK(s.replied == 5);
  CHECK(s.workers_busy == 0);
}

namespace {
// `w` (capacity 2) takes a plain body from each client and answers the second
// first: each reply must reach the client whose route it echoes.
void check_plain_replies_by_route(raw_worker& w, raw_client& first, raw_client& second) {
  first.send(zmq::message_t(std::string("from first")));
  auto a = w.request();
  REQUIRE(a.size() == 3);
  second.send(zmq::message_t(std::string("from second")));
  auto b = w.request();
  REQUIRE(b.size() == 3);
  w.reply(b, zmq::message_t(std::string("to second")));
  w.reply(a, zmq::message_t(std::string("to first")));
  const auto got_second = second.receive();
  const auto got_first = first.receive();
  REQUIRE(got_second);
  REQUIRE(got_first);
  CHECK(str(*got_second) == "to second");
  CHECK(str(*got_first) == "to first");
}
}  // namespace

TEST_CASE("a worker holding several requests is matched by correlation id, else by the route it echoes") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend(), {}, false);
  w.send_ready_capacity(2);
  REQUIRE(fx.wait_ready(1));
  raw_client first(fx.ctx, fx.frontend());
  raw_client second(fx.ctx, fx.frontend());

  SUBCASE("plain bodies (no correlation id): by echoed route") { check_plain_replies_by_route(w, first, second); }
  SUBCASE("a reply whose correlation id the worker does not hold is dropped") {
    const envelope e = request("t.x");
    first.send(e);
    auto a = w.request();
    REQUIRE(a.size() == 3);
    second.send(request("t.y"));
    auto b = w.request();
    REQUIRE(b.size() == 3);
    w.reply(a, encode(make_reply(request("t.stranger"), "test.reply", std::string("?"))));
    REQUIRE(fx.wait_stats([](const auto& s) { return s.dropped.count("unknown-reply") == 1; }));
    CHECK(fx.stats().in_flight == 2);
    w.reply_to(a);
    auto got = first.receive_envelope();
    REQUIRE(got);
    CHECK(got->correlation_id == e.id);
  }
}

TEST_CASE("plain replies find their client by the route they echo, short or long") {
  // Identities of up to 15 bytes are compared as they are, longer ones by a
  // keyed hash: pairs that differ only in their last byte, on either side of that.
  for (const std::string stem : {std::string("c"), std::string(14, 'c'), std::string(15, 'c'), std::string(40, 'c')}) {
    CAPTURE(stem.size());
    device_fixture fx(quiet());
    raw_worker w(fx.ctx, fx.backend(), {}, false);
    w.send_ready_capacity(2);
    REQUIRE(fx.wait_ready(1));
    raw_client first(fx.ctx, fx.frontend(), stem + "1");
    raw_client second(fx.ctx, fx.frontend(), stem + "2");
    check_plain_replies_by_route(w, first, second);
    CHECK(fx.stats().replied == 2);
  }
}

TEST_CASE("LRU among workers with a free slot: requests alternate between capacity-2 workers") {
  device_fixture fx(quiet());
  raw_worker a(fx.ctx, fx.backend(), {}, false);
  a.send_ready_capacity(2);
  REQUIRE(fx.wait_ready(1));
  raw_worker b(fx.ctx, fx.backend(), {}, false);
  b.send_ready_capacity(2);
  REQUIRE(fx.wait_ready(2));
  raw_client client(fx.ctx, fx.frontend());
  for (int i = 0; i < 4; ++i) client.send(request("t.x"));
  // a, b, a, b: a worker that just took one goes behind the other.
  for (raw_worker* w : {&a, &b, &a, &b}) CHECK(w->request().size() == 3);
  client.send(request("t.fifth"));
  REQUIRE(fx.wait_pending(1));
  auto s = fx.stats();
  CHECK(s.workers_busy == 2);
  CHECK(s.in_flight == 4);
  CHECK(s.worker_capacity == 4);
}

TEST_CASE("a dead capacity-3 worker's requests are all requeued at the head of their priority, in order") {
  device_fixture fx({.heartbeat = 1000ms, .liveness = 3});
  raw_client client(fx.ctx, fx.frontend());
  raw_worker w1(fx.ctx, fx.backend(), {}, false);
  w1.send_ready_capacity(3);
  REQUIRE(fx.wait_ready(1));
  std::vector<envelope> sent;
  for (int i = 0; i < 3; ++i) {
    sent.push_back(request("t.held-" + std::to_string(i)));
    client.send(sent.back());
    REQUIRE(w1.request().size() == 3);
  }
  const envelope waiting = request("t.waiting");
  client.send(waiting);
  REQUIRE(fx.wait_pending(1));

  std::optional<raw_worker> w2;
  raw_worker* next = nullptr;
  SUBCASE("silent for liveness x heartbeat") {
    fx.clock.advance(2900ms);
    CHECK_FALSE(fx.wait_stats([](const auto& s) { return s.requeued > 0; }, 50ms));
    fx.clock.advance(200ms);
  }
  SUBCASE("DISCONNECT") { w1.disconnect(); }
  SUBCASE("READY again while holding requests: it restarted, and may take them again") {
    w1.send_ready();  // bare READY: now capacity 1
    next = &w1;
  }
  REQUIRE(fx.wait_stats([](const auto& s) { return s.requeued == 3; }));
  if (!next) next = &w2.emplace(fx.ctx, fx.backend());  // capacity 1
  std::vector<message_id> order;
  for (int i = 0; i < 4; ++i) {
    auto r = next->request();
    REQUIRE(r.size() == 3);
    order.push_back(decode(r.back()).id);
    next->reply_to(r);
    REQUIRE(client.receive_envelope());
  }
  CHECK(order == std::vector<message_id>{sent[0].id, sent[1].id, sent[2].id, waiting.id});
  const auto s = fx.stats();
  CHECK(s.routed == 3 + 4);
  CHECK(s.replied == 4);
}

TEST_CASE("every request a dead worker held counts a delivery toward max-requeue") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_requeue = 1});
  raw_client client(fx.ctx, fx.frontend());
  const envelope a = request("t.a"), b = request("t.b");
  client.send(a);
  client.send(b);
  REQUIRE(fx.wait_pending(2));
  for (int delivery = 1; delivery <= 2; ++delivery) {
    raw_worker w(fx.ctx, fx.backend(), {}, false);
    w.send_ready_capacity(2);
    REQUIRE(w.request().size() == 3);
    REQUIRE(w.request().size() == 3);
    w.disconnect();
    REQUIRE(fx.wait_stats(
        [&](const auto& s) { return s.requeued == 2 * std::uint64_t(delivery) || s.dead_lettered == 2; }));
  }
  std::set<message_id> dead;
  for (int i = 0; i < 2; ++i) {
    auto got = client.receive_envelope();
    REQUIRE(got);
    CHECK(error_of(got) == "dead-letter");
    dead.insert(*got->correlation_id);
  }
  CHECK(dead == std::set<message_id>{a.id, b.id});
  const auto s = fx.stats();
  CHECK(s.routed == 4);
  CHECK(s.requeued == 2);
  CHECK(s.dead_lettered == 2);
}

TEST_CASE("the bare and array READY forms, and a map without capacity, mean capacity 1") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend(), {}, false);
  SUBCASE("bare READY (Paranoid Pirate)") { w.send_ready(); }
  SUBCASE("array of prefixes") { w.send_ready({"t."}); }
  SUBCASE("map with prefixes only") {
    w.send_ready_frame(packed([](auto& pk) {
      pk.pack_map(1);
      pk.pack(std::string("prefixes"));
      pk.pack(std::vector<std::string>{"t."});
    }));
  }
  SUBCASE("empty map") {
    w.send_ready_frame(packed([](auto& pk) { pk.pack_map(0); }));
  }
  REQUIRE(fx.wait_ready(1));
  CHECK(fx.stats().worker_capacity == 1);
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("t.one"));
  client.send(request("t.two"));
  auto r = w.request();
  REQUIRE(r.size() == 3);
  CHECK_FALSE(w.receives_request_within(50ms));
  CHECK(fx.stats().workers_busy == 1);
  w.reply_to(r);
  CHECK(w.request().size() == 3);
}

TEST_CASE("a map READY's prefixes restrict the types, and an unknown key is ignored") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend(), {}, false);
  w.send_ready_frame(packed([](auto& pk) {
    pk.pack_map(3);
    pk.pack(std::string("future-key"));
    pk.pack(42);
    pk.pack(std::string("prefixes"));
    pk.pack(std::vector<std::string>{"order."});
    pk.pack(std::string("capacity"));
    pk.pack(2);
  }));
  REQUIRE(fx.wait_ready(1));
  CHECK(fx.stats().worker_capacity == 2);
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("course.x"));
  REQUIRE(fx.wait_pending(1));
  client.send(request("order.a"));
  client.send(request("order.b"));
  CHECK(decode(w.request().back()).type == "order.a");
  CHECK(decode(w.request().back()).type == "order.b");
  CHECK_FALSE(w.receives_request_within(50ms));
}

TEST_CASE("a malformed READY map is counted and dropped; the worker is not registered") {
  device_fixture fx(quiet());
  raw_worker w(fx.ctx, fx.backend(), {}, false);
  auto capacity_of = [](auto value) {
    return packed([&](auto& pk) {
      pk.pack_map(1);
      pk.pack(std::string("capacity"));
      pk.pack(value);
    });
  };
  std::string frame;
  SUBCASE("capacity 0") { frame = capacity_of(0); }
  SUBCASE("capacity 1025") { frame = capacity_of(1025); }
  SUBCASE("negative capacity") { frame = capacity_of(-3); }
  SUBCASE("capacity as a string") { frame = capacity_of(std::string("3")); }
  SUBCASE("capacity as a float") { frame = capacity_of(2.5); }
  SUBCASE("prefixes not an array") {
    frame = packed([](auto& pk) {
      pk.pack_map(1);
      pk.pack(std::string("prefixes"));
      pk.pack(std::string("order."));
    });
  }
  SUBCASE("a prefix that is not a string") {
    frame = packed([](auto& pk) {
      pk.pack_map(1);
      pk.pack(std::string("prefixes"));
      pk.pack(std::vector<int>{1});
    });
  }
  SUBCASE("a key that is not a string") {
    frame = packed([](auto& pk) {
      pk.pack_map(1);
      pk.pack(1);
      pk.pack(3);
    });
  }
  SUBCASE("a repeated key") {
    frame = packed([](auto& pk) {
      pk.pack_map(2);
      pk.pack(std::string("capacity"));
      pk.pack(2);
      pk.pack(std::string("capacity"));
      pk.pack(3);
    });
  }
  SUBCASE("trailing bytes") { frame = capacity_of(2) + "x"; }
  SUBCASE("truncated map") { frame = capacity_of(2).substr(0, 5); }
  w.send_ready_frame(frame);
  REQUIRE(fx.wait_stats([](const auto& s) { return s.dropped.count("backend-frames") == 1; }));
  CHECK(wait_workers(fx, 0));
  CHECK(fx.stats().worker_capacity == 0);
  // It is not a worker: a request waits rather than reaching it.
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("t.x"));
  REQUIRE(fx.wait_pending(1));
  CHECK_FALSE(w.receives_request_within(50ms));
  // A good READY afterwards registers it.
  w.send_ready_capacity(2);
  CHECK(w.request().size() == 3);
}
