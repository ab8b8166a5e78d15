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
#include <zmq.hpp>
#include <zmqkit/actor.hpp>

namespace zmqkit::reqrep::detail {

class executor {
 public:
  using job = std::function<std::vector<zmq::message_t>()>;

  // Starts `threads` (>= 1) handler threads; the result socket is bound before they start.
  executor(zmq::context_t& ctx, int threads);
  // Stops and joins the threads; jobs not yet started are dropped.
  ~executor();
  // The same, keeping the result socket: results of the jobs that ran can still be read.
  void join();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  // Thread-safe. An idle thread takes the job at once; otherwise the first to finish does.
  void submit(job j);
  // Each job's frames arrive here as one multipart message.
  zmq::socket_t& results() noexcept { return pull_; }
  std::size_t backlog() const;

 private:
  // Runs jobs on thread `t` until none is left, then marks it idle.
  void work(std::size_t t);

  std::string endpoint_;
  zmq::socket_t pull_;
  mutable std::mutex mutex_;
  std::deque<job> jobs_;
  std::vector<char> idle_;  // per thread, under mutex_: no work() queued or running there
  bool stopping_ = false;
  std::vector<std::unique_ptr<zmq::socket_t>> pushes_;  // per thread, made and used on it
  std::vector<zmqkit::actor> threads_;
};

}  // namespace zmqkit::reqrep::detail
