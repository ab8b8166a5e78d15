// The client and the worker attached to a zmqkit::loop: completions arrive as
// callbacks, retries, failover and heartbeats run on the loop's timers (a manual
// clock the test advances), and the fake peers are watched by the same loop, so
// everything runs on the test's one thread.
#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <zmqkit/loop.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/server.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::reqrep;
using zmqkit::test::frames;

namespace {

// Runs the loop until `condition` holds (deadline 5 s real time).
bool run_until(loop& l, const std::function<bool()>& condition) {
  return test::wait_until([&] {
    l.run_once(5ms);
    return condition();
  });
}

// A ROUTER on the loop standing in for a server: `answer` decides per request
// whether to reply (true) or stay silent.
struct fake_server {
  zmq::socket_t socket;
  std::string endpoint;
  std::vector<envelope> seen;
  std::function<bool(const envelope&)> answer = [](const envelope&) { return true; };

  fake_server(zmq::context_t& ctx, loop& l) : socket(test::test_socket(ctx, zmq::socket_type::router)) {
    endpoint = test::bind_ephemeral(socket);
    l.add(socket, [this] {
      while (auto f = test::try_recv_frames(socket)) {
        if (f->size() != 3) continue;
        envelope req = decode(f->at(2));
        seen.push_back(req);
        if (!answer(req)) continue;
        frames out;
        out.push_back(test::copy_of(f->at(0)));
        out.emplace_back();
        out.push_back(encode(make_reply(req, "echo.reply", req.body_as<std::string>())));
        test::send_frames(socket, out);
      }
    });
  }
};

}  // namespace

TEST_CASE("client on a loop: several requests in flight complete through callbacks; a lost one is retried by the loop's timer") {
  zmq::context_t ctx;
  manual_clock clock;
  loop l(clock);
  fake_server srv(ctx, l);
  std::map<std::string, int> first_attempts;
  srv.answer = [&](const envelope& req) {  // the first attempt of "c" is lost
    return req.body_as<std::string>() != "c" || req.header(header::attempt).has_value();
  };
  client c(ctx, srv.endpoint, {.retry = {.timeout = 1000ms, .retries = 2}, .clock = &clock});
  c.attach(l);
  std::map<std::string, std::string> replies;
  for (std::string body : {"a", "b", "c"})
    c.async_request(make_envelope("echo", body), [&, body](result r) { replies[body] = r.reply().body_as<std::string>(); });
  CHECK(c.in_flight() == 3);
  REQUIRE(run_until(l, [&] { return replies.size() == 2; }));
  CHECK(replies.count("c") == 0);
  l.run_once(20ms);
  CHECK(c.stats().retries == 0);  // nothing retries before its deadline on the manual clock
  clock.advance(1000ms);
  REQUIRE(run_until(l, [&] { return replies.size() == 3; }));
  CHECK(replies["c"] == "c");
  CHECK(c.stats().retries == 1);
  CHECK(c.in_flight() == 0);
  CHECK_FALSE(l.next_timeout().has_value());  // no retry timer left behind
}

TEST_CASE("client on a loop: a request nobody answers fails with a timeout after its retries") {
  zmq::context_t ctx;
  manual_clock clock;
  loop l(clock);
  fake_server srv(ctx, l);
  srv.answer = [](const envelope&) { return false; };
  client c(ctx, srv.endpoint, {.retry = {.timeout = 500ms, .retries = 1}, .clock = &clock});
  c.attach(l);
  std::optional<result> outcome;
  c.async_request(make_envelope("echo", std::string("x")), [&](result r) { outcome.emplace(std::move(r)); });
  REQUIRE(run_until(l, [&] { return srv.seen.size() == 1; }));
  clock.advance(500ms);
  REQUIRE(run_until(l, [&] { return srv.seen.size() == 2; }));  // the retry
  CHECK_FALSE(outcome.has_value());
  clock.advance(500ms);
  REQUIRE(run_until(l, [&] { return outcome.has_value(); }));
  CHECK_FALSE(outcome->ok());
  CHECK(outcome->failure().code == "timeout");
  CHECK(outcome->failure().attempts == 2);
}

