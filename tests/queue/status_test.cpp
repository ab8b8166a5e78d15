// device::status(): the live view the dashboard reads (/api/stats), published by the
// device thread every status_interval from the same snapshot as the admin stats.
#include <doctest/doctest.h>

#include <algorithm>

#include "queue_support.hpp"

using namespace zmqkit;
using namespace zmqkit::test;
using namespace std::chrono_literals;

namespace {

// Waits (real time) for a published status satisfying `pred`, moving the manual clock
// past status_interval so that the device thread publishes again.
template <class Pred>
std::shared_ptr<const queue::device_status> wait_status(device_fixture& fx, Pred pred) {
  std::shared_ptr<const queue::device_status> st;
  wait_until([&] {
    st = fx.dev.status();
    if (pred(*st)) return true;
    fx.clock.advance(250ms);
    return false;
  });
  return st;
}

}  // namespace

TEST_CASE("a status exists from construction on, before run() publishes") {
  zmq::context_t ctx;
  manual_clock clock;
  queue::device dev(ctx, {.frontend = unique_inproc("status-f"), .backend = unique_inproc("status-b"), .clock = &clock});
  const auto st = dev.status();
  REQUIRE(st);
  CHECK(st->stats.received == 0);
  CHECK(st->workers.empty());
  CHECK(st->workers_total == 0);
  CHECK_FALSE(st->draining);
}

TEST_CASE("status shows the workers, what they hold, the backlog and the counters") {
  device_fixture fx({.no_service = std::chrono::hours(1)});
  raw_worker plain(fx.ctx, fx.backend(), {"c."});  // capacity 1, a generated identity
  // A worker named "worker-one": READY {"capacity": 2, "prefixes": ["a."]}.
  zmq::socket_t holder = test_socket(fx.ctx, zmq::socket_type::dealer);
  holder.set(zmq::sockopt::routing_id, "worker-one");
  holder.connect(fx.backend());
  msgpack::sbuffer ready;
  msgpack::packer<msgpack::sbuffer> pk(ready);
  pk.pack_map(2);
  pk.pack(std::string("capacity"));
  pk.pack(2);
  pk.pack(std::string("prefixes"));
  pk.pack(std::vector<std::string>{"a."});
  holder.send(zmq::buffer("\x01", 1), zmq::send_flags::sndmore);
  holder.send(zmq::buffer(ready.data(), ready.size()));
  REQUIRE(fx.wait_ready(2));

  raw_client c(fx.ctx, fx.frontend());
  c.send(request("a.job"));
  c.send(request("b.job", 8));  // nobody serves b.: waits
  std::vector<zmq::message_t> held;
  while ((held = recv_all(holder)).size() == 1) {  // skip heartbeats
  }
  REQUIRE(held.size() >= 2);

  const auto st = wait_status(fx, [](const queue::device_status& s) {
    return s.stats.received == 2 && s.stats.pending == 1 && s.stats.in_flight == 1;
  });
  CHECK(st->stats.pending_by_priority[8] == 1);
  CHECK(st->stats.pending_by_type.at("b.job") == 1);
  CHECK(st->workers_total == 2);
  REQUIRE(st->workers.size() == 2);
  const auto one = std::find_if(st->workers.begin(), st->workers.end(),
                                [](const queue::worker_status& x) { return x.identity == "worker-one"; });
  REQUIRE(one != st->workers.end());
  CHECK(one->capacity == 2);
  CHECK(one->held == 1);
  CHECK(one->prefixes == std::vector<std::string>{"a."});
  CHECK(one->last_heard >= 0ms);
  // The other worker (prefix c., capacity 1) holds nothing.
  const auto other = one == st->workers.begin() ? st->workers.begin() + 1 : st->workers.begin();
  CHECK(other->held == 0);
  CHECK(other->capacity == 1);
  CHECK(other->prefixes == std::vector<std::string>{"c."});
  // The same figures as the admin snapshot.
  const auto admin = fx.stats();
  CHECK(admin.received == st->stats.received);
  CHECK(admin.pending == st->stats.pending);
  CHECK(admin.worker_capacity == st->stats.worker_capacity);
}

TEST_CASE("rates: requests per second over about the last second, back to 0 when idle") {
  device_fixture fx;
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  raw_client c(fx.ctx, fx.frontend());
  for (int i = 0; i < 4; ++i) {
    c.send(request("echo"));
    auto r = w.request();
    REQUIRE(r.size() >= 2);
    w.reply_to(r);
    REQUIRE(c.receive());
  }
  const auto busy = wait_status(fx, [](const queue::device_status& s) { return s.stats.replied == 4; });
  CHECK(busy->received_per_second > 0);
  CHECK(busy->replied_per_second > 0);
  // No traffic for more than the window: both rates fall to 0 (the worker heartbeats so it stays).
  const auto idle = wait_status(fx, [&](const queue::device_status& s) {
    w.heartbeat();
    return s.received_per_second == 0 && s.replied_per_second == 0;
  });
  CHECK(idle->stats.received == 4);
  CHECK(idle->uptime > busy->uptime);
}

TEST_CASE("the worker list is bounded by max_status_workers; workers_total counts them all") {
  device_fixture fx({.max_status_workers = 1});
  raw_worker a(fx.ctx, fx.backend()), b(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(2));
  const auto st = wait_status(fx, [](const queue::device_status& s) { return s.workers_total == 2; });
  CHECK(st->workers.size() == 1);
}
