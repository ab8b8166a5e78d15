#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <support/sockets.hpp>

#include "pipeline_support.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::test;

namespace {

bool contains_all(const std::vector<message_id>& haystack, const std::vector<message_id>& needles) {
  const std::set<message_id> set(haystack.begin(), haystack.end());
  return std::all_of(needles.begin(), needles.end(), [&](const message_id& id) { return set.contains(id); });
}

}  // namespace

TEST_CASE("after the deadline the sink names exactly the tasks it has no result for") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "inproc://vent");
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "inproc://sink",
                      {.ventilator_endpoint = "inproc://vent",
                       .batch_deadline = 200ms,
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); }});
  auto tasks = make_tasks(5);
  std::vector<message_id> ids;
  for (const auto& t : tasks) ids.push_back(t.id);
  const auto batch = vent.submit_batch(std::move(tasks));
  REQUIRE(batch);
  // No worker: nothing is done. The sink learns the id list from the ventilator.
  REQUIRE(drive(
      vent, sink, [&] { return !reports.empty(); }, 5s));
  CHECK(reports[0].state == pipeline::batch_state::missing);
  CHECK(reports[0].ids_known);
  CHECK(reports[0].expected == 5);
  CHECK(reports[0].received == 0);
  CHECK(reports[0].missing == ids);
  // At-most-once (the default): the ventilator is told, and resends nothing.
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.stats().missing_reports >= 1;
  }));
  CHECK(vent.stats().missing_ignored >= 5);
  CHECK(vent.stats().resent == 0);
}

TEST_CASE("a worker that stops mid-batch loses no task in at-least-once mode") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*", {.delivery = pipeline::delivery::at_least_once});
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                      {.ventilator_endpoint = vent.endpoint(),
                       .batch_deadline = 300ms,
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); }});
  // This worker does 2 tasks, then stops abruptly holding the 3rd and whatever else it was sent.
  auto doomed = std::make_unique<worker_thread>(ctx, vent.endpoint(), sink.endpoint(),
                                                pipeline::worker_options{.credit = 4}, 0us, 3);
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.credit() == 4;
  }));
  const auto batch = vent.submit_batch(make_tasks(40));
  REQUIRE(batch);
  std::multiset<message_id> answered;
  const auto record = [&](const envelope& r) { answered.insert(*r.correlation_id); };
  REQUIRE(drive(
      vent, sink, [&] { return doomed->stopped(); }, 10s, record));
  REQUIRE(doomed->taken().size() == 3);
  const std::vector<message_id> lost{doomed->taken().back()};
  doomed.reset();

  worker_thread healthy(ctx, vent.endpoint(), sink.endpoint(), {.credit = 4});
  REQUIRE(drive(
      vent, sink, [&] { return vent.batch_done(*batch); }, 20s, record));

  const auto missing_report = std::find_if(reports.begin(), reports.end(), [](const auto& r) {
    return r.state == pipeline::batch_state::missing;
  });
  REQUIRE(missing_report != reports.end());
  CHECK(contains_all(missing_report->missing, lost));
  CHECK(vent.stats().resent >= lost.size());
  CHECK(reports.back().state == pipeline::batch_state::complete);
  const auto status = sink.status(*batch);
  CHECK(status->received == 40);
  CHECK(answered.size() == 40);  // each task came out of the sink once, duplicates or not
  for (const auto& id : lost) CHECK(answered.count(id) == 1);
  CHECK(sink.stats().results == 40);
}

TEST_CASE("in at-most-once mode the tasks of a stopped worker are reported, not resent") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*");
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                      {.ventilator_endpoint = vent.endpoint(),
                       .batch_deadline = 300ms,
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); }});
  auto doomed = std::make_unique<worker_thread>(ctx, vent.endpoint(), sink.endpoint(),
                                                pipeline::worker_options{.credit = 4}, 0us, 3);
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.credit() == 4;
  }));
  const auto batch = vent.submit_batch(make_tasks(20));
  REQUIRE(batch);
  REQUIRE(drive(vent, sink, [&] { return doomed->stopped(); }));
  const std::vector<message_id> lost{doomed->taken().back()};
  doomed.reset();
  worker_thread healthy(ctx, vent.endpoint(), sink.endpoint(), {.credit = 4});
  // Everything that was not lost gets done; the lost ones stay missing, report after report.
  REQUIRE(drive(vent, sink, [&] { return vent.pending() == 0; }));
  const std::size_t reports_before = reports.size();
  REQUIRE(drive(vent, sink, [&] { return reports.size() >= reports_before + 2; }));
  const auto status = sink.status(*batch);
  CHECK(status->state == pipeline::batch_state::missing);
  CHECK(contains_all(status->missing, lost));
  CHECK(status->received + status->missing.size() == 20);
  CHECK(drive(vent, sink, [&] { return vent.stats().missing_reports >= 2; }));  // told, twice
  CHECK(vent.stats().resent == 0);
  CHECK_FALSE(vent.batch_done(*batch));
}

