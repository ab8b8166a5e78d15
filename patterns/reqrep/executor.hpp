// Handler threads for the worker and the server: the poll loop stays free to
// heartbeat and to spot duplicates while a handler runs. Results come back to
// the loop as messages on an inproc PULL socket it polls.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

namespace zmqkit::reqrep::detail {

class executor {
 public:
  using job = std::function<std::vector<zmq::message_t>()>;

  // Starts `threads` (>= 1) handler threads; the result socket is bound before they start.
  executor(zmq::context_t& ctx, int threads);
  // Signals and joins the threads; jobs not yet started are dropped.
  ~executor();
  // The same, keeping the result socket: results of the jobs that ran can still be read.
  void join();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  void submit(job j);
  // Each job's frames arrive here as one multipart message.
  zmq::socket_t& results() noexcept { return pull_; }
  std::size_t backlog() const;

 private:
  void run(zmq::context_t& ctx);

  std::string endpoint_;
  zmq::socket_t pull_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<job> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace zmqkit::reqrep::detail
