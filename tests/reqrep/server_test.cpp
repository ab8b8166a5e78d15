// The direct server: reply cache, duplicates while executing, error replies,
// plain bodies. Raw DEALERs play the clients so each frame is under the test's control.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <zmqkit/reqrep/server.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::reqrep;
using zmqkit::test::frames;

namespace {

zmq::socket_t dealer_to(zmq::context_t& ctx, const std::string& ep) {
  auto s = test::test_socket(ctx, zmq::socket_type::dealer);
  s.connect(ep);
  return s;
}

void send_request(zmq::socket_t& s, const zmq::message_t& body) {
  frames f;
  f.emplace_back();
  f.push_back(test::copy_of(body));
  test::send_frames(s, f);
}

// Waits for [empty, body] on `s` while driving the server's loop.
std::optional<zmq::message_t> reply_on(zmq::socket_t& s, server& srv,
                                       std::chrono::milliseconds deadline = 3000ms) {
  std::optional<frames> got;
  test::wait_until(
      [&] {
        srv.poll(1ms);
        return (got = test::try_recv_frames(s)).has_value();
      },
      deadline);
  if (!got || got->size() != 2) return std::nullopt;
  return std::move(got->at(1));
}

struct counting_handler {
  std::map<message_id, int>* executions;
  envelope operator()(const envelope& req) const {
    ++(*executions)[req.id];
    return make_reply(req, "done");
  }
};

}  // namespace

TEST_CASE("server: a retried request is answered from the cache, not executed again") {
  zmq::context_t ctx;
  std::map<message_id, int> executions;
  server srv(ctx, "tcp://127.0.0.1:*", counting_handler{&executions});
  auto client = dealer_to(ctx, srv.endpoint());
  const envelope req = make_envelope("q");
  const zmq::message_t frame = encode(req);
  send_request(client, frame);
  auto first = reply_on(client, srv);
  send_request(client, frame);
  auto second = reply_on(client, srv);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(*first == *second);  // byte-identical: the same reply
  CHECK(decode(*first).correlation_id == req.id);
  CHECK(executions[req.id] == 1);
  CHECK(srv.stats().cache_hits == 1);
}

TEST_CASE("server: the cache forgets replies past max_age and beyond max_entries") {
  zmq::context_t ctx;
  manual_clock clock;
  std::map<message_id, int> executions;
  server srv(ctx, "tcp://127.0.0.1:*", counting_handler{&executions},
             {.cache = {.max_entries = 2, .max_age = 10s}, .clock = &clock});
  auto client = dealer_to(ctx, srv.endpoint());
  const envelope a = make_envelope("a"), b = make_envelope("b"), c = make_envelope("c");
  auto ask = [&](const envelope& e) {
    send_request(client, encode(e));
    REQUIRE(reply_on(client, srv));
  };

  SUBCASE("age") {
    ask(a);
    clock.advance(9999ms);
    ask(a);
    CHECK(executions[a.id] == 1);
    clock.advance(10s);
    ask(a);  // evicted: a retry this late runs again, as documented
    CHECK(executions[a.id] == 2);
  }
  SUBCASE("size") {
    ask(a);
    ask(b);
    ask(c);  // evicts a, the oldest
    ask(b);
    CHECK(executions[b.id] == 1);
    ask(a);
    CHECK(executions[a.id] == 2);
    CHECK(srv.cached() == 2);
  }
}

TEST_CASE("server: a duplicate arriving while the first copy executes is not executed") {
  zmq::context_t ctx;
  std::atomic<int> executions{0};
  std::atomic<bool> release{false};
  server srv(ctx, "tcp://127.0.0.1:*",
             [&](const envelope& req) {
               ++executions;
               release.wait(false);  // a slow handler: busy until the test says so
               return make_reply(req, "done");
             },
             {.threads = 2});
  test::release_on_exit guard{release};  // a failed REQUIRE must not leave the handler blocked
  auto first = dealer_to(ctx, srv.endpoint());
  auto second = dealer_to(ctx, srv.endpoint());  // the same request through another connection
  const envelope req = make_envelope("slow");
  const zmq::message_t frame = encode(req);
  send_request(first, frame);
  REQUIRE(test::wait_until([&] {
    srv.poll(1ms);
    return executions == 1;
  }));
  send_request(first, frame);   // a retry on the same connection
  send_request(second, frame);  // and one on another
  REQUIRE(test::wait_until([&] {
    srv.poll(1ms);
    return srv.stats().joined == 2;
  }));
  release = true;
  release.notify_all();
  auto a = reply_on(first, srv);
  auto b = reply_on(second, srv);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(decode(*a).correlation_id == req.id);
  CHECK(*a == *b);
  CHECK(executions == 1);
  CHECK(srv.stats().executed == 1);
  CHECK_FALSE(reply_on(first, srv, 100ms));  // one reply per connection, not one per copy
}

