#include <doctest/doctest.h>

#include <support/sockets.hpp>

#include "pipeline_support.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::test;

namespace {

// Destroys `object` and closes its context. Returns: how long that took.
template <class F>
std::chrono::milliseconds time_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

const zmqkit::socket_options short_linger{.linger = 200ms};

}  // namespace

TEST_CASE("every role shuts down promptly with undelivered messages") {
  SUBCASE("ventilator with tasks queued towards a worker that does not read") {
    auto ctx = std::make_unique<zmq::context_t>();
    auto vent = std::make_unique<pipeline::ventilator>(*ctx, "tcp://127.0.0.1:*",
                                                       pipeline::ventilator_options{.socket = short_linger});
    // A raw worker (in a context of its own, alive throughout) grants much credit,
    // then never reads: frames pile up towards it and can never be delivered.
    zmq::context_t peer_ctx;
    auto dealer = test_socket(peer_ctx, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::rcvhwm, 1);
    dealer.connect(vent->endpoint());
    auto grant = make_envelope("zmk.credit");
    grant.headers.emplace(pipeline::header::credit, "100000");
    dealer.send(encode(grant), zmq::send_flags::none);
    std::string big(64 << 10, 'x');
    for (int i = 0; i < 200; ++i) REQUIRE(vent->submit(make_envelope("t", big)));
    REQUIRE(wait_until([&] {
      vent->poll(1ms);
      return vent->stats().dispatched > 10;
    }));
    const auto stuck = vent->stats().dispatched;
    const auto took = time_of([&] {
      vent.reset();
      ctx.reset();  // waits for the linger, not for the peer
    });
    MESSAGE("ventilator + context closed in " << took.count() << " ms with " << stuck
                                              << " 64 KiB tasks sent towards a stalled peer");
    CHECK(took < 2s);
  }
  SUBCASE("worker with results for a sink that is not there") {
    auto ctx = std::make_unique<zmq::context_t>();
    pipeline::ventilator vent(*ctx, "inproc://vent");
    auto w = std::make_unique<pipeline::worker>(
        *ctx, "inproc://vent", "tcp://127.0.0.1:1",  // nobody listens on port 1
        pipeline::worker_options{.send_timeout = 50ms, .socket = short_linger});
    REQUIRE(vent.submit(make_envelope("t")));
    std::optional<envelope> task;
    REQUIRE(wait_until([&] {
      vent.poll(1ms);
      task = w->receive(1ms);
      return task.has_value();
    }));
    // Results queue towards the absent sink until its queue is full; then send_result times out.
    int sent = 0;
    while (sent < 100'000 && w->send_result(make_reply(*task, "t.done"))) ++sent;
    CHECK(sent < 100'000);
    CHECK(w->stats().send_failures == 1);
    const auto took = time_of([&] { w.reset(); });
    CHECK(took < 2s);
  }
  SUBCASE("sink with control messages for a ventilator that is not there") {
    auto ctx = std::make_unique<zmq::context_t>();
    auto sink = std::make_unique<pipeline::sink>(
        *ctx, "tcp://127.0.0.1:*",
        pipeline::sink_options{.ventilator_endpoint = "tcp://127.0.0.1:1", .control_socket = short_linger});
    const auto took = time_of([&] {
      sink.reset();
      ctx.reset();
    });
    MESSAGE("sink + context closed in " << took.count() << " ms");
    CHECK(took < 2s);
  }
}

TEST_CASE("a worker says goodbye, so the ventilator stops counting on it") {
  zmq::context_t ctx;
  pipeline::ventilator vent(ctx, "inproc://vent");
  auto w = std::make_unique<pipeline::worker>(ctx, "inproc://vent", "");
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.workers() == 1;
  }));
  w.reset();
  REQUIRE(wait_until([&] {
    vent.poll(1ms);
    return vent.workers() == 0;
  }));
  CHECK(vent.stats().workers_lost == 1);
}
