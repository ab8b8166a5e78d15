// Handler threads for the worker and the server: the loop stays free to
// heartbeat and to spot duplicates while a handler runs. Each thread is a
// zmqkit::actor; results come back to the loop as messages on an inproc PULL
// socket it watches.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include <optional>
#include <zmq.hpp>
#include <zmqkit/actor.hpp>

namespace zmqkit::reqrep::detail {

enum class job_outcome : unsigned char {
  ok,              // the handler's reply
  handler_failed,  // an error reply made because the handler threw
  expired,         // an `expired` error reply: the TTL passed while the job waited for a thread
};

struct job_result {
  job_outcome outcome = job_outcome::ok;
  zmq::message_t reply;
};

// A job that ran, with the tag it was submitted with (the caller's routing).
struct finished_job {
  job_outcome outcome = job_outcome::ok;
  zmq::message_t reply;
  std::vector<zmq::message_t> tag;
};

class executor {
 public:
  using job = std::function<job_result()>;

  // Starts `threads` (>= 1) handler threads; the result socket is bound before they start.
  executor(zmq::context_t& ctx, int threads);
  // Stops and joins the threads; jobs not yet started are dropped.
  ~executor();
  // The same, keeping the result socket: results of the jobs that ran can still be read.
  void join();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  // Thread-safe. An idle thread takes the job at once; otherwise the first to finish does.
  // `tag` comes back with its result.
  void submit(job j, std::vector<zmq::message_t> tag);
  // Readable when a result is there; take_result() reads one.
  zmq::socket_t& results() noexcept { return pull_; }
  // Returns: the next finished job, or nullopt when none is waiting.
  std::optional<finished_job> take_result();
  std::size_t backlog() const;

 private:
  // Runs jobs on thread `t` until none is left, then marks it idle.
  void work(std::size_t t);

  std::string endpoint_;
  zmq::socket_t pull_;
  mutable std::mutex mutex_;
  struct queued_job {
    job run;
    std::vector<zmq::message_t> tag;
  };
  std::deque<queued_job> jobs_;
  std::vector<char> idle_;  // per thread, under mutex_: no work() queued or running there
  bool stopping_ = false;
  std::vector<std::unique_ptr<zmq::socket_t>> pushes_;  // per thread, made and used on it
  std::vector<zmqkit::actor> threads_;
};

}  // namespace zmqkit::reqrep::detail
