#include <doctest/doctest.h>

#include <set>
#include <support/sockets.hpp>

#include "pipeline_support.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::test;

TEST_CASE("a batch flows ventilator -> workers -> sink and completes") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*");
  std::vector<pipeline::batch_report> reports;
  pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                      {.ventilator_endpoint = vent.endpoint(),
                       .on_report = [&](const pipeline::batch_report& r) { reports.push_back(r); }});
  worker_thread w1(ctx, vent.endpoint(), sink.endpoint(), {.credit = 4});
  worker_thread w2(ctx, vent.endpoint(), sink.endpoint(), {.credit = 4});

  auto tasks = make_tasks(100);
  std::set<message_id> ids;
  for (const auto& t : tasks) ids.insert(t.id);
  const auto batch = vent.submit_batch(std::move(tasks));
  REQUIRE(batch);

  std::set<message_id> answered;
  REQUIRE(drive(
      vent, sink, [&] { return vent.batch_done(*batch); }, 10s,
      [&](const envelope& r) {
        CHECK(r.type == "test.done");
        CHECK(r.header(pipeline::header::batch) == batch->to_string());
        answered.insert(*r.correlation_id);
      }));
  CHECK(answered == ids);
  const auto status = sink.status(*batch);
  REQUIRE(status);
  CHECK(status->state == pipeline::batch_state::complete);
  CHECK(status->expected == 100);
  CHECK(status->received == 100);
  CHECK(status->missing.empty());
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].state == pipeline::batch_state::complete);
  CHECK(sink.stats().results == 100);
  CHECK(sink.stats().duplicates == 0);
  CHECK(vent.stats().dispatched == 100);
  CHECK(w1.done() + w2.done() == 100);
}

TEST_CASE("a sink without a ventilator link completes a batch by its zmk.batch.size") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "inproc://vent");
  pipeline::sink sink(ctx, "inproc://sink");
  worker_thread w(ctx, vent.endpoint(), sink.endpoint(), {.credit = 2});
  const auto batch = vent.submit_batch(make_tasks(10));
  REQUIRE(batch);
  REQUIRE(drive(vent, sink, [&] {
    auto s = sink.status(*batch);
    return s && s->state == pipeline::batch_state::complete;
  }));
  CHECK(sink.status(*batch)->ids_known == false);
  CHECK(sink.stats().results == 10);
}

TEST_CASE("tasks outside a batch are delivered as they are") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "inproc://vent");
  pipeline::sink sink(ctx, "inproc://sink");
  worker_thread w(ctx, vent.endpoint(), sink.endpoint(), {.credit = 1});
  auto task = make_envelope("single.task", std::string("hello"));
  task.headers.emplace("n", "0");
  REQUIRE(vent.submit(task));
  std::optional<envelope> got;
  REQUIRE(drive(
      vent, sink, [&] { return got.has_value(); }, 5s, [&](const envelope& r) { got = r; }));
  CHECK(got->correlation_id == task.id);
  CHECK(got->body == task.body);
}

TEST_CASE("the sink counts each task id once") {
  zmq::context_t ctx;
  pipeline::sink sink(ctx, "inproc://sink");
  auto push = test_socket(ctx, zmq::socket_type::push);
  push.connect("inproc://sink");

  const message_id batch = message_id::generate();
  auto task1 = make_envelope("t");
  auto task2 = make_envelope("t");
  for (const auto* task : {&task1, &task2, &task1, &task1}) {
    auto result = make_reply(*task, "t.done");
    result.headers.emplace(pipeline::header::batch, batch.to_string());
    result.headers.emplace(pipeline::header::batch_size, "2");
    push.send(encode(result), zmq::send_flags::none);
  }
  std::vector<envelope> got;
  REQUIRE(wait_until([&] {
    if (auto r = sink.receive(10ms)) got.push_back(*r);
    return sink.stats().duplicates == 2;
  }));
  CHECK(got.size() == 2);
  CHECK(sink.stats().results == 2);
  CHECK(sink.status(batch)->state == pipeline::batch_state::complete);
}

