#include "executor.hpp"

#include <atomic>
#include <zmq_addon.hpp>

namespace zmqkit::reqrep::detail {

executor::executor(zmq::context_t& ctx, int threads) : pull_(ctx, zmq::socket_type::pull) {
  static std::atomic<unsigned> counter{0};
  endpoint_ = "inproc://zmqkit-reqrep-executor-" + std::to_string(counter++);
  pull_.set(zmq::sockopt::rcvhwm, 0);  // bounded by the job queue, never blocks a handler thread
  pull_.set(zmq::sockopt::linger, 0);
  pull_.bind(endpoint_);  // inproc: bind before the threads connect
  for (int i = 0; i < std::max(threads, 1); ++i) threads_.emplace_back([this, &ctx] { run(ctx); });
}

executor::~executor() { join(); }

void executor::join() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void executor::submit(job j) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(j));
  }
  wake_.notify_one();
}

std::size_t executor::backlog() const {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

void executor::run(zmq::context_t& ctx) {
  zmq::socket_t push(ctx, zmq::socket_type::push);
  push.set(zmq::sockopt::sndhwm, 0);
  push.set(zmq::sockopt::linger, 0);
  push.connect(endpoint_);
  for (;;) {
    job j;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      j = std::move(jobs_.front());
      jobs_.pop_front();
    }
    std::vector<zmq::message_t> frames = j();
    zmq::send_multipart(push, frames, zmq::send_flags::dontwait);
  }
}

}  // namespace zmqkit::reqrep::detail
