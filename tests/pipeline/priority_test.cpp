#include <doctest/doctest.h>

#include <algorithm>
#include <support/sockets.hpp>

#include "pipeline_support.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::test;

TEST_CASE("a worker holding several tasks takes the most urgent first") {
  zmq::context_t ctx;
  auto router = test_socket(ctx, zmq::socket_type::router);
  router.bind("inproc://fake-vent");
  pipeline::worker w(ctx, "inproc://fake-vent", "", {.credit = 8});
  zmq::message_t identity, credit;
  REQUIRE(router.recv(identity));
  REQUIRE(router.recv(credit));
  CHECK(decode(credit).header(pipeline::header::credit) == "8");

  // Arrival order is not urgency order.
  for (int priority : {1, 5, 9, 3, 7, 5}) {
    auto task = make_envelope("t");
    task.priority = static_cast<std::uint8_t>(priority);
    router.send(zmq::buffer(identity.to_string()), zmq::send_flags::sndmore);
    router.send(encode(task), zmq::send_flags::none);
  }
  REQUIRE(wait_until([&] {
    w.pump();
    return w.buffered() == 6;
  }));
  std::vector<int> order;
  while (auto task = w.receive(0ms)) order.push_back(task->priority);
  CHECK(order == std::vector<int>{9, 7, 5, 5, 3, 1});
}

TEST_CASE("the ventilator sends the most urgent queued task first, FIFO within a priority") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "inproc://vent");
  pipeline::sink sink(ctx, "inproc://sink");
  std::vector<std::uint8_t> priorities{0, 4, 9, 2, 9, 4, 7, 1, 8, 3};
  std::vector<message_id> nines;
  for (std::uint8_t p : priorities) {
    auto task = make_envelope("t");
    task.priority = p;
    task.headers.emplace("n", "0");
    if (p == 9) nines.push_back(task.id);
    REQUIRE(vent.submit(task));
  }
  // The worker arrives after everything is queued, and holds one task at a time.
  worker_thread w(ctx, "inproc://vent", "inproc://sink", {.credit = 1});
  REQUIRE(drive(vent, sink, [&] { return w.done() == priorities.size(); }));
  std::vector<int> expected(priorities.begin(), priorities.end());
  std::sort(expected.rbegin(), expected.rend());
  CHECK(w.priorities() == expected);
  const auto taken = w.taken();
  CHECK(std::vector<message_id>(taken.begin(), taken.begin() + 2) == nines);
}

TEST_CASE("a worker drops tasks whose TTL has passed") {
  zmq::context_t ctx;
  zmqkit::manual_clock clock;
  auto router = test_socket(ctx, zmq::socket_type::router);
  router.bind("inproc://fake-vent");
  pipeline::worker w(ctx, "inproc://fake-vent", "", {.credit = 4, .clock = &clock});
  zmq::message_t identity, credit;
  REQUIRE(router.recv(identity));
  REQUIRE(router.recv(credit));
  auto stale = make_envelope("t", clock);
  stale.ttl = 100ms;
  stale.priority = 9;
  auto fresh = make_envelope("t", clock);
  for (const auto* t : {&stale, &fresh}) {
    router.send(zmq::buffer(identity.to_string()), zmq::send_flags::sndmore);
    router.send(encode(*t), zmq::send_flags::none);
  }
  REQUIRE(wait_until([&] {
    w.pump();
    return w.buffered() == 2;
  }));
  clock.advance(1s);
  auto got = w.receive(0ms);
  REQUIRE(got);
  CHECK(got->id == fresh.id);
  CHECK(w.stats().expired == 1);
}
