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

void executor::submit(job j, std::vector<zmq::message_t> tag) {
  std::size_t chosen = idle_.size();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    jobs_.push_back(queued_job{std::move(j), std::move(tag)});
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

// On the wire between the threads: [outcome byte, reply, tag...].
std::optional<finished_job> executor::take_result() {
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(pull_, std::back_inserter(frames), zmq::recv_flags::dontwait) || frames.size() < 2)
    return std::nullopt;
  finished_job done{.outcome = static_cast<job_outcome>(*frames[0].data<unsigned char>()),
                    .reply = std::move(frames[1]),
                    .tag = {}};
  done.tag.reserve(frames.size() - 2);
  for (std::size_t i = 2; i < frames.size(); ++i) done.tag.push_back(std::move(frames[i]));
  return done;
}

void executor::work(std::size_t t) {
  for (;;) {
    queued_job j;
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || jobs_.empty()) {
        idle_[t] = 1;
        return;
      }
      j = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job_result r = j.run();
    std::vector<zmq::message_t> frames;
    frames.reserve(2 + j.tag.size());
    const auto outcome = static_cast<unsigned char>(r.outcome);
    frames.emplace_back(&outcome, 1);
    frames.push_back(std::move(r.reply));
    for (auto& f : j.tag) frames.push_back(std::move(f));
    zmq::send_multipart(*pushes_[t], frames, zmq::send_flags::dontwait);
  }
}

}  // namespace zmqkit::reqrep::detail
