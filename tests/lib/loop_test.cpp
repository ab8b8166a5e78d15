#include <zmqkit/actor.hpp>
#include <zmqkit/loop.hpp>

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/sockets.hpp"

using namespace std::chrono_literals;
using zmqkit::test::test_socket;
using zmqkit::test::unique_inproc;

namespace {
// Whether `fd` turns readable within `timeout`: what an outer event loop waits for.
bool readable_within(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

std::atomic<int> signals_seen{0};
void on_signal(int) { ++signals_seen; }
}  // namespace

TEST_CASE("timers follow the injected clock: nothing fires until it is advanced") {
  zmqkit::manual_clock clock;
  zmqkit::loop loop(clock);
  std::vector<std::string> fired;
  loop.after(100ms, [&] { fired.push_back("once"); });
  loop.every(40ms, [&] { fired.push_back("tick"); });
  const auto cancelled = loop.after(50ms, [&] { fired.push_back("cancelled"); });
  loop.cancel(cancelled);

  CHECK_FALSE(loop.run_once(0ms));
  CHECK(fired.empty());
  CHECK(*loop.next_timeout() == 40ms);

  clock.advance(40ms);
  CHECK(loop.run_once(0ms));
  CHECK(fired == std::vector<std::string>{"tick"});
  clock.advance(40ms);
  loop.run_once(0ms);
  clock.advance(20ms);  // t = 100 ms: the one-shot is due, the next tick at 120 ms is not
  loop.run_once(0ms);
  CHECK(fired == std::vector<std::string>{"tick", "tick", "once"});
  clock.advance(20ms);
  loop.run_once(0ms);
  CHECK(fired.back() == "tick");
  CHECK(fired.size() == 4);
  CHECK(*loop.next_timeout() == 40ms);  // only the periodic timer is left
}

TEST_CASE("a timer may cancel itself and add others; one added for now runs on the next round") {
  zmqkit::manual_clock clock;
  zmqkit::loop loop(clock);
  int ticks = 0, followups = 0;
  zmqkit::loop::id tick = 0;
  tick = loop.every(10ms, [&] {
    if (++ticks == 2) {
      loop.cancel(tick);
      loop.after(0ms, [&] { ++followups; });
    }
  });
  for (int i = 0; i < 5; ++i) {
    clock.advance(10ms);
    loop.run_once(0ms);
  }
  CHECK(ticks == 2);
  CHECK(followups == 1);
  CHECK_FALSE(loop.next_timeout().has_value());
}

TEST_CASE("post() from another thread runs on the loop's thread and makes fd() readable") {
  zmqkit::loop loop;
  CHECK_FALSE(readable_within(loop.fd(), 0ms));
  std::thread::id ran_on;
  std::thread poster([&] { loop.post([&] { ran_on = std::this_thread::get_id(); }); });
  poster.join();
  REQUIRE(readable_within(loop.fd(), 5000ms));
  CHECK(loop.poll_ready());
  CHECK(ran_on == std::this_thread::get_id());
  CHECK_FALSE(readable_within(loop.fd(), 0ms));  // nothing left to do
}

TEST_CASE("many posts from several threads all run, in order per thread") {
  zmqkit::loop loop;
  constexpr int per_thread = 1000;
  std::vector<int> last(4, -1);
  bool in_order = true;
  int total = 0;
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t)
    posters.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        loop.post([&, t, i] {
          in_order = in_order && last[t] == i - 1;
          last[t] = i;
          if (++total == 4 * per_thread) loop.stop();
        });
    });
  std::jthread watchdog([&](std::stop_token st) {  // the test fails instead of hanging
    std::mutex m;
    std::condition_variable_any woken;
    std::unique_lock lock(m);
    woken.wait_for(lock, st, 5s, [] { return false; });  // 5 s, or until the test is done
    if (!st.stop_requested()) loop.stop();
  });
  loop.run();
  for (auto& p : posters) p.join();
  CHECK(total == 4 * per_thread);
  CHECK(in_order);
}