TEST_CASE("a batch still incomplete after max_reports is abandoned") {
  zmq::context_t ctx;
  zmqkit::manual_clock clock;
  pipeline::ventilator vent(ctx, "inproc://vent");
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "inproc://sink",
                      {.ventilator_endpoint = "inproc://vent",
                       .batch_deadline = 1s,
                       .max_reports = 2,
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); },
                       .clock = &clock});
  const auto batch = vent.submit_batch(make_tasks(3));
  REQUIRE(drive(vent, sink, [&] { return sink.status(*batch).has_value(); }));
  for (int i = 0; i < 4; ++i) {
    clock.advance(1s);
    CHECK_FALSE(sink.receive(0ms));  // no results: only the deadlines run
  }
  REQUIRE(reports.size() == 2);
  CHECK(reports[0].state == pipeline::batch_state::missing);
  CHECK(reports[1].state == pipeline::batch_state::abandoned);
  CHECK(reports[1].missing.size() == 3);
}

TEST_CASE("tasks still waiting for credit are not resent, only lost ones") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "inproc://vent", {.delivery = pipeline::delivery::at_least_once});
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "inproc://sink",
                      {.ventilator_endpoint = "inproc://vent",
                       .batch_deadline = 100ms,
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); }});
  const auto batch = vent.submit_batch(make_tasks(10));
  REQUIRE(batch);
  // No worker yet: the sink reports all ten missing; they are queued, not lost.
  REQUIRE(drive(vent, sink, [&] { return vent.stats().missing_reports >= 2; }));
  CHECK(reports.front().missing.size() == 10);
  CHECK(vent.stats().resent == 0);
  CHECK(vent.pending() == 10);
  worker_thread w(ctx, "inproc://vent", "inproc://sink", {.credit = 2});
  REQUIRE(drive(vent, sink, [&] { return vent.batch_done(*batch); }));
  CHECK(wait_until([&] { return w.done() == 10; }));  // it counts after sending
  CHECK(sink.stats().duplicates == 0);
}

TEST_CASE("a batch without a verdict from any sink ends as expired after the ventilator's batch_deadline") {
  zmq::context_t ctx;
  zmqkit::manual_clock clock;
  CHECK(pipeline::ventilator_options{}.batch_deadline == 60s);  // never waits forever by default
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*", {.clock = &clock});  // no sink at all
  const auto batch = vent.submit_batch(make_tasks(3));
  REQUIRE(batch);
  vent.poll(1ms);
  CHECK_FALSE(vent.batch_done(*batch));
  CHECK(vent.status(*batch)->outcome == pipeline::batch_outcome::open);
  clock.advance(59s);
  vent.poll(1ms);
  CHECK_FALSE(vent.batch_done(*batch));
  clock.advance(1s);
  vent.poll(1ms);
  CHECK(vent.batch_done(*batch));
  CHECK(vent.status(*batch)->outcome == pipeline::batch_outcome::expired);
  CHECK(vent.stats().batches_expired == 1);
}

TEST_CASE("the ventilator's status follows the sink: missing with the ids, then complete") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*", {.delivery = pipeline::delivery::at_least_once});
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*", {.ventilator_endpoint = vent.endpoint(), .batch_deadline = 200ms});
  auto doomed = std::make_unique<worker_thread>(ctx, vent.endpoint(), sink.endpoint(),
                                                pipeline::worker_options{.credit = 2}, 0us, 2);
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.credit() == 2;
  }));
  const auto batch = vent.submit_batch(make_tasks(6));
  REQUIRE(batch);
  REQUIRE(drive(vent, sink, [&] { return doomed->stopped(); }));
  doomed.reset();
  REQUIRE(drive(vent, sink, [&] { return vent.status(*batch)->outcome == pipeline::batch_outcome::missing; }));
  CHECK_FALSE(vent.status(*batch)->missing.empty());
  CHECK_FALSE(vent.batch_done(*batch));
  worker_thread healthy(ctx, vent.endpoint(), sink.endpoint(), {.credit = 2});
  REQUIRE(drive(vent, sink, [&] { return vent.batch_done(*batch); }));
  CHECK(vent.status(*batch)->outcome == pipeline::batch_outcome::complete);
  CHECK(vent.status(*batch)->missing.empty());
}
