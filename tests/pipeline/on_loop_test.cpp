// The pipeline's three roles attached to one zmqkit::loop on the test's thread:
// the ventilator dispatches on credit, the workers run tasks from callbacks,
// the sink hands results to a callback, and the batch's end arrives through
// on_batch_end — no thread, no receive() loop.
#include <doctest/doctest.h>

#include <set>
#include <zmqkit/loop.hpp>
#include <zmqkit/pipeline/sink.hpp>
#include <zmqkit/pipeline/ventilator.hpp>
#include <zmqkit/pipeline/worker.hpp>

#include "../support/sockets.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

bool run_until(loop& l, const std::function<bool()>& condition) {
  return test::wait_until([&] {
    l.run_once(5ms);
    return condition();
  });
}

pipeline::task_handler doubling(int& ran) {
  return [&ran](const envelope& task) -> std::optional<envelope> {
    ++ran;
    return make_reply(task, "test.doubled", 2 * task.body_as<int>());
  };
}

}  // namespace

TEST_CASE("ventilator, two workers and a sink on one loop: a batch completes, each result once, on_batch_end says so") {
  zmq::context_t ctx;
  loop l;
  std::vector<pipeline::batch_status> ended;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*",
                            {.delivery = pipeline::delivery::at_least_once,
                             .on_batch_end = [&](const pipeline::batch_status& s) { ended.push_back(s); }});
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                      {.ventilator_endpoint = vent.endpoint(),
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); }});
  int ran_a = 0, ran_b = 0;
  pipeline::worker a(ctx, vent.endpoint(), sink.endpoint(), {.credit = 4});
  pipeline::worker b(ctx, vent.endpoint(), sink.endpoint(), {.credit = 4});
  std::multiset<int> results;
  vent.attach(l);
  sink.attach(l, [&](envelope r) { results.insert(r.body_as<int>()); });
  a.attach(l, doubling(ran_a));
  b.attach(l, doubling(ran_b));
  CHECK_THROWS_AS(vent.poll(0ms), zmqkit::error);  // the loop drives it now
  CHECK_THROWS_AS(a.receive(0ms), zmqkit::error);
  CHECK_THROWS_AS(sink.receive(0ms), zmqkit::error);

  REQUIRE(run_until(l, [&] { return vent.workers() == 2; }));
  std::vector<envelope> tasks;
  for (int i = 0; i < 200; ++i) tasks.push_back(make_envelope("test.double", i));
  const auto batch = vent.submit_batch(std::move(tasks));
  REQUIRE(batch);
  REQUIRE(run_until(l, [&] { return !ended.empty(); }));

  CHECK(ended.size() == 1);
  CHECK(ended[0].batch == *batch);
  CHECK(ended[0].outcome == pipeline::batch_outcome::complete);
  CHECK(results.size() == 200);
  CHECK(std::set<int>(results.begin(), results.end()).size() == 200);  // each once
  CHECK(*results.rbegin() == 398);
  CHECK(ran_a + ran_b == 200);
  CHECK(ran_a > 0);  // both took a share: credit spreads the work
  CHECK(ran_b > 0);
  REQUIRE(!reports.empty());
  CHECK(reports.back().state == pipeline::batch_state::complete);
}

TEST_CASE("ventilator on a loop with a manual clock: a batch no sink reports on expires by the loop's timer") {
  zmq::context_t ctx;
  manual_clock clock;
  loop l(clock);
  std::vector<pipeline::batch_status> ended;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*",
                            {.batch_deadline = 10s,
                             .clock = &clock,
                             .on_batch_end = [&](const pipeline::batch_status& s) { ended.push_back(s); }});
  vent.attach(l);
  int ran = 0;
  pipeline::worker w(ctx, vent.endpoint(), "", {.clock = &clock});
  w.attach(l, doubling(ran));
  REQUIRE(run_until(l, [&] { return vent.workers() == 1; }));
  const auto batch = vent.submit_batch({make_envelope("test.double", 1), make_envelope("test.double", 2)});
  REQUIRE(batch);
  REQUIRE(run_until(l, [&] { return ran == 2; }));
  l.run_once(0ms);
  CHECK(ended.empty());  // no time has passed
  clock.advance(11s);
  REQUIRE(run_until(l, [&] { return !ended.empty(); }));
  CHECK(ended[0].outcome == pipeline::batch_outcome::expired);
  CHECK(vent.batch_done(*batch));
}
