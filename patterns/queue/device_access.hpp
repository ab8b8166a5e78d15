// Drives a queue device's handlers without run(): the fuzz target feeds it
// frames as if they had arrived, on its own thread. Private to patterns/queue
// (and tests/fuzz).
#pragma once

#include <vector>
#include <zmq.hpp>
#include <zmqkit/queue/device.hpp>

namespace zmqkit::queue {

struct device_access {
  enum class side { frontend, backend, admin };
  // Hands one message to the handler of `s`, exactly as run() does after a
  // receive, exceptions included (run() would count and drop them).
  // Precondition: run() is not running.
  static void feed(device& d, side s, std::vector<zmq::message_t> frames);
  // Runs the timers once: TTL, delivery timeout, sweeps, heartbeats.
  static void timers(device& d);
};

}  // namespace zmqkit::queue
