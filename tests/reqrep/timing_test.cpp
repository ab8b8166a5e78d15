// The pure timing rules, driven by a manual clock: no sockets, no sleeping.
#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <random>
#include <zmqkit/reqrep/reply_cache.hpp>
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

namespace {
zmq::message_t text(const std::string& s) { return zmq::message_t(s.data(), s.size()); }
std::string str(const zmq::message_t* m) { return m ? m->to_string() : "<none>"; }
}  // namespace

TEST_CASE("reply_cache evicts by age") {
  manual_clock clock;
  reply_cache cache({.max_entries = 10, .max_age = 1s});
  const auto a = zmqkit::message_id::generate();
  cache.insert(a, text("a"), clock.now());
  clock.advance(999ms);
  CHECK(str(cache.find(a, clock.now())) == "a");
  clock.advance(1ms);
  CHECK(cache.find(a, clock.now()) == nullptr);
  CHECK(cache.size() == 0);
  CHECK(cache.evicted() == 1);
}

TEST_CASE("reply_cache evicts the oldest when full") {
  manual_clock clock;
  reply_cache cache({.max_entries = 2, .max_age = 60s});
  const auto a = zmqkit::message_id::generate(), b = zmqkit::message_id::generate(),
             c = zmqkit::message_id::generate();
  cache.insert(a, text("a"), clock.now());
  cache.insert(b, text("b"), clock.now());
  cache.insert(c, text("c"), clock.now());
  CHECK(cache.find(a, clock.now()) == nullptr);
  CHECK(str(cache.find(b, clock.now())) == "b");
  CHECK(str(cache.find(c, clock.now())) == "c");
  CHECK(cache.size() == 2);
}

TEST_CASE("reply_cache with max_entries 0 keeps nothing") {
  manual_clock clock;
  reply_cache cache({.max_entries = 0});
  const auto a = zmqkit::message_id::generate();
  cache.insert(a, text("a"), clock.now());
  CHECK(cache.find(a, clock.now()) == nullptr);
}

TEST_CASE("reply_cache agrees with a simple model under random inserts, lookups and time") {
  manual_clock clock;
  const std::size_t max_entries = 50;
  reply_cache cache({.max_entries = max_entries, .max_age = 2s});
  std::deque<std::pair<zmqkit::message_id, zmqkit::steady_time>> order;  // the model: FIFO
  std::map<zmqkit::message_id, std::string> value;
  std::vector<zmqkit::message_id> seen;
  std::mt19937 rng(12345);
  auto model_expire = [&] {
    while (!order.empty() && clock.now() - order.front().second >= 2s) {
      value.erase(order.front().first);
      order.pop_front();
    }
  };
  for (int op = 0; op < 20000; ++op) {
    const int kind = static_cast<int>(rng() % 10);
    model_expire();  // both expire lazily: bring them to the same moment first
    cache.expire(clock.now());
    if (kind < 4 || seen.empty()) {  // a new id
      const auto id = zmqkit::message_id::generate();
      seen.push_back(id);
      const std::string v = "v" + std::to_string(op);
      cache.insert(id, text(v), clock.now());
      model_expire();
      order.emplace_back(id, clock.now());
      value[id] = v;
      if (order.size() > max_entries) {
        value.erase(order.front().first);
        order.pop_front();
      }
    } else if (kind < 5) {  // a replacement for an id that may still be cached
      const auto& id = seen[rng() % seen.size()];
      const std::string v = "r" + std::to_string(op);
      model_expire();
      if (value.contains(id)) {
        cache.insert(id, text(v), clock.now());
        value[id] = v;
      }
    } else if (kind < 9) {  // a lookup
      const auto& id = seen[rng() % seen.size()];
      model_expire();
      const auto it = value.find(id);
      REQUIRE(str(cache.find(id, clock.now())) == (it == value.end() ? "<none>" : it->second));
    } else {
      clock.advance(std::chrono::milliseconds(rng() % 200));
    }
    REQUIRE(cache.size() == order.size());
  }
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
