// The device's flat reply cache against a simple model (map + FIFO of ids):
// same contents after every operation, oldest evicted first.
#include "../../patterns/queue/reply_cache.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <random>
#include <string>

using zmqkit::message_id;
using zmqkit::queue::detail::reply_cache;

namespace {
std::string str(const zmq::message_t& m) { return std::string(static_cast<const char*>(m.data()), m.size()); }

// Ids that collide in the index on purpose: only the low byte varies, so
// their hashes share most bits and probe sequences overlap.
message_id id_of(std::uint32_t n) {
  message_id id{};
  id.bytes[15] = static_cast<std::uint8_t>(n);
  id.bytes[14] = static_cast<std::uint8_t>(n >> 8);
  return id;
}
}  // namespace

TEST_CASE("the reply cache keeps the newest `capacity` replies and answers exactly those") {
  for (const std::size_t capacity : {1u, 2u, 7u, 100u, 1000u}) {
    CAPTURE(capacity);
    reply_cache cache(capacity);
    std::map<message_id, std::string> model;
    std::deque<message_id> order;
    std::mt19937 rng(static_cast<unsigned>(capacity));
    for (int op = 0; op < 20000; ++op) {
      const message_id id = id_of(rng() % static_cast<std::uint32_t>(capacity * 3 + 5));
      const std::string value = std::to_string(op);
      cache.put(id, zmq::message_t(value));
      if (model.count(id) == 0) {
        order.push_back(id);
        if (order.size() > capacity) {
          model.erase(order.front());
          order.pop_front();
        }
      }
      model[id] = value;
      REQUIRE(cache.size() == model.size());
      // Probe a few ids, present and absent.
      for (int k = 0; k < 3; ++k) {
        const message_id probe = id_of(rng() % static_cast<std::uint32_t>(capacity * 3 + 5));
        const zmq::message_t* got = cache.find(probe);
        const auto it = model.find(probe);
        REQUIRE((got != nullptr) == (it != model.end()));
        if (got) REQUIRE(str(*got) == it->second);
      }
    }
    for (const auto& [id, value] : model) {
      const zmq::message_t* got = cache.find(id);
      REQUIRE(got);
      CHECK(str(*got) == value);
    }
  }
}

TEST_CASE("a reply cache of capacity 0 keeps nothing") {
  reply_cache cache(0);
  cache.put(message_id::generate(), zmq::message_t(std::string("x")));
  CHECK(cache.size() == 0);
  CHECK(cache.find(message_id::generate()) == nullptr);
}
