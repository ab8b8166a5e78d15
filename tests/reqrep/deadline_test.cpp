// A client's timeout cancels its request: sent without a TTL, a request carries
// the client's whole retry budget as its TTL, so a request the caller gave up on
// expires at the queue device or the worker instead of running later.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <zmqkit/queue/device.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::reqrep;

TEST_CASE("deadline: requests that timed out at the client are not executed later") {
  zmq::context_t ctx;
  queue::device dev(ctx, {.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*", .tick = 5ms});
  std::thread device_loop([&] { dev.run(); });
  struct stop_device {
    queue::device& d;
    std::thread& t;
    ~stop_device() {
      d.stop();
      t.join();
    }
  } stopper{dev, device_loop};

  std::mutex mu;
  std::set<message_id> executed;
  std::atomic<int> without_ttl{0};
  worker w(ctx, dev.backend_endpoint(), [&](const envelope& req) {
    if (req.ttl.count() == 0) ++without_ttl;
    {
      std::lock_guard lock(mu);
      executed.insert(req.id);
    }
    std::this_thread::sleep_for(40ms);  // a slow worker: the work itself, not a wait in the test
    return make_reply(req, "slow.done");
  });
  std::jthread worker_loop([&](std::stop_token st) { w.run(st); });
  REQUIRE(test::wait_until([&] { return dev.stats().workers_ready == 1; }));

  // 100 ms x 1 retry: a 200 ms budget; 20 requests of 40 ms each cannot all make it.
  client c(ctx, dev.frontend_endpoint(), {.retry = {.timeout = 100ms, .retries = 1}});
  constexpr int requests = 20;
  for (int i = 0; i < requests; ++i) c.send(make_envelope("slow.job"));
  std::set<message_id> answered, timed_out;
  REQUIRE(test::wait_until(
      [&] {
        while (auto done = c.poll(10ms)) (done->outcome.ok() ? answered : timed_out).insert(done->id);
        return answered.size() + timed_out.size() == requests;
      },
      10000ms));
  REQUIRE(timed_out.size() > 0);

  // Everything the device still holds either runs or expires; then count executions.
  REQUIRE(test::wait_until(
      [&] {
        const auto s = dev.stats();
        return s.pending == 0 && s.in_flight == 0;
      },
      10000ms));
  std::lock_guard lock(mu);
  std::size_t executed_after_timeout = 0;
  for (const auto& id : timed_out) executed_after_timeout += executed.count(id);
  CAPTURE(answered.size());
  CAPTURE(timed_out.size());
  CAPTURE(executed.size());
  CHECK(without_ttl == 0);
  // One worker runs one request at a time: at most the one running when the
  // budget ran out finishes after its client gave up.
  CHECK(executed_after_timeout <= 1);
  CHECK(executed.size() <= answered.size() + 1);
}
