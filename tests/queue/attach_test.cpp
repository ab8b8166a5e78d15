// The queue device on a caller's zmqkit::loop (attach): it serves on that
// loop's thread, and after stop() has drained it, it leaves the loop, which goes on.
#include <doctest/doctest.h>

#include <zmqkit/loop.hpp>

#include "queue_support.hpp"

using namespace zmqkit;
using namespace zmqkit::test;
using namespace std::chrono_literals;

TEST_CASE("an attached device serves on the caller's loop and leaves it after stop()") {
  zmq::context_t ctx;
  queue::device dev(ctx, {.frontend = unique_inproc("attach-front"),
                          .backend = unique_inproc("attach-back"),
                          .clock = nullptr});  // nullptr: the real clock
  zmqkit::loop loop;
  dev.attach(loop);
  CHECK_THROWS_AS(dev.attach(loop), zmqkit::error);  // attached already
  CHECK_THROWS_AS(dev.run(), zmqkit::error);         // the caller's loop drives it
  std::atomic<int> ticks{0};
  loop.every(5ms, [&] { ++ticks; });  // another role on the same loop
  std::thread driver([&] { loop.run(); });

  raw_worker worker(ctx, dev.backend_endpoint());
  raw_client client(ctx, dev.frontend_endpoint());
  client.send(request("t.attached"));
  auto got = worker.request();
  REQUIRE(got.size() == 3);
  worker.reply_to(got);
  auto reply = client.receive_envelope();
  REQUIRE(reply);
  CHECK(reply->correlation_id == decode(got.back()).id);

  dev.stop();
  REQUIRE(wait_until([&] { return dev.status()->draining; }));
  const int before = ticks.load();
  CHECK(wait_until([&] { return ticks.load() > before + 3; }));  // the loop goes on without the device
  loop.stop();
  driver.join();
  CHECK(dev.stats().replied == 1);
}
