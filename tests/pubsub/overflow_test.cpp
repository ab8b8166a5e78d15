// Fault: a subscriber that does not read while a publisher floods it. PUB drops
// at the high-water mark; the subscriber's reported gaps must equal exactly the
// messages it did not receive. Small by default, ZMQKIT_FULL=1 for the full size.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

bool full_size() {
  const char* v = std::getenv("ZMQKIT_FULL");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

void flood_slow_subscriber(const std::string& transport, std::uint64_t messages) {
  zmq::context_t ctx;
  const socket_options small_queues{.send_hwm = 50, .receive_hwm = 50};
  pubsub::publisher pub(ctx, {.socket = small_queues});
  const std::string ep = pub.bind(transport == "inproc" ? test::unique_inproc("flood") : "tcp://127.0.0.1:*");

  std::vector<pubsub::gap> gaps;
  pubsub::subscriber sub(
      ctx, {.on_gap = [&](const pubsub::gap& g) { gaps.push_back(g); }, .socket = small_queues});
  sub.subscribe("tick.");
  sub.connect(ep);
  test::await_subscription(pub, {&sub}, "tick.sync");
  const auto base = sub.stats();

  // The subscriber reads nothing while the publisher floods it.
  std::uint64_t first = 0, last = 0;
  for (std::uint64_t i = 0; i < messages; ++i) {
    last = pub.publish(make_envelope("tick.n", std::string(64, 'x')));
    if (i == 0) first = last;
  }
  std::vector<std::uint64_t> received;
  while (auto n = sub.receive(300ms)) received.push_back(n->sequence);
  // One more, once the queues are empty: the gap after the last survivor shows.
  last = pub.publish(make_envelope("tick.n"));  // same type: numbering is per type
  auto end = sub.receive(2s);
  REQUIRE(end);
  received.push_back(end->sequence);

  const std::uint64_t published = last - first + 1;
  const std::uint64_t missed = sub.stats().missed - base.missed;
  MESSAGE(transport << ": published " << published << ", received " << received.size() << ", reported missed "
                    << missed << " in " << gaps.size() << " gaps");
  CHECK(missed > 0);  // the flood did overflow the queues
  CHECK(received.size() + missed == published);

  // Exactly the missing numbers, no more, no fewer: received and gap ranges tile [first, last].
  std::vector<char> seen(published, 0);
  for (std::uint64_t s : received) {
    REQUIRE(s >= first);
    REQUIRE(s <= last);
    CHECK(seen[s - first]++ == 0);
  }
  for (const auto& g : gaps)
    for (std::uint64_t s = g.first_missing; s < g.first_missing + g.count; ++s) {
      REQUIRE(s >= first);
      REQUIRE(s <= last);
      CHECK(seen[s - first]++ == 0);
    }
  CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<std::ptrdiff_t>(published));
}

}  // namespace

TEST_CASE("gaps reported by a flooded subscriber equal exactly the messages it missed") {
  SUBCASE("inproc") { flood_slow_subscriber("inproc", full_size() ? 100'000 : 5'000); }
  // TCP adds kernel buffers (megabytes on loopback) in front of the queues.
  SUBCASE("tcp") { flood_slow_subscriber("tcp", full_size() ? 1'000'000 : 100'000); }
}
