#include <doctest/doctest.h>

#include <cstdlib>
#include <support/sockets.hpp>

#include "pipeline_support.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::test;

// Plain PUSH would give every worker 1/N of the tasks, and the slow one would
// hoard its share in its queue. With credit, a worker only holds what it asked
// for, so its share follows its speed.
TEST_CASE("a slow worker beside fast ones gets a share matching its speed, not 1/N") {
  const bool full = std::getenv("ZMQKIT_FULL") != nullptr;
  const std::size_t task_count = full ? 1200 : 300;
  const auto fast_work = 2ms;
  // 50x the fast workers' time per task: a busy machine stretches the fast
  // workers' 2 ms (scheduling delays) but hardly the slow one's 100 ms.
  const auto slow_work = 100ms;

  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*");
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*", {.ventilator_endpoint = vent.endpoint()});
  const pipeline::worker_options opts{.credit = 1};
  worker_thread slow(ctx, vent.endpoint(), sink.endpoint(), opts, slow_work);
  std::vector<std::unique_ptr<worker_thread>> fast;
  for (int i = 0; i < 3; ++i)
    fast.push_back(std::make_unique<worker_thread>(ctx, vent.endpoint(), sink.endpoint(), opts, fast_work));
  // Every worker has asked for work before the batch starts, so nobody is late to the race.
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.workers() == 4 && vent.credit() == 4;
  }));

  const auto batch = vent.submit_batch(make_tasks(task_count));
  REQUIRE(batch);
  REQUIRE(drive(
      vent, sink, [&] { return vent.batch_done(*batch); }, 60s));

  const double n = static_cast<double>(task_count);
  const double slow_share = static_cast<double>(slow.done()) / n;
  std::size_t fast_done = 0;
  for (auto& f : fast) fast_done += f->done();
  MESSAGE("slow worker took " << slow.done() << " of " << task_count << " tasks (share " << slow_share
                              << ", 1/N = 0.25, speed-proportional ~0.007); fast workers " << fast_done);
  CHECK(slow.done() + fast_done == task_count);
  // Generous: half of 1/N, where speed alone would give under 1 %. It holds until
  // a fast worker's 2 ms task takes over 30 ms on a busy machine.
  CHECK(slow_share < 0.25 / 2);
  CHECK(slow.done() >= 1);
}

// The same race with a large window shows what the credit limit buys: the slow
// worker takes a full window at the start and sits on it (the hoarding of plain PUSH).
TEST_CASE("with a large credit window the slow worker hoards its window") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*");
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*", {.ventilator_endpoint = vent.endpoint()});
  const pipeline::worker_options opts{.credit = 25};
  worker_thread slow(ctx, vent.endpoint(), sink.endpoint(), opts, 40ms);
  std::vector<std::unique_ptr<worker_thread>> fast;
  for (int i = 0; i < 3; ++i)
    fast.push_back(std::make_unique<worker_thread>(ctx, vent.endpoint(), sink.endpoint(), opts, 2ms));
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.workers() == 4 && vent.credit() == 100;
  }));
  const auto batch = vent.submit_batch(make_tasks(150));
  REQUIRE(batch);
  REQUIRE(drive(
      vent, sink, [&] { return vent.batch_done(*batch); }, 60s));
  MESSAGE("with credit 25 the slow worker took " << slow.done() << " of 150 tasks");
  CHECK(slow.done() >= 25);  // its whole first window, however fast the others are
}

TEST_CASE("a worker never holds more tasks than its credit") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "inproc://vent");
  pipeline::worker w(ctx, "inproc://vent", "", {.credit = 3});
  for (auto& t : make_tasks(20)) REQUIRE(vent.submit(t));
  // Dispatch everything it will accept, then let the worker read all that arrived.
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    w.pump();
    return w.buffered() == 3;
  }));
  for (int i = 0; i < 20; ++i) {
    vent.poll(1ms);
    w.pump();
  }
  CHECK(w.buffered() == 3);
  CHECK(vent.pending() == 17);
  CHECK(vent.stats().dispatched == 3);
}