TEST_CASE("fd() turns readable when a watched socket gets a message; the handler runs in poll_ready()") {
  zmq::context_t ctx;
  auto in = test_socket(ctx, zmq::socket_type::pull);
  auto out = test_socket(ctx, zmq::socket_type::push);
  const auto ep = unique_inproc("loop");
  in.bind(ep);
  out.connect(ep);
  zmqkit::loop loop;
  std::vector<std::string> got;
  loop.add(in, [&] {
    zmq::message_t m;
    while (in.recv(m, zmq::recv_flags::dontwait)) got.push_back(m.to_string());
  });
  loop.poll_ready();  // a new watch is checked at once
  CHECK_FALSE(readable_within(loop.fd(), 0ms));
  out.send(zmq::str_buffer("hello"), zmq::send_flags::none);
  REQUIRE(readable_within(loop.fd(), 5000ms));
  CHECK(loop.poll_ready());
  CHECK(got == std::vector<std::string>{"hello"});
}

TEST_CASE("edge-triggered ZMQ_FD: a handler that reads one message at a time still gets them all") {
  zmq::context_t ctx;
  auto in = test_socket(ctx, zmq::socket_type::pull);
  auto out = test_socket(ctx, zmq::socket_type::push);
  const auto ep = unique_inproc("loop");
  in.bind(ep);
  out.connect(ep);
  for (int i = 0; i < 5; ++i) out.send(zmq::message_t(std::to_string(i)), zmq::send_flags::none);
  zmqkit::loop loop;
  int got = 0;
  loop.add(in, [&] {
    zmq::message_t m;
    if (in.recv(m, zmq::recv_flags::dontwait)) ++got;  // one per call, the rest stays queued
  });
  // The ZMQ_FD edge came once; the loop must keep its own fd readable while messages remain.
  for (int round = 0; round < 50 && got < 5; ++round) {
    REQUIRE(readable_within(loop.fd(), 5000ms));
    loop.poll_ready();
  }
  CHECK(got == 5);
  loop.poll_ready();
  CHECK_FALSE(readable_within(loop.fd(), 0ms));
}

TEST_CASE("a reply that arrives while a timer sends is not lost (the send ate the ZMQ_FD edge)") {
  zmq::context_t ctx;
  auto server = test_socket(ctx, zmq::socket_type::router);
  auto client = test_socket(ctx, zmq::socket_type::dealer);
  const auto ep = zmqkit::test::bind_ephemeral(server);
  client.connect(ep);
  std::jthread echo([&](std::stop_token st) {
    std::vector<zmq::message_t> frames;
    while (!st.stop_requested()) {
      zmq::message_t id, body;
      if (!server.recv(id)) continue;
      (void)server.recv(body);
      server.send(id, zmq::send_flags::sndmore);
      server.send(body, zmq::send_flags::none);
    }
  });
  zmqkit::loop loop;
  int sent = 0, replies = 0;
  loop.add(client, [&] {
    zmq::message_t m;
    while (client.recv(m, zmq::recv_flags::dontwait)) ++replies;
    if (replies == 200) loop.stop();
  });
  loop.every(1ms, [&] {
    if (sent < 200) client.send(zmq::message_t(std::to_string(sent++)), zmq::send_flags::dontwait);
  });
  loop.after(10s, [&] { loop.stop(); });  // the test fails instead of hanging
  loop.run();
  CHECK(replies == 200);
}

TEST_CASE("plain descriptors are level-triggered") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  zmqkit::loop loop;
  std::string got;
  loop.add_fd(p[0], [&] {
    char c;
    if (::read(p[0], &c, 1) == 1) got += c;  // one byte per call
  });
  REQUIRE(::write(p[1], "abc", 3) == 3);
  for (int round = 0; round < 10 && got.size() < 3; ++round) {
    REQUIRE(readable_within(loop.fd(), 5000ms));
    loop.poll_ready();
  }
  CHECK(got == "abc");
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("a timer on the real clock makes fd() readable when it is due") {
  zmqkit::loop loop;
  bool fired = false;
  loop.after(20ms, [&] { fired = true; });
  CHECK_FALSE(readable_within(loop.fd(), 0ms));
  for (int round = 0; round < 100 && !fired; ++round) {
    REQUIRE(readable_within(loop.fd(), 5000ms));
    loop.poll_ready();
  }
  CHECK(fired);
}

