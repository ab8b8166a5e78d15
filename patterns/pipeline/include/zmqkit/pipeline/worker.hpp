// zmqkit/pipeline/worker.hpp — takes tasks from a ventilator, at most `credit`
// at a time, most urgent first, and pushes results to a sink.
//
//   ```cpp
//   zmqkit::pipeline::worker w(ctx, "tcp://vent:5557", "tcp://sink:5558");
//   while (running) {
//     auto task = w.receive(250ms);        // frees the slot of the previous task
//     if (!task) continue;
//     w.send_result(zmqkit::make_reply(*task, "resize.done", work(task->body_as<std::string>())));
//   }
//   ```
//
// Threading: used from one thread, or attach(loop, on_task) and the loop's
// thread runs it (zmqkit/loop.hpp); receive() and the loop share the handlers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::pipeline {

struct worker_options {
  // Most tasks held at once (queued here, or being processed). 1 is the fairest
  // distribution; more hides the network round trip from a fast worker.
  std::size_t credit = 8;
  // An idle worker re-states its credit this often, so a restarted ventilator
  // (or a lost grant) does not leave it starved.
  std::chrono::milliseconds credit_refresh{1000};
  // How long send_result() waits for room towards the sink.
  std::chrono::milliseconds send_timeout{1000};
  zmqkit::socket_options socket{};  // applied to both sockets (both connect)
  zmqkit::decode_limits limits{};
  const zmqkit::clock* clock = &zmqkit::clock::real();
};

struct worker_stats {
  std::uint64_t received = 0;       // tasks received
  std::uint64_t expired = 0;        // tasks dropped unprocessed because their TTL had passed
  std::uint64_t results = 0;        // results sent
  std::uint64_t send_failures = 0;  // results not sent within send_timeout
  std::uint64_t bad_frames = 0;     // frames dropped: not a valid envelope
  std::uint64_t credit_grants = 0;  // credit messages sent
};
using worker_counters [[deprecated("renamed worker_stats")]] = worker_stats;

// For attach(): runs one task; the result it returns (if any) goes to the sink.
using task_handler = std::function<std::optional<envelope>(const envelope& task)>;

class worker {
 public:
  // Connects a DEALER to the ventilator and a PUSH to the sink (an empty
  // sink_endpoint means results are not sent anywhere), then grants `credit`.
  // Destroying it says zmk.bye so the ventilator stops counting on this worker;
  // tasks still queued here are dropped (at-least-once batches get them resent).
  worker(zmq::context_t& ctx, const std::string& ventilator_endpoint, const std::string& sink_endpoint,
         worker_options opts = {});

  // Finishes the previous task (its slot is granted back to the ventilator), then
  // returns the most urgent task held, waiting up to `timeout` for one.
  // Returns: nullopt on timeout. Throws: error{bad_config} once attached to a loop.
  [[nodiscard]] std::optional<envelope> receive(std::chrono::milliseconds timeout);

  // Sends `result` for the task last returned by receive(): its correlation_id
  // (when unset) becomes the task's id and the task's batch headers are copied.
  // Returns: false when the sink could not take it within send_timeout.
  // Throws: zmqkit::error{protocol} when no task has been received yet.
  bool send_result(envelope result);

  // From now on `loop` drives the worker on its thread: each task, most urgent
  // first, goes to on_task; a result it returns is sent as send_result() would
  // (waiting up to send_timeout for the sink); nullopt sends none. Credit and
  // its refresh run on the loop. The loop must outlive the worker.
  // Throws: error{bad_config} when attached already or on_task is empty.
  void attach(zmqkit::loop& loop, task_handler on_task);

  const worker_stats& stats() const noexcept;
  [[deprecated("renamed stats()")]] const worker_stats& counters() const noexcept { return stats(); }
  std::size_t buffered() const noexcept;  // tasks received and not yet handed out
  // Reads every task already arrived into the local queue without handing one out.
  void pump();

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::pipeline
