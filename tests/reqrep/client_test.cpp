// The retrying client against fake ROUTER peers (to lose, delay and duplicate
// replies at will) and against the real server. Retry deadlines run on a
// manual clock: the test advances it, nothing sleeps.
#include <doctest/doctest.h>

#include <map>
#include <thread>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/server.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::reqrep;
using zmqkit::test::frames;

namespace {

// A ROUTER that stands in for a server: the test decides what to answer.
struct fake_server {
  zmq::socket_t socket;
  std::string endpoint;
  explicit fake_server(zmq::context_t& ctx) : socket(test::test_socket(ctx, zmq::socket_type::router)) {
    endpoint = test::bind_ephemeral(socket);
  }
  // Receives the next request while `c` runs its loop. Returns: [identity, empty, envelope] frames.
  frames next(client& c) {
    std::optional<frames> got;
    REQUIRE(test::wait_until([&] {
      c.poll(0ms);
      got = test::try_recv_frames(socket);
      return got.has_value();
    }));
    REQUIRE(got->size() == 3);
    return std::move(*got);
  }
  void answer(const frames& request, const envelope& reply) {
    frames out;
    out.push_back(test::copy_of(request[0]));
    out.emplace_back();
    out.push_back(encode(reply));
    test::send_frames(socket, out);
  }
};

envelope request_of(const frames& f) { return decode(f[2]); }

std::optional<completion> wait_completion(client& c, std::chrono::milliseconds deadline = 3000ms) {
  std::optional<completion> got;
  test::wait_until([&] { return (got = c.poll(10ms)).has_value(); }, deadline);
  return got;
}

}  // namespace

TEST_CASE("client: a lost reply is retried with the same id and the server executes it once") {
  zmq::context_t ctx;
  manual_clock clock;
  std::map<message_id, int> executions;
  server srv(ctx, "tcp://127.0.0.1:*", [&](const envelope& req) {
    ++executions[req.id];
    return make_reply(req, "echo.reply", req.body_as<std::string>());
  });
  // A proxy that drops the first reply on its way back, and records the attempts it sees.
  auto front = test::test_socket(ctx, zmq::socket_type::router);
  auto back = test::test_socket(ctx, zmq::socket_type::dealer);
  const std::string front_ep = test::bind_ephemeral(front);
  back.connect(srv.endpoint());

  client c(ctx, front_ep, {.retry = {.timeout = 1000ms, .retries = 2}, .clock = &clock});
  const message_id id = c.send(make_envelope("echo", std::string("hi")));
  std::vector<std::string> attempts;
  int replies_dropped = 0;
  std::optional<completion> done;
  REQUIRE(test::wait_until([&] {
    srv.poll(0ms);
    if (auto f = test::try_recv_frames(front)) {  // [client id, empty, envelope] -> server
      attempts.push_back(std::string(decode(f->at(2)).header(header::attempt).value_or("-")));
      frames fwd;
      fwd.push_back(test::copy_of(f->at(0)));  // keep the client id as a frame the server echoes
      fwd.emplace_back();
      fwd.push_back(std::move(f->at(2)));
      test::send_frames(back, fwd);
    }
    if (auto r = test::try_recv_frames(back)) {  // [client id, empty, reply]
      if (replies_dropped++ == 0) {
        clock.advance(1000ms);  // the client's first attempt now times out
      } else {
        frames out;
        out.push_back(std::move(r->at(0)));
        out.emplace_back();
        out.push_back(std::move(r->at(2)));
        test::send_frames(front, out);
      }
    }
    done = c.poll(0ms);
    return done.has_value();
  }));
  CHECK(done->id == id);
  REQUIRE(done->outcome.ok());
  CHECK(done->outcome.reply().body_as<std::string>() == "hi");
  CHECK(executions.size() == 1);
  CHECK(executions[id] == 1);
  CHECK(attempts == std::vector<std::string>{"-", "1"});
  CHECK(srv.stats().cache_hits == 1);
  CHECK(c.stats().retries == 1);
}

