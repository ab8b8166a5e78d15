// zmqkit/pipeline/sink.hpp — collects results, counts each task once, knows
// when a batch is complete and reports (to you and to the ventilator) which
// tasks are missing when a batch's deadline passes.
//
//   ```cpp
//   zmqkit::pipeline::sink sink(ctx, "tcp://*:5558", {
//       .ventilator_endpoint = "tcp://vent:5557",
//       .batch_deadline = 2s,
//       .on_report = [](const zmqkit::pipeline::batch_report& r) { log(r); }});
//   while (running)
//     if (auto result = sink.receive(250ms)) store(*result);   // duplicates never come out
//   ```
//
// Threading: used from one thread; receive() runs its timers and callbacks, or
// attach(loop, on_result) and the loop's thread does (zmqkit/loop.hpp).
// receive() waits with a blocking recv on the results socket (fewer system
// calls per result than a poll on both sockets); both run the same handlers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/message_id.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::pipeline {

enum class batch_state {
  open,       // results still expected, deadline not passed
  missing,    // the deadline passed with tasks missing (reported; more may still arrive)
  complete,   // every task's result received
  abandoned,  // still incomplete after max_reports reports: no more reports
};

struct batch_report {
  message_id batch;
  batch_state state = batch_state::open;
  std::size_t expected = 0;         // task count (from zmk.batch.size or the ventilator's id list)
  std::size_t received = 0;         // distinct task ids received
  std::vector<message_id> missing;  // ids not received (empty when the id list is unknown)
  bool ids_known = false;           // whether the ventilator's id list reached the sink
};

struct sink_options {
  // The ventilator's endpoint, for batch id lists and missing reports. Empty:
  // batches complete by count (zmk.batch.size) and missing ids cannot be named.
  std::string ventilator_endpoint;
  // Time from a batch's first sign (its id list or first result) to a missing report,
  // and between reports.
  std::chrono::milliseconds batch_deadline{5000};
  int max_reports = 5;             // then the batch is abandoned
  std::size_t max_batches = 1024;  // batches remembered (for duplicate detection), oldest forgotten
  // Called from receive() with complete, missing and abandoned reports; it must
  // not call back into the sink.
  std::function<void(const batch_report&)> on_report;
  zmqkit::socket_options socket{};          // the results PULL (binds)
  zmqkit::socket_options control_socket{};  // the DEALER to the ventilator (connects)
  zmqkit::decode_limits limits{};
  const zmqkit::clock* clock = &zmqkit::clock::real();
};

struct sink_stats {
  std::uint64_t results = 0;     // results handed out (each task id once)
  std::uint64_t duplicates = 0;  // results dropped: task id already counted
  std::uint64_t bad_frames = 0;  // frames dropped: not an envelope, bad batch headers, no correlation id
  std::uint64_t batches_complete = 0;
  std::uint64_t missing_reports = 0;
};
using sink_counters [[deprecated("renamed sink_stats")]] = sink_stats;

class sink {
 public:
  // Binds a PULL to `endpoint` for results; connects to the ventilator if configured.
  sink(zmq::context_t& ctx, const std::string& endpoint, sink_options opts = {});

  std::string endpoint() const;

  // Returns: the next result not seen before, waiting up to `timeout`; nullopt on
  // timeout. Meanwhile handles the ventilator's messages, batch deadlines and reports.
  // Throws: error{bad_config} once attached to a loop.
  [[nodiscard]] std::optional<envelope> receive(std::chrono::milliseconds timeout);
  // From now on `loop` drives the sink on its thread: every result not seen
  // before goes to on_result, reports to options.on_report, batch deadlines run
  // on the loop's timers. The loop must outlive the sink.
  // Throws: error{bad_config} when attached already or on_result is empty.
  void attach(zmqkit::loop& loop, std::function<void(envelope)> on_result);

  const sink_stats& stats() const noexcept;
  [[deprecated("renamed stats()")]] const sink_stats& counters() const noexcept { return stats(); }
  // Returns: where `batch` stands, or nullopt when the sink has not heard of it.
  std::optional<batch_report> status(const message_id& batch) const;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::pipeline
