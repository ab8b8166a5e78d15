// Test helpers shared by every test: unique endpoints, sockets that time out
// instead of hanging, and waiting on conditions with a deadline.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace zmqkit::test {

using namespace std::chrono_literals;

// A fresh inproc endpoint name, unique within the process.
inline std::string unique_inproc(const std::string& stem = "test") {
  static std::atomic<int> counter{0};
  return "inproc://" + stem + "-" + std::to_string(counter++);
}

// A socket with 1 s send/receive timeouts and a bounded linger, so a bug fails
// a test instead of hanging it.
inline zmq::socket_t test_socket(zmq::context_t& ctx, zmq::socket_type type,
                                 std::chrono::milliseconds timeout = 1000ms) {
  zmq::socket_t s(ctx, type);
  s.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
  s.set(zmq::sockopt::sndtimeo, static_cast<int>(timeout.count()));
  s.set(zmq::sockopt::linger, 0);
  return s;
}

// Binds to an ephemeral loopback TCP port. Returns: the endpoint to connect to.
inline std::string bind_ephemeral(zmq::socket_t& s) {
  s.bind("tcp://127.0.0.1:*");
  return s.get(zmq::sockopt::last_endpoint);
}

// Polls `condition` until it holds or `deadline` passes. Returns: whether it held.
inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds deadline = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::yield();
    std::this_thread::sleep_until(std::chrono::steady_clock::now() + 1ms);
  }
  return true;
}

}  // namespace zmqkit::test
