// The reply store behind the reqrep server's and the queue device's reply
// caches, driven by a manual clock: eviction by age, by count, and agreement
// with a simple model.
#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <random>
#include <zmqkit/clock.hpp>
#include <zmqkit/internal/reply_store.hpp>

using namespace std::chrono_literals;
using zmqkit::manual_clock;
using zmqkit::internal::reply_store;

namespace {
zmq::message_t text(const std::string& s) { return zmq::message_t(s.data(), s.size()); }
std::string str(const zmq::message_t* m) { return m ? m->to_string() : "<none>"; }
}  // namespace

TEST_CASE("reply_store evicts by age") {
  manual_clock clock;
  reply_store cache({.max_entries = 10, .max_age = 1s});
  const auto a = zmqkit::message_id::generate();
  cache.insert(a, text("a"), clock.now());
  clock.advance(999ms);
  CHECK(str(cache.find(a, clock.now())) == "a");
  clock.advance(1ms);
  CHECK(cache.find(a, clock.now()) == nullptr);
  CHECK(cache.size() == 0);
  CHECK(cache.evicted() == 1);
}

TEST_CASE("reply_store evicts the oldest when full") {
  manual_clock clock;
  reply_store cache({.max_entries = 2, .max_age = 60s});
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

TEST_CASE("reply_store with max_entries 0 keeps nothing") {
  manual_clock clock;
  reply_store cache({.max_entries = 0});
  const auto a = zmqkit::message_id::generate();
  cache.insert(a, text("a"), clock.now());
  CHECK(cache.find(a, clock.now()) == nullptr);
}

TEST_CASE("reply_store agrees with a simple model under random inserts, lookups and time") {
  manual_clock clock;
  const std::size_t max_entries = 50;
  reply_store cache({.max_entries = max_entries, .max_age = 2s});
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
