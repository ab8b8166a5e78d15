// zmqkit/pipeline/ventilator.hpp — hands tasks to workers, never more than a
// worker has asked for (credit-based flow control), most urgent first.
//
//   ```cpp
//   zmqkit::pipeline::ventilator vent(ctx, "tcp://*:5557",
//       {.delivery = zmqkit::pipeline::delivery::at_least_once});
//   std::vector<zmqkit::envelope> tasks;
//   for (int i = 0; i < 100; ++i) tasks.push_back(zmqkit::make_envelope("resize.image", i));
//   std::optional<zmqkit::message_id> batch = vent.submit_batch(std::move(tasks));  // nullopt: queue full
//   while (batch && !vent.batch_done(*batch)) vent.poll(100ms);  // dispatches, resends what the sink reports missing
//   if (batch) auto status = vent.status(*batch);                 // complete, abandoned (missing ids) or expired
//   ```
//
// A batch always ends: complete (a sink confirmed every result), abandoned (the
// sink gave up; status().missing names the tasks), or expired (no outcome from
// any sink within options.batch_deadline, 60 s by default).
//
// Threading: used from one thread; poll() runs its timers and I/O, or
// attach(loop) and the loop does, with other roles (zmqkit/loop.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/message_id.hpp>
#include <zmqkit/pimpl.hpp>
#include <zmqkit/pipeline/protocol.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit::pipeline {

// Where a batch stands, as far as the ventilator has heard from the sink.
enum class batch_outcome {
  open,       // no report from a sink yet
  missing,    // a sink reported tasks missing (at-least-once: being resent); not final
  complete,   // final: a sink confirmed every result
  abandoned,  // final: the sink gave up on the missing tasks (after its max_reports reports)
  expired,    // final: no final word from a sink within ventilator_options::batch_deadline
};

struct batch_status {
  message_id batch;
  batch_outcome outcome = batch_outcome::open;
  std::size_t tasks = 0;
  std::vector<message_id> missing;  // as last reported by the sink (empty if it could not name them)
  bool ended() const noexcept {
    return outcome == batch_outcome::complete || outcome == batch_outcome::abandoned ||
           outcome == batch_outcome::expired;
  }
};

struct ventilator_options {
  pipeline::delivery delivery = delivery::at_most_once;
  // From submit_batch() to giving up waiting for the sink's verdict (outcome expired).
  // Keep it above the sink's batch_deadline x max_reports (25 s by default) plus the
  // batch's run time, so the sink's own verdict arrives first. 0 = wait forever.
  std::chrono::milliseconds batch_deadline{60'000};
  std::size_t max_pending = 100'000;  // tasks waiting for credit; submit() refuses beyond
  std::size_t max_batches = 1024;     // batches remembered (ids, and tasks when at-least-once)
  int max_attempts = 5;               // at-least-once: sends of one task, first one included
  std::int64_t max_credit = 1 << 20;  // a worker's credit is capped here (hostile grants)
  zmqkit::socket_options socket{};
  zmqkit::decode_limits limits{};
  const zmqkit::clock* clock = &zmqkit::clock::real();
  // Called (on the thread driving the ventilator) when a batch ends: complete,
  // abandoned or expired; again with complete when an abandoned batch's stragglers
  // all arrive after all.
  std::function<void(const batch_status&)> on_batch_end{};
};

struct ventilator_stats {
  std::uint64_t submitted = 0;        // tasks accepted by submit/submit_batch
  std::uint64_t dispatched = 0;       // task frames sent to a worker (resends included)
  std::uint64_t resent = 0;           // of which resends of missing tasks
  std::uint64_t refused = 0;          // submits refused: queue full
  std::uint64_t missing_reports = 0;  // zmk.batch.missing received
  std::uint64_t batches_complete = 0;
  std::uint64_t batches_abandoned = 0;  // zmk.batch.abandoned received
  std::uint64_t batches_expired = 0;    // no verdict within batch_deadline
  std::uint64_t missing_ignored =
      0;                         // ids reported missing and not resent (at-most-once, unknown, max attempts)
  std::uint64_t bad_frames = 0;  // control frames dropped: undecodable or unknown
  std::uint64_t workers_lost = 0;  // workers removed (bye, or unreachable on send)
  std::uint64_t hwm_blocked = 0;   // sends refused by a worker's full queue (retried after the next poll)
};
using ventilator_counters [[deprecated("renamed ventilator_stats")]] = ventilator_stats;

class ventilator {
 public:
  // Binds a ROUTER to `endpoint` (workers and sinks connect to it).
  // Throws: zmq::error_t when the bind fails; zmqkit::error for bad security keys.
  ventilator(zmq::context_t& ctx, const std::string& endpoint, ventilator_options opts = {});

  // The bound endpoint (with the real port when bound to `*`).
  std::string endpoint() const;

  // Queues one task outside any batch. Returns: false when max_pending tasks are waiting.
  // Throws: zmqkit::error{bad_envelope} when the envelope cannot be encoded.
  [[nodiscard]] bool submit(const envelope& task);

  // Queues every task as one batch: stamps zmk.batch and zmk.batch.size, announces
  // the ids to connected sinks. Returns: the batch id, or nullopt when the queue
  // cannot take the whole batch (nothing is queued then).
  [[nodiscard]] std::optional<message_id> submit_batch(std::vector<envelope> tasks);

  // Waits up to `timeout` for worker credit and sink reports, and sends queued
  // tasks to workers with credit, most urgent first.
  // Throws: error{bad_config} once attached to a loop (that loop drives the ventilator).
  void poll(std::chrono::milliseconds timeout);

  // From now on `loop` drives the ventilator on its thread: credit, reports,
  // dispatch (also right after submit), batch deadlines, on_batch_end. The loop
  // must outlive the ventilator. Throws: error{bad_config} when attached already.
  void attach(zmqkit::loop& loop);

  // Polls until no task waits for credit. Returns: whether the queue emptied in time.
  [[nodiscard]] bool flush(std::chrono::milliseconds timeout);

  // Queues again the given tasks of `batch` (at-least-once only; the sink does this
  // for you through zmk.batch.missing). Returns: how many were queued.
  std::size_t resend(const message_id& batch, std::span<const message_id> ids);

  // Returns: whether `batch` has ended: complete, abandoned or expired (see status()).
  bool batch_done(const message_id& batch) const;
  // Returns: where `batch` stands, or nullopt when it is unknown (or forgotten: max_batches).
  std::optional<batch_status> status(const message_id& batch) const;

  const ventilator_stats& stats() const noexcept;
  [[deprecated("renamed stats()")]] const ventilator_stats& counters() const noexcept { return stats(); }
  std::size_t pending() const noexcept;  // tasks waiting for credit
  std::size_t workers() const noexcept;  // workers known (that granted credit)
  std::int64_t credit() const noexcept;  // total credit across workers

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit::pipeline