TEST_CASE("client on a loop: fails over to the second endpoint and resends what is in flight there") {
  zmq::context_t ctx;
  manual_clock clock;
  loop l(clock);
  fake_server dead(ctx, l), alive(ctx, l);
  dead.answer = [](const envelope&) { return false; };
  client c(ctx, {dead.endpoint, alive.endpoint}, {.retry = {.timeout = 1000ms, .retries = 2}, .clock = &clock});
  c.attach(l);
  int ok = 0;
  for (int i = 0; i < 3; ++i)
    c.async_request(make_envelope("echo", std::to_string(i)), [&](result r) { ok += r.ok(); });
  REQUIRE(run_until(l, [&] { return dead.seen.size() == 3; }));
  clock.advance(1000ms);
  REQUIRE(run_until(l, [&] { return ok == 3; }));
  CHECK(c.endpoint() == alive.endpoint);
  CHECK(c.stats().failovers == 1);
  CHECK(alive.seen.size() == 3);
}

TEST_CASE("client on a loop: the blocking request() still works, and detach() hands the socket back") {
  zmq::context_t ctx;
  loop server_loop;
  fake_server srv(ctx, server_loop);
  std::jthread server_thread([&] { server_loop.run(); });
  struct stop_at_exit {
    loop& l;
    ~stop_at_exit() { l.stop(); }
  } stopper{server_loop};

  loop l;
  client c(ctx, srv.endpoint, {.retry = {.timeout = 2000ms, .retries = 1}});
  c.attach(l);
  std::optional<result> async_outcome;
  c.async_request(make_envelope("echo", std::string("async")), [&](result r) { async_outcome.emplace(std::move(r)); });
  const result r = c.request(make_envelope("echo", std::string("sync")));  // drives the client itself
  CHECK(r.reply().body_as<std::string>() == "sync");
  REQUIRE(run_until(l, [&] { return async_outcome.has_value(); }));
  CHECK(async_outcome->reply().body_as<std::string>() == "async");
  c.detach();
  l.run_once(0ms);
  const message_id id = c.send(make_envelope("echo", std::string("polled")));
  std::optional<completion> got;
  REQUIRE(test::wait_until([&] { return (got = c.poll(10ms)).has_value(); }));
  CHECK(got->id == id);
  CHECK_THROWS_AS(c.async_request(make_envelope("echo", std::string("x")), nullptr), zmqkit::error);
}

TEST_CASE("worker on a loop: READY, a request answered, heartbeats on the loop's timer, DISCONNECT on stop") {
  zmq::context_t ctx;
  manual_clock clock;
  loop l(clock);
  auto device = test::test_socket(ctx, zmq::socket_type::router);
  const std::string ep = test::bind_ephemeral(device);
  std::vector<frames> from_worker;
  l.add(device, [&] {
    while (auto f = test::try_recv_frames(device)) from_worker.push_back(std::move(*f));
  });
  auto is_control = [](const frames& f, std::uint8_t code) {
    return f.size() == 2 && f[1].size() == 1 && *f[1].data<std::uint8_t>() == code;
  };
  worker w(ctx, ep, [](const envelope& req) { return make_reply(req, "echo.reply", req.body_as<std::string>()); },
           {.heartbeat_interval = 1000ms, .clock = &clock});
  w.attach(l);
  REQUIRE(run_until(l, [&] { return !from_worker.empty(); }));
  REQUIRE(is_control(from_worker[0], control::ready));
  const zmq::message_t worker_id = test::copy_of(from_worker[0][0]);

  const envelope req = make_envelope("echo", std::string("hi"), clock);
  frames f;
  f.push_back(test::copy_of(worker_id));
  f.emplace_back("client-1", 8);
  f.emplace_back();
  f.push_back(encode(req));
  test::send_frames(device, f);
  REQUIRE(run_until(l, [&] { return from_worker.size() == 2; }));
  REQUIRE(from_worker[1].size() == 4);  // [worker id, client id, empty, reply]
  CHECK(from_worker[1][1].to_string() == "client-1");
  CHECK(decode(from_worker[1][3]).correlation_id == req.id);

  CHECK(w.stats().heartbeats_sent == 0);
  clock.advance(1000ms);
  REQUIRE(run_until(l, [&] { return from_worker.size() == 3; }));
  CHECK(is_control(from_worker[2], control::heartbeat));
  CHECK(w.stats().heartbeats_sent == 1);

  w.stop();
  REQUIRE(run_until(l, [&] { return from_worker.size() == 4; }));
  CHECK(is_control(from_worker[3], control::disconnect));
  CHECK_FALSE(l.next_timeout().has_value());  // stop() took its timer off the loop
}

