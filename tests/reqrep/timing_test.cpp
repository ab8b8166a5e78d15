// The pure timing rules, driven by a manual clock: no sockets, no sleeping.
#include <doctest/doctest.h>

#include <vector>
#include <zmqkit/reqrep/timing.hpp>

using namespace std::chrono_literals;
using zmqkit::manual_clock;
using namespace zmqkit::reqrep;

TEST_CASE("retry_schedule waits, retries, then gives up") {
  manual_clock clock;
  retry_schedule s({.timeout = 100ms, .retries = 2}, clock.now());
  CHECK(s.attempt() == 1);
  clock.advance(99ms);
  CHECK(s.on_time(clock.now()) == retry_schedule::step::wait);
  clock.advance(1ms);
  CHECK(s.on_time(clock.now()) == retry_schedule::step::retry);
  CHECK(s.attempt() == 2);
  CHECK(s.deadline() == clock.now() + 100ms);
  clock.advance(100ms);
  CHECK(s.on_time(clock.now()) == retry_schedule::step::retry);
  CHECK(s.attempt() == 3);
  clock.advance(100ms);
  CHECK(s.on_time(clock.now()) == retry_schedule::step::give_up);
}

TEST_CASE("retry_schedule backs off up to max_timeout") {
  manual_clock clock;
  retry_schedule s({.timeout = 100ms, .retries = 5, .backoff = 2.0, .max_timeout = 300ms}, clock.now());
  const auto start = clock.now();
  CHECK(s.deadline() - start == 100ms);
  clock.advance(100ms);
  REQUIRE(s.on_time(clock.now()) == retry_schedule::step::retry);
  CHECK(s.deadline() - clock.now() == 200ms);
  clock.advance(200ms);
  REQUIRE(s.on_time(clock.now()) == retry_schedule::step::retry);
  CHECK(s.deadline() - clock.now() == 300ms);  // 400 ms capped
}

TEST_CASE("retry_schedule: a failover resend does not use up a retry") {
  manual_clock clock;
  retry_schedule s({.timeout = 100ms, .retries = 1}, clock.now());
  clock.advance(10ms);
  s.resend(clock.now());
  CHECK(s.attempt() == 2);
  clock.advance(100ms);
  CHECK(s.on_time(clock.now()) == retry_schedule::step::retry);  // the one retry is still there
  clock.advance(100ms);
  CHECK(s.on_time(clock.now()) == retry_schedule::step::give_up);
}

TEST_CASE("liveness_tracker: dead after liveness intervals of silence, heartbeat every interval") {
  manual_clock clock;
  liveness_tracker t(1s, 3, clock.now());
  clock.advance(1s);
  CHECK(t.heartbeat_due(clock.now()));
  t.on_sent(clock.now());
  CHECK_FALSE(t.heartbeat_due(clock.now()));
  clock.advance(1999ms);
  CHECK_FALSE(t.dead(clock.now()));
  t.on_heard(clock.now());  // anything from the peer resets the count
  clock.advance(2999ms);
  CHECK_FALSE(t.dead(clock.now()));
  clock.advance(1ms);
  CHECK(t.dead(clock.now()));
}

TEST_CASE("reconnect_backoff doubles from 1 s to 32 s and resets") {
  reconnect_backoff b(1s, 32s);
  std::vector<std::chrono::milliseconds> got;
  for (int i = 0; i < 8; ++i) got.push_back(b.next());
  CHECK(got == std::vector<std::chrono::milliseconds>{1s, 2s, 4s, 8s, 16s, 32s, 32s, 32s});
  b.reset();
  CHECK(b.next() == 1s);
}

TEST_CASE("retry_budget: the sum of every attempt's wait") {
  CHECK(retry_budget({.timeout = 100ms, .retries = 1}) == 200ms);
  CHECK(retry_budget({.timeout = 2500ms, .retries = 3}) == 10000ms);
  CHECK(retry_budget({.timeout = 100ms, .retries = 0}) == 100ms);
  CHECK(retry_budget({.timeout = 100ms, .retries = 4, .backoff = 2.0, .max_timeout = 500ms}) ==
        100ms + 200ms + 400ms + 500ms + 500ms);
  // The schedule agrees: it gives up exactly at the budget.
  const retry_policy p{.timeout = 100ms, .retries = 4, .backoff = 2.0, .max_timeout = 500ms};
  manual_clock clock;
  const auto start = clock.now();
  retry_schedule s(p, start);
  while (s.on_time(s.deadline()) != retry_schedule::step::give_up) {}
  CHECK(s.deadline() - start == retry_budget(p));
}
