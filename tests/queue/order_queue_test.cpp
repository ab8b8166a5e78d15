// A pending group's container against a std::map model: the device's key
// pattern (new keys at the back, taken-back keys at the front), erasures from
// anywhere, pops, and keys in the middle, which the device never makes.
#include "../../patterns/queue/order_queue.hpp"

#include <doctest/doctest.h>

#include <iterator>
#include <map>
#include <random>

using zmqkit::queue::detail::order_queue;

namespace {

void check_same(const order_queue& q, const std::map<std::int64_t, std::uint64_t>& model) {
  REQUIRE(q.size() == model.size());
  REQUIRE(q.empty() == model.empty());
  if (model.empty()) return;
  CHECK(q.front_key() == model.begin()->first);
  CHECK(q.front() == model.begin()->second);
}

}  // namespace

TEST_CASE("an order queue agrees with an ordered map under the device's operations") {
  for (const unsigned seed : {1u, 2u, 3u, 4u}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    order_queue q;
    std::map<std::int64_t, std::uint64_t> model;
    std::int64_t back = 0, front = 0;
    std::uint64_t next_handle = 1;
    for (int step = 0; step < 20000; ++step) {
      const unsigned op = rng() % 100;
      if (op < 40) {  // a new request
        const std::int64_t key = ++back;
        CHECK(q.insert(key, next_handle));
        model[key] = next_handle++;
      } else if (op < 48) {  // taken back from a dead worker
        const std::int64_t key = --front;
        CHECK(q.insert(key, next_handle));
        model[key] = next_handle++;
      } else if (op < 78) {  // a worker takes the oldest
        if (!model.empty()) CHECK(q.erase(q.front_key()));
        if (!model.empty()) model.erase(model.begin());
      } else if (op < 95) {  // answered, expired or cancelled while waiting
        if (model.empty()) continue;
        auto it = model.begin();
        std::advance(it, static_cast<long>(rng() % model.size()));
        CHECK(q.erase(it->first));
        CHECK_FALSE(q.erase(it->first));  // once
        model.erase(it);
      } else {  // a key the device never makes: in the middle, or one already there
        if (model.size() < 2) continue;
        const std::int64_t lo = model.begin()->first, hi = model.rbegin()->first;
        const std::int64_t key = lo + static_cast<std::int64_t>(rng() % static_cast<unsigned>(hi - lo));
        const bool fresh = !model.count(key);
        CHECK(q.insert(key, next_handle) == fresh);
        if (fresh) model[key] = next_handle;
        ++next_handle;
      }
      check_same(q, model);
    }
    while (!model.empty()) {  // drains in key order
      CHECK(q.front() == model.begin()->second);
      CHECK(q.erase(q.front_key()));
      model.erase(model.begin());
    }
    CHECK(q.empty());
  }
}
