#include <zmqkit/poll.hpp>

#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

#include "support/sockets.hpp"

using namespace std::chrono_literals;

namespace {
std::atomic<int> signals_seen{0};
void on_signal(int) { ++signals_seen; }
}  // namespace

TEST_CASE("a signal during poll is 'nothing ready', not an exception") {
  struct sigaction action {};
  action.sa_handler = on_signal;  // no SA_RESTART: the wait is interrupted with EINTR
  sigaction(SIGUSR1, &action, nullptr);

  zmq::context_t ctx;
  auto socket = zmqkit::test::test_socket(ctx, zmq::socket_type::pull);
  socket.bind(zmqkit::test::unique_inproc("poll"));
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};

  const pthread_t poller = pthread_self();
  std::atomic<bool> done{false};
  // Keep signalling until the poll returns, so the test cannot race the poll's start.
  std::thread signaller([&] {
    while (!done) {
      pthread_kill(poller, SIGUSR1);
      std::this_thread::sleep_for(10ms);
    }
  });
  int ready = -1;
  CHECK_NOTHROW(ready = zmqkit::poll(&item, 1, 10s));
  done = true;
  signaller.join();
  CHECK(ready == 0);
  CHECK(signals_seen > 0);
}
