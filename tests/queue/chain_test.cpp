// A chain of dead workers: placing a request on a worker that turns out to be
// gone removes it, and the requests it held are placed again, on the next dead
// worker, and so on. The device once did this by recursion (place -> hand_over
// -> remove_worker -> place), one level per dead worker: here it runs on a
// thread with a small stack and thousands of dead workers, so recursion would
// overflow it; a work list does not.
#include <doctest/doctest.h>
#include <pthread.h>

#include <memory>
#include <optional>
#include <vector>

#include "queue_support.hpp"

using namespace zmqkit;
using namespace zmqkit::test;
using namespace std::chrono_literals;

namespace {

constexpr int dead_workers = 2000;
// Enough for the device's own frames, not for one frame set per dead worker.
constexpr std::size_t small_stack = 256 * 1024;

// The device's run() on a thread of `small_stack` bytes (std::thread cannot set one).
class small_stack_runner {
 public:
  explicit small_stack_runner(queue::device& dev) : dev_(dev) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, small_stack);
    started_ = pthread_create(&thread_, &attr, &small_stack_runner::body, this) == 0;
    pthread_attr_destroy(&attr);
  }
  ~small_stack_runner() { join(); }
  bool started() const { return started_; }
  bool done() const { return done_; }
  void join() {
    if (started_) pthread_join(thread_, nullptr);
    started_ = false;
  }

 private:
  static void* body(void* self) {
    auto* me = static_cast<small_stack_runner*>(self);
    me->dev_.run();
    me->done_ = true;
    return nullptr;
  }
  queue::device& dev_;
  pthread_t thread_{};
  bool started_ = false;
  std::atomic<bool> done_{false};
};

zmq::context_t many_socket_context() {
  zmq::context_t ctx;
  ctx.set(zmq::ctxopt::max_sockets, dead_workers + 64);  // before the first socket
  return ctx;
}

}  // namespace

TEST_CASE("thousands of dead workers found in a chain are removed without recursion; the device keeps serving") {
  zmq::context_t ctx = many_socket_context();
  manual_clock clock;
  queue::device dev(ctx, {.frontend = unique_inproc("chain-front"),
                          .backend = unique_inproc("chain-back"),
                          .heartbeat = std::chrono::hours(1),  // no silence evicts anyone here
                          .max_workers = dead_workers + 16,
                          .tick = 2ms,
                          .clock = &clock});
  small_stack_runner runner(dev);
  REQUIRE(runner.started());
  auto wait_stats = [&](auto pred, std::chrono::milliseconds deadline = 20000ms) {
    return wait_until([&] { return pred(dev.stats()); }, deadline);
  };

  // Capacity-2 workers holding one request each: all stay ready (a free slot),
  // so each dead one is the next LRU choice for the request the previous one held.
  std::vector<std::unique_ptr<raw_worker>> workers;
  for (int i = 0; i < dead_workers; ++i) {
    workers.push_back(std::make_unique<raw_worker>(ctx, dev.backend_endpoint(), std::vector<std::string>{}, false));
    workers.back()->send_ready_capacity(2);
  }
  REQUIRE(wait_stats([](const auto& s) { return s.workers_ready == std::size_t(dead_workers); }));
  raw_client client(ctx, dev.frontend_endpoint());
  for (int i = 0; i < dead_workers; ++i) client.send(request("t.chain"));
  REQUIRE(wait_stats([](const auto& s) { return s.routed == std::uint64_t(dead_workers); }));
  CHECK(dev.stats().workers_busy == 0);

  workers.clear();  // every worker dies holding its request
  std::this_thread::sleep_for(300ms);  // the backend ROUTER learns of the closed pipes

  SUBCASE("a new request finds the first dead worker") { client.send(request("t.chain")); }
  SUBCASE("a heartbeat finds them all") {
    clock.advance(std::chrono::hours(1) + 1s);
    client.send(request("t.chain"));  // placed on whatever is left, or queued
  }

  REQUIRE(wait_stats([](const auto& s) { return s.requeued == std::uint64_t(dead_workers); }));
  REQUIRE(wait_stats([](const auto& s) { return s.pending == std::size_t(dead_workers) + 1; }));
  const auto s = dev.stats();
  CHECK(s.workers_ready + s.workers_busy == 0);
  CHECK(s.dead_lettered == 0);
  CHECK_FALSE(runner.done());

  // Still serving: a live worker takes the requeued requests first, and its reply reaches the client.
  raw_worker live(ctx, dev.backend_endpoint());
  auto got = live.request();
  REQUIRE(got.size() == 3);
  live.reply_to(got);
  auto reply = client.receive_envelope();
  REQUIRE(reply);
  CHECK(reply->correlation_id == decode(got.back()).id);

  dev.stop();
  REQUIRE(wait_until([&] {
    clock.advance(60s);
    return runner.done();
  }, 20000ms));
  runner.join();
}