TEST_CASE("worker on a loop: a silent device is declared dead and the worker reconnects, all on the loop") {
  zmq::context_t ctx;
  manual_clock clock;
  loop l(clock);
  auto device = test::test_socket(ctx, zmq::socket_type::router);
  const std::string ep = test::bind_ephemeral(device);
  int readies = 0;
  l.add(device, [&] {
    while (auto f = test::try_recv_frames(device))
      if (f->size() == 2 && f->at(1).size() == 1 && *f->at(1).data<std::uint8_t>() == control::ready) ++readies;
  });
  worker w(ctx, ep, [](const envelope& req) { return make_reply(req, "r"); },
           {.heartbeat_interval = 100ms, .liveness = 3, .reconnect_initial = 1000ms, .clock = &clock});
  w.attach(l);
  REQUIRE(run_until(l, [&] { return readies == 1; }));
  for (int i = 0; i < 3; ++i) {  // 3 silent intervals: dead
    clock.advance(100ms);
    l.run_once(5ms);
  }
  CHECK(w.stats().reconnects == 1);
  CHECK_FALSE(w.connected());
  clock.advance(1000ms);
  REQUIRE(run_until(l, [&] { return readies == 2; }));
  CHECK(w.connected());
}

TEST_CASE("server on a loop beside a client on the same loop: requests inline and on handler threads, a retry answered from the cache") {
  for (const int threads : {0, 2}) {
    CAPTURE(threads);
    zmq::context_t ctx;
    loop l;
    int executed = 0;
    std::atomic<int> executed_on_threads{0};
    server srv(ctx, "tcp://127.0.0.1:*",
               [&](const envelope& req) {
                 if (threads == 0) ++executed; else ++executed_on_threads;
                 return make_reply(req, "echo.reply", req.body_as<std::string>());
               },
               {.threads = threads});
    srv.attach(l);
    CHECK_THROWS_AS(srv.poll(0ms), zmqkit::error);  // the loop drives it now
    client c(ctx, srv.endpoint());
    c.attach(l);
    std::map<std::string, std::string> answers;
    for (const char* word : {"alpha", "beta", "gamma", "delta"})
      c.async_request(make_envelope("echo", std::string(word)), [&answers, word](result r) {
        answers[word] = r ? r.reply().body_as<std::string>() : "failed";
      });
    REQUIRE(run_until(l, [&] { return answers.size() == 4; }));
    for (const auto& [word, answer] : answers) CHECK(answer == word);

    envelope again = make_envelope("echo", std::string("once"));
    std::optional<std::string> first, second;
    c.async_request(again, [&](result r) { first = r ? r.reply().body_as<std::string>() : "failed"; });
    REQUIRE(run_until(l, [&] { return first.has_value(); }));
    c.async_request(again, [&](result r) { second = r ? r.reply().body_as<std::string>() : "failed"; });  // same id
    REQUIRE(run_until(l, [&] { return second.has_value(); }));
    CHECK(*second == "once");
    CHECK(srv.stats().cache_hits == 1);
    CHECK(executed + executed_on_threads.load() == 5);  // the retry did not run again
  }
}