TEST_CASE("stop() from another thread ends run(); stop() before run() returns at once until restart()") {
  zmqkit::loop loop;
  std::atomic<bool> running{false};
  loop.post([&] { running = true; });
  std::thread stopper([&] {
    zmqkit::test::wait_until([&] { return running.load(); });
    loop.stop();
  });
  loop.run();
  stopper.join();
  CHECK(running);
  CHECK(loop.stopped());
  loop.run();  // still stopped: returns at once
  loop.restart();
  bool again = false;
  loop.post([&] {
    again = true;
    loop.stop();
  });
  loop.run();
  CHECK(again);
}

TEST_CASE("a signal interrupting the wait (EINTR) is a wake-up, not an error") {
  struct sigaction action {};
  action.sa_handler = on_signal;  // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGUSR1, &action, nullptr);
  zmqkit::loop loop;
  bool fired = false;
  loop.after(300ms, [&] {
    fired = true;
    loop.stop();
  });
  const pthread_t target = pthread_self();
  std::atomic<bool> done{false};
  signals_seen = 0;
  std::thread signaller([&] {
    while (!done) {
      pthread_kill(target, SIGUSR1);
      std::this_thread::sleep_for(10ms);
    }
  });
  CHECK_NOTHROW(loop.run_for(10s));
  done = true;
  signaller.join();
  CHECK(fired);
  CHECK(signals_seen > 0);
}

TEST_CASE("an exception from a handler leaves run_once(); the loop stays usable") {
  zmqkit::manual_clock clock;
  zmqkit::loop loop(clock);
  int later = 0;
  loop.post([] { throw std::runtime_error("boom"); });
  loop.after(1ms, [&] { ++later; });
  CHECK_THROWS_AS(loop.run_once(0ms), std::runtime_error);
  clock.advance(1ms);
  loop.run_once(0ms);
  CHECK(later == 1);
}

TEST_CASE("actor: setup runs on its thread, the pipe talks to it, stop joins it") {
  zmq::context_t ctx;
  std::thread::id actor_thread;
  zmqkit::actor echo(ctx, [&](zmqkit::loop& loop, zmq::socket_t& pipe) {
    actor_thread = std::this_thread::get_id();
    loop.add(pipe, [&pipe] {
      zmq::message_t m;
      while (pipe.recv(m, zmq::recv_flags::dontwait)) pipe.send(m, zmq::send_flags::dontwait);
    });
  });
  CHECK(actor_thread != std::this_thread::get_id());
  echo.pipe().set(zmq::sockopt::rcvtimeo, 5000);
  echo.pipe().send(zmq::str_buffer("ping"), zmq::send_flags::none);
  zmq::message_t back;
  REQUIRE(echo.pipe().recv(back));
  CHECK(back.to_string() == "ping");
  std::atomic<bool> posted_on_actor{false};
  echo.post([&] { posted_on_actor = std::this_thread::get_id() == actor_thread; });
  CHECK(zmqkit::test::wait_until([&] { return posted_on_actor.load(); }));
  echo.stop();
  echo.stop();  // idempotent
}

TEST_CASE("actor: an exception from setup comes out of the constructor; one from a handler out of stop()") {
  zmq::context_t ctx;
  CHECK_THROWS_WITH_AS(zmqkit::actor(ctx, [](zmqkit::loop&, zmq::socket_t&) { throw std::runtime_error("no"); }),
                       "no", std::runtime_error);
  std::atomic<bool> reached{false};
  zmqkit::actor failing(ctx, [&](zmqkit::loop& loop, zmq::socket_t&) {
    loop.post([&] {
      reached = true;
      throw std::runtime_error("handler failed");
    });
  });
  REQUIRE(zmqkit::test::wait_until([&] { return reached.load(); }));  // else stop() may come first
  CHECK_THROWS_WITH_AS(failing.stop(), "handler failed", std::runtime_error);
}