TEST_CASE("bad frames are counted and dropped by every role") {
  zmq::context_t ctx;

  SUBCASE("ventilator") {
    pipeline::ventilator vent(ctx, "inproc://vent");
    auto dealer = test_socket(ctx, zmq::socket_type::dealer);
    dealer.connect("inproc://vent");
    dealer.send(zmq::str_buffer("not an envelope"));
    dealer.send(encode(make_envelope("zmk.credit")), zmq::send_flags::none);  // credit without a count
    dealer.send(encode(make_envelope("zmk.unknown")), zmq::send_flags::none);
    dealer.send(zmq::str_buffer("a"), zmq::send_flags::sndmore);  // two frames where one belongs
    dealer.send(zmq::str_buffer("b"));
    REQUIRE(wait_until([&] {
      vent.poll(5ms);
      return vent.stats().bad_frames == 4;
    }));
    CHECK(vent.workers() == 0);
  }
  SUBCASE("worker") {
    auto router = test_socket(ctx, zmq::socket_type::router);
    router.bind("inproc://fake-vent");
    pipeline::worker w(ctx, "inproc://fake-vent", "", {.credit = 4});
    zmq::message_t identity, credit;
    REQUIRE(router.recv(identity));
    REQUIRE(router.recv(credit));
    const auto send = [&](zmq::const_buffer body) {
      router.send(zmq::buffer(identity.to_string()), zmq::send_flags::sndmore);
      router.send(body);
    };
    send(zmq::str_buffer("\x91\x01"));  // an array too short to be an envelope
    send(zmq::str_buffer("garbage"));
    auto good = make_envelope("t");
    send(zmq::buffer(encode(good).to_string()));
    auto got = w.receive(2s);
    REQUIRE(got);
    CHECK(got->id == good.id);
    CHECK(w.stats().bad_frames == 2);
  }
  SUBCASE("sink") {
    pipeline::sink sink(ctx, "inproc://sink");
    auto push = test_socket(ctx, zmq::socket_type::push);
    push.connect("inproc://sink");
    push.send(zmq::str_buffer("garbage"));
    auto no_corr = make_envelope("t.done");  // batch result without the task id
    no_corr.headers.emplace(pipeline::header::batch, message_id::generate().to_string());
    no_corr.headers.emplace(pipeline::header::batch_size, "1");
    push.send(encode(no_corr), zmq::send_flags::none);
    auto bad_size = make_reply(make_envelope("t"), "t.done");
    bad_size.headers.emplace(pipeline::header::batch, message_id::generate().to_string());
    bad_size.headers.emplace(pipeline::header::batch_size, "-3");
    push.send(encode(bad_size), zmq::send_flags::none);
    auto fine = make_envelope("t.done");
    push.send(encode(fine), zmq::send_flags::none);
    auto got = sink.receive(2s);
    REQUIRE(got);
    CHECK(got->id == fine.id);
    CHECK(sink.stats().bad_frames == 3);
  }
}

TEST_CASE("an idle worker re-states its credit, so a restarted ventilator can use it") {
  zmq::context_t ctx;
  auto vent_ctx = std::make_unique<zmq::context_t>();  // closing it frees the port at once
  auto vent = std::make_unique<pipeline::ventilator>(*vent_ctx, "tcp://127.0.0.1:*");
  const std::string endpoint = vent->endpoint();
  pipeline::worker w(ctx, endpoint, "", {.credit = 2, .credit_refresh = 100ms});
  REQUIRE(wait_until([&] {
    vent->poll(1ms);
    return vent->credit() == 2;
  }));
  vent.reset();  // the ventilator restarts: the new one knows nothing of the worker
  vent_ctx.reset();
  vent = std::make_unique<pipeline::ventilator>(ctx, endpoint);
  REQUIRE(vent->submit(make_envelope("after.restart")));
  std::optional<envelope> task;
  REQUIRE(wait_until([&] {
    vent->poll(1ms);
    task = w.receive(1ms);
    return task.has_value();
  }));
  CHECK(task->type == "after.restart");
  CHECK(w.stats().credit_grants >= 2);
}
