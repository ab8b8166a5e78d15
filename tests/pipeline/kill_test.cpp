// Fault: a worker process is SIGKILLed mid-batch. The sink reports the tasks it
// held missing, the ventilator (at-least-once) resends them, the batch completes.
#include <doctest/doctest.h>

#include <cstdlib>
#include <set>
#include <support/process.hpp>
#include <support/sockets.hpp>

#include "pipeline_support.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::test;

TEST_CASE("a SIGKILLed worker process loses no task of an at-least-once batch") {
  const bool full = std::getenv("ZMQKIT_FULL") != nullptr;
  const std::size_t task_count = full ? 2000 : 60;
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*", {.delivery = pipeline::delivery::at_least_once});
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                      {.ventilator_endpoint = vent.endpoint(),
                       .batch_deadline = 500ms,
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); }});

  child_process child({PIPELINE_WORKER_CHILD, vent.endpoint(), sink.endpoint(), "5", "8"});
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.credit() == 8;
  }));
  const auto batch = vent.submit_batch(make_tasks(task_count));
  REQUIRE(batch);
  std::multiset<message_id> answered;
  const auto record = [&](const envelope& r) { answered.insert(*r.correlation_id); };
  REQUIRE(drive(
      vent, sink, [&] { return answered.size() >= 5; }, 10s, record));

  child.signal(SIGKILL);
  REQUIRE(child.wait(5s));
  const auto killed_at = std::chrono::steady_clock::now();
  const std::size_t before_kill = answered.size();

  worker_thread healthy(ctx, vent.endpoint(), sink.endpoint(), {.credit = 8});
  REQUIRE(drive(
      vent, sink, [&] { return vent.batch_done(*batch); }, 60s, record));
  const auto recovery =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);

  std::size_t reported_missing = 0;
  for (const auto& r : reports)
    if (r.state == pipeline::batch_state::missing) reported_missing += r.missing.size();
  MESSAGE("tasks " << task_count << ", results before kill " << before_kill << ", missing reports "
                   << sink.stats().missing_reports << " naming " << reported_missing << " ids, resent "
                   << vent.stats().resent << ", duplicates dropped " << sink.stats().duplicates
                   << ", completed " << recovery.count() << " ms after the kill");
  CHECK(sink.stats().missing_reports >= 1);
  CHECK(vent.stats().resent >= 1);
  CHECK(std::set<message_id>(answered.begin(), answered.end()).size() == task_count);
  CHECK(answered.size() == task_count);  // each id came out of the sink once
  CHECK(sink.status(*batch)->state == pipeline::batch_state::complete);
}

TEST_CASE("at-most-once: the ventilator learns that a batch which lost a task was abandoned, and which ids") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*");  // the default: at-most-once
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                      {.ventilator_endpoint = vent.endpoint(), .batch_deadline = 200ms, .max_reports = 2});
  // A worker process holding up to 4 tasks, 50 ms each: killed, it takes some with it.
  child_process child({PIPELINE_WORKER_CHILD, vent.endpoint(), sink.endpoint(), "50", "4"});
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.credit() == 4;
  }));
  constexpr std::size_t task_count = 20;
  const auto batch = vent.submit_batch(make_tasks(task_count));
  REQUIRE(batch);
  std::set<message_id> answered;
  const auto record = [&](const envelope& r) { answered.insert(*r.correlation_id); };
  REQUIRE(drive(vent, sink, [&] { return answered.size() >= 1; }, 10s, record));
  child.signal(SIGKILL);
  REQUIRE(child.wait(5s));

  worker_thread healthy(ctx, vent.endpoint(), sink.endpoint(), {.credit = 4});
  REQUIRE(drive(vent, sink, [&] { return vent.batch_done(*batch); }, 20s, record));
  const auto status = vent.status(*batch);
  REQUIRE(status);
  CHECK(status->outcome == pipeline::batch_outcome::abandoned);
  CHECK(status->tasks == task_count);
  REQUIRE(answered.size() < task_count);  // the kill lost at least the task it was running
  CHECK(status->missing.size() == task_count - answered.size());
  for (const auto& id : status->missing) CHECK_FALSE(answered.contains(id));
  CHECK(vent.stats().batches_abandoned == 1);
  CHECK(vent.stats().resent == 0);
}