TEST_CASE("client: stale and duplicate replies are discarded, never returned for another request") {
  zmq::context_t ctx;
  manual_clock clock;
  fake_server fake(ctx);
  client c(ctx, fake.endpoint, {.retry = {.timeout = 1000ms, .retries = 3}, .clock = &clock});
  const message_id a = c.send(make_envelope("job", std::string("a")));
  const frames first_a = fake.next(c);
  clock.advance(1000ms);  // attempt 1 of a times out: a is resent
  const frames second_a = fake.next(c);
  CHECK(request_of(second_a).id == a);
  CHECK(request_of(second_a).header(header::attempt) == "1");

  const message_id b = c.send(make_envelope("job", std::string("b")));
  const frames first_b = fake.next(c);
  // The late reply to attempt 1 completes a; the reply to attempt 2 is a duplicate.
  fake.answer(first_a, make_reply(request_of(first_a), "job.done", std::string("for a")));
  fake.answer(second_a, make_reply(request_of(second_a), "job.done", std::string("for a again")));
  fake.answer(first_a, make_reply(make_envelope("other"), "job.done", std::string("for nobody")));
  auto done = wait_completion(c);
  REQUIRE(done);
  CHECK(done->id == a);
  CHECK(done->outcome.reply().body_as<std::string>() == "for a");
  REQUIRE(test::wait_until([&] {
    c.poll(0ms);
    return c.stats().stale == 2;
  }));
  CHECK_FALSE(c.poll(0ms));  // b has no reply yet, and got none of a's
  CHECK(c.in_flight() == 1);
  fake.answer(first_b, make_reply(request_of(first_b), "job.done", std::string("for b")));
  done = wait_completion(c);
  REQUIRE(done);
  CHECK(done->id == b);
  CHECK(done->outcome.reply().body_as<std::string>() == "for b");
}

TEST_CASE("client: fails over to the second endpoint when the first stops answering") {
  zmq::context_t ctx;
  manual_clock clock;
  fake_server silent(ctx);  // accepts connections, never answers
  server srv(ctx, "tcp://127.0.0.1:*", [](const envelope& req) { return make_reply(req, "ok"); });
  std::jthread loop([&](std::stop_token st) { srv.run(st); });
  client c(ctx, {silent.endpoint, srv.endpoint()},
           {.retry = {.timeout = 1000ms, .retries = 1}, .clock = &clock});
  std::vector<message_id> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(c.send(make_envelope("q")));
  for (int i = 0; i < 3; ++i) silent.next(c);  // all three reach the silent endpoint
  clock.advance(1000ms);
  std::vector<message_id> got;
  REQUIRE(test::wait_until([&] {
    while (auto d = c.poll(0ms)) {
      CHECK(d->outcome.ok());
      got.push_back(d->id);
    }
    return got.size() == 3;
  }));
  std::sort(got.begin(), got.end());
  std::sort(ids.begin(), ids.end());
  CHECK(got == ids);
  CHECK(c.endpoint() == srv.endpoint());
  CHECK(c.stats().failovers == 1);
  CHECK(c.stats().retries == 1);  // the one that timed out; the other two were resent for free
  CHECK(c.stats().resends == 2);
}

TEST_CASE("client: a request with no reply fails with a timeout after all retries") {
  zmq::context_t ctx;
  manual_clock clock;
  fake_server silent(ctx);
  client c(ctx, silent.endpoint, {.retry = {.timeout = 500ms, .retries = 2}, .clock = &clock});
  c.send(make_envelope("q"));
  std::optional<completion> done;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    silent.next(c);
    clock.advance(500ms);
  }
  done = wait_completion(c);
  REQUIRE(done);
  REQUIRE_FALSE(done->outcome.ok());
  CHECK(done->outcome.failure().what == request_failure::kind::timeout);
  CHECK(done->outcome.failure().code == "timeout");
  CHECK(done->outcome.failure().attempts == 3);
  CHECK_THROWS_AS(done->outcome.reply(), zmqkit::error);
  CHECK(c.stats().timeouts == 1);
}

TEST_CASE("client: an error reply is a typed failure with its zmk.error code") {
  zmq::context_t ctx;
  for (auto code : {reply_error::expired, reply_error::dead_letter, reply_error::overloaded,
                    reply_error::no_service, reply_error::bad_request}) {
    CAPTURE(to_string(code));
    fake_server fake(ctx);
    client c(ctx, fake.endpoint, {.retry = {.retries = 0}});  // no retry left: even overloaded ends it
    c.send(make_envelope("q"));
    const frames req = fake.next(c);
    fake.answer(req, make_error_reply(request_of(req).id, code, "because"));
    auto done = wait_completion(c);
    REQUIRE(done);
    REQUIRE_FALSE(done->outcome.ok());
    CHECK(done->outcome.failure().what == request_failure::kind::error_reply);
    CHECK(done->outcome.failure().known_code() == code);
    CHECK(done->outcome.failure().reason == "because");
    try {
      (void)done->outcome.reply();
      FAIL("reply() did not throw");
    } catch (const zmqkit::error& e) {
      CHECK(e.code() == errc::request_failed);
      CHECK(e.field() == to_string(code));
    }
  }
}