TEST_CASE("server: a handler that throws produces an error reply") {
  zmq::context_t ctx;
  int threads = 0;
  SUBCASE("inline") { threads = 0; }
  SUBCASE("on a handler thread") { threads = 1; }
  server srv(ctx, "tcp://127.0.0.1:*",
             [](const envelope& req) -> envelope {
               if (req.type == "custom") throw handler_error(reply_error::overloaded, "too busy");
               if (req.type == "odd") throw 42;
               if (req.type == "body") (void)req.body_as<int>();  // the client's mistake: bad_body
               throw std::runtime_error("no such sku");
             },
             {.threads = threads});
  auto client = dealer_to(ctx, srv.endpoint());
  auto ask = [&](const envelope& e) {
    send_request(client, encode(e));
    auto r = reply_on(client, srv);
    REQUIRE(r);
    envelope reply = decode(*r);
    CHECK(reply.correlation_id == e.id);
    CHECK(reply.is_error());
    CHECK(reply.body.empty());
    return reply;
  };
  const envelope plain_throw = ask(make_envelope("q"));
  CHECK(plain_throw.error_code() == "internal");  // a server fault, not the client's mistake
  CHECK(plain_throw.header(header::reason) == "no such sku");
  const envelope chosen = ask(make_envelope("custom"));
  CHECK(chosen.error_code() == "overloaded");
  CHECK(chosen.header(header::reason) == "too busy");
  CHECK(ask(make_envelope("odd")).error_code() == "internal");
  const envelope bad_body = ask(make_envelope("body", std::string("not an int")));
  CHECK(bad_body.error_code() == "bad-request");
  CHECK(std::string(bad_body.header(header::reason).value_or("")).find("body") != std::string::npos);
  CHECK(srv.stats().handler_errors == 4);
}

TEST_CASE("server: a malformed envelope is answered bad-request and never executed") {
  zmq::context_t ctx;
  std::map<message_id, int> executions;
  server srv(ctx, "tcp://127.0.0.1:*", counting_handler{&executions});
  auto client = dealer_to(ctx, srv.endpoint());
  send_request(client, zmq::message_t("\x93\x01\xa1q\x04", 5));  // an array of 3: too short
  auto r = reply_on(client, srv);
  REQUIRE(r);
  const envelope reply = decode(*r);
  CHECK(reply.error_code() == "bad-request");
  CHECK_FALSE(reply.correlation_id);
  CHECK(executions.empty());
  CHECK(srv.stats().bad_requests == 1);
}

TEST_CASE("server: a bad-request reply names the request's id when element 5 is one") {
  zmq::context_t ctx;
  std::map<message_id, int> executions;
  server srv(ctx, "tcp://127.0.0.1:*", counting_handler{&executions});
  auto client = dealer_to(ctx, srv.endpoint());
  envelope req = make_envelope("t.x", std::string("hi"));
  req.priority = 4;
  zmq::message_t frame = encode(req);
  auto* bytes = static_cast<unsigned char*>(frame.data());
  REQUIRE(bytes[6] == 4);  // [array9, version, "t.x" (4 bytes), priority, ...]
  bytes[6] = 12;           // out of range: the envelope is malformed, its id still readable
  send_request(client, std::move(frame));
  auto r = reply_on(client, srv);
  REQUIRE(r);
  const envelope reply = decode(*r);
  CHECK(reply.error_code() == "bad-request");
  CHECK(reply.correlation_id == req.id);  // so a retrying client can match it
  CHECK(executions.empty());
}

TEST_CASE("server: an expired request is answered expired and never executed") {
  zmq::context_t ctx;
  manual_clock clock;
  std::map<message_id, int> executions;
  server srv(ctx, "tcp://127.0.0.1:*", counting_handler{&executions}, {.clock = &clock});
  auto client = dealer_to(ctx, srv.endpoint());
  envelope req = make_envelope("q", clock);
  req.ttl = 100ms;
  clock.advance(101ms);
  send_request(client, encode(req));
  auto r = reply_on(client, srv);
  REQUIRE(r);
  CHECK(decode(*r).error_code() == "expired");
  CHECK(executions.empty());
}

TEST_CASE("server: plain bodies go to the plain handler, or are dropped without one") {
  zmq::context_t ctx;
  std::map<message_id, int> executions;
  SUBCASE("with a plain handler") {
    server srv(ctx, "tcp://127.0.0.1:*", counting_handler{&executions},
               {.plain = [](std::string_view body) { return "echo:" + std::string(body); }});
    auto client = dealer_to(ctx, srv.endpoint());
    send_request(client, zmq::message_t(std::string_view("hello")));
    auto r = reply_on(client, srv);
    REQUIRE(r);
    CHECK(r->to_string() == "echo:hello");
  }
  SUBCASE("without") {
    server srv(ctx, "tcp://127.0.0.1:*", counting_handler{&executions});
    auto client = dealer_to(ctx, srv.endpoint());
    send_request(client, zmq::message_t(std::string_view("hello")));
    REQUIRE(test::wait_until([&] {
      srv.poll(1ms);
      return srv.stats().dropped == 1;
    }));
  }
}
