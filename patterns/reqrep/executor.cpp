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
  const std::size_t n = static_cast<std::size_t>(std::max(threads, 1));
  idle_.assign(n, 1);
  pushes_.resize(n);
  threads_.reserve(n);
  for (std::size_t t = 0; t < n; ++t)
    threads_.emplace_back(ctx, [this, &ctx, t](zmqkit::loop&, zmq::socket_t&) {
      auto push = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::push);
      push->set(zmq::sockopt::sndhwm, 0);
      push->set(zmq::sockopt::linger, 0);
      push->connect(endpoint_);
      pushes_[t] = std::move(push);
    });
}

executor::~executor() {
  join();
  pushes_.clear();
}

void executor::join() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    jobs_.clear();
  }
  for (auto& t : threads_) {
    try {
      t.stop();
    } catch (...) {  // a job's exception already ended that thread; nothing to hand back
    }
  }
}

void executor::submit(job j) {
  std::size_t chosen = idle_.size();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    jobs_.push_back(std::move(j));
    for (std::size_t t = 0; t < idle_.size(); ++t)
      if (idle_[t]) {
        idle_[t] = 0;
        chosen = t;
        break;
      }
  }
  if (chosen < threads_.size()) threads_[chosen].post([this, chosen] { work(chosen); });
}

std::size_t executor::backlog() const {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

void executor::work(std::size_t t) {
  for (;;) {
    job j;
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || jobs_.empty()) {
        idle_[t] = 1;
        return;
      }
      j = std::move(jobs_.front());
      jobs_.pop_front();
    }
    std::vector<zmq::message_t> frames = j();
    zmq::send_multipart(*pushes_[t], frames, zmq::send_flags::dontwait);
  }
}

}  // namespace zmqkit::reqrep::detail