TEST_CASE("client: the blocking request() keeps other completions for poll()") {
  zmq::context_t ctx;
  server srv(ctx, "tcp://127.0.0.1:*", [](const envelope& req) {
    envelope reply = make_reply(req, "r");
    reply.body = req.body;
    return reply;
  });
  std::jthread loop([&](std::stop_token st) { srv.run(st); });
  client c(ctx, srv.endpoint(), {.retry = {.timeout = 5000ms, .retries = 0}});
  const message_id async_id = c.send(make_envelope("a", 1));
  result r = c.request(make_envelope("b", 2));
  REQUIRE(r.ok());
  CHECK(r.reply().body_as<int>() == 2);
  auto other = wait_completion(c);
  REQUIRE(other);
  CHECK(other->id == async_id);
  CHECK(other->outcome.reply().body_as<int>() == 1);
}

TEST_CASE("client: a malformed reply is counted and dropped") {
  zmq::context_t ctx;
  fake_server fake(ctx);
  client c(ctx, fake.endpoint);
  c.send(make_envelope("q"));
  const frames req = fake.next(c);
  frames junk;
  junk.push_back(test::copy_of(req[0]));
  junk.emplace_back();
  junk.emplace_back("\x93\x01\x02", 3);  // an array, but not an envelope
  test::send_frames(fake.socket, junk);
  REQUIRE(test::wait_until([&] {
    c.poll(0ms);
    return c.stats().bad_replies == 1;
  }));
  CHECK(c.in_flight() == 1);
}

TEST_CASE("client: the README example works as written (with local endpoints)") {
  zmq::context_t ctx;
  zmqkit::reqrep::server srv(ctx, "tcp://127.0.0.1:*", [](const zmqkit::envelope& req) {
    if (req.body.empty()) throw zmqkit::reqrep::handler_error("bad-request", "empty body");
    return zmqkit::make_reply(req, "price.quote", 9.99);
  });
  std::jthread loop([&](std::stop_token st) { srv.run(st); });
  zmqkit::reqrep::client c(ctx, {srv.endpoint(), "tcp://127.0.0.1:1"},
                           {.retry = {.timeout = 2000ms, .retries = 3}});
  auto r = c.request(zmqkit::make_envelope("price.get", std::string("book")));
  REQUIRE(r);
  CHECK(r.reply().body_as<double>() == 9.99);
  auto bad = c.request(zmqkit::make_envelope("price.get"));
  REQUIRE_FALSE(bad);
  CHECK(bad.failure().code == "bad-request");
  CHECK(bad.failure().reason == "empty body");
}

TEST_CASE("client: an `internal` error reply (server fault) is a distinct error, not a request failure") {
  zmq::context_t ctx;
  server srv(ctx, "tcp://127.0.0.1:*", [](const envelope&) -> envelope { throw std::runtime_error("db down"); });
  std::jthread loop([&](std::stop_token st) { srv.run(st); });
  client c(ctx, srv.endpoint(), {.retry = {.timeout = 2000ms, .retries = 0}});
  const result r = c.request(make_envelope("q"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.failure().known_code() == reply_error::internal);
  CHECK(r.failure().server_fault());
  CHECK(r.failure().reason == "db down");
  try {
    (void)r.reply();
    FAIL("reply() did not throw");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == errc::server_fault);
    CHECK(e.field() == "internal");
  }
}

TEST_CASE("client: `unavailable` fails over at once to the next endpoint, using one retry") {
  zmq::context_t ctx;
  manual_clock clock;  // never advanced: nothing here waits for a timeout
  fake_server draining(ctx), other(ctx);
  client c(ctx, {draining.endpoint, other.endpoint}, {.retry = {.timeout = 1000ms, .retries = 2}, .clock = &clock});
  const message_id id = c.send(make_envelope("q"));
  const frames first = draining.next(c);
  draining.answer(first, make_error_reply(id, reply_error::unavailable, "shutting down"));
  const frames second = other.next(c);
  CHECK(request_of(second).id == id);
  CHECK(request_of(second).header(header::attempt) == "1");
  other.answer(second, make_reply(request_of(second), "ok"));
  auto done = wait_completion(c);
  REQUIRE(done);
  CHECK(done->outcome.ok());
  CHECK(c.stats().error_retries == 1);
  CHECK(c.stats().failovers == 1);
}

