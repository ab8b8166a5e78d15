// lib's background threads survive signals: the handshake monitor's reader and
// the ZAP handler run on zmqkit::actor loops, where EINTR is a wake-up. (They
// used raw zmq::poll, which throws on EINTR: the thread, and with it the
// process, died on the first signal that landed there.)
#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "support/sockets.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;

namespace {
std::atomic<int> signals_seen{0};
void on_signal(int) { ++signals_seen; }

// Blocks SIGUSR1 on this thread (threads started before keep it unblocked; libzmq's
// own threads block every signal), then signals the process until `n` have been
// handled: they can only land on the background threads under test.
void signal_background_threads(int n) {
  struct sigaction action {};
  action.sa_handler = on_signal;  // no SA_RESTART: a blocking wait returns EINTR
  sigaction(SIGUSR1, &action, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signals_seen = 0;
  for (int i = 0; i < 200 && signals_seen < n; ++i) {
    ::kill(::getpid(), SIGUSR1);
    std::this_thread::sleep_for(5ms);
  }
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}
}  // namespace

TEST_CASE("the handshake monitor keeps counting after signals hit its thread") {
  zmq::context_t ctx;
  auto router = zmqkit::test::test_socket(ctx, zmq::socket_type::router);
  zmqkit::handshake_monitor monitor(ctx, router);
  const std::string ep = zmqkit::test::bind_ephemeral(router);
  signal_background_threads(10);
  CHECK(signals_seen >= 10);
  auto dealer = zmqkit::test::test_socket(ctx, zmq::socket_type::dealer);
  dealer.connect(ep);
  CHECK(zmqkit::test::wait_until([&] { return monitor.stats().accepted >= 1; }));
}

TEST_CASE("the ZAP handler still answers after signals hit its thread") {
  zmqkit::test::temp_dir dir;
  std::filesystem::create_directory(dir / "allow");
  zmq::context_t ctx;
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir / "allow"});
  signal_background_threads(10);
  CHECK(signals_seen >= 10);
  CHECK_NOTHROW(auth.reload());  // answered on its control pipe: the thread is alive
  CHECK(auth.stats().reloads == 2);
}