TEST_CASE("client: `overloaded` is retried after the overload backoff, doubling") {
  zmq::context_t ctx;
  manual_clock clock;
  fake_server fake(ctx);
  client c(ctx, fake.endpoint,
           {.retry = {.timeout = 1000ms, .retries = 3, .overload_backoff = 100ms}, .clock = &clock});
  const message_id id = c.send(make_envelope("q"));
  fake.answer(fake.next(c), make_error_reply(id, reply_error::overloaded, "busy"));
  for (int i = 0; i < 20; ++i) c.poll(1ms);
  CHECK_FALSE(test::try_recv_frames(fake.socket));  // no resend before the backoff
  clock.advance(100ms);
  const frames retry1 = fake.next(c);
  CHECK(request_of(retry1).header(header::attempt) == "1");
  fake.answer(retry1, make_error_reply(id, reply_error::overloaded, "busy"));
  for (int i = 0; i < 20; ++i) c.poll(1ms);
  clock.advance(100ms);
  for (int i = 0; i < 20; ++i) c.poll(1ms);
  CHECK_FALSE(test::try_recv_frames(fake.socket));  // the second backoff is 200 ms
  clock.advance(100ms);
  const frames retry2 = fake.next(c);
  fake.answer(retry2, make_reply(request_of(retry2), "ok"));
  auto done = wait_completion(c);
  REQUIRE(done);
  CHECK(done->outcome.ok());
  CHECK(c.stats().error_retries == 2);
}

TEST_CASE("client: retryable errors end the request when retries run out or retry_errors is off") {
  zmq::context_t ctx;
  fake_server fake(ctx);
  client c(ctx, fake.endpoint, {.retry = {.retries = 3, .retry_errors = false}});
  const message_id id = c.send(make_envelope("q"));
  fake.answer(fake.next(c), make_error_reply(id, reply_error::unavailable, "shutting down"));
  auto done = wait_completion(c);
  REQUIRE(done);
  CHECK(done->outcome.failure().known_code() == reply_error::unavailable);
  CHECK(c.stats().error_retries == 0);
}

TEST_CASE("client: a request sent without a TTL carries the retry budget as its TTL") {
  zmq::context_t ctx;
  manual_clock clock;
  fake_server fake(ctx);
  SUBCASE("by default") {
    client c(ctx, fake.endpoint, {.retry = {.timeout = 100ms, .retries = 1}, .clock = &clock});
    envelope req = make_envelope("q", clock);
    clock.advance(30ms);  // made 30 ms before it is sent: that counts against the budget too
    c.send(req);
    const envelope sent = request_of(fake.next(c));
    CHECK(sent.ttl == 230ms);
    CHECK(*sent.expires_at() == clock.wall_now() + 200ms);
  }
  SUBCASE("with backoff: the sum of the attempts' waits") {
    client c(ctx, fake.endpoint,
             {.retry = {.timeout = 100ms, .retries = 3, .backoff = 2.0, .max_timeout = 300ms}, .clock = &clock});
    c.send(make_envelope("q", clock));
    CHECK(request_of(fake.next(c)).ttl == 100ms + 200ms + 300ms + 300ms);
  }
  SUBCASE("a TTL the caller set is kept") {
    client c(ctx, fake.endpoint, {.retry = {.timeout = 100ms, .retries = 1}, .clock = &clock});
    envelope req = make_envelope("q", clock);
    req.ttl = 5s;
    c.send(req);
    CHECK(request_of(fake.next(c)).ttl == 5s);
  }
  SUBCASE("expire_when_abandoned = false sends no TTL") {
    client c(ctx, fake.endpoint, {.retry = {.timeout = 100ms, .retries = 1}, .clock = &clock,
                                  .expire_when_abandoned = false});
    c.send(make_envelope("q", clock));
    CHECK(request_of(fake.next(c)).ttl == 0ms);
  }
}
