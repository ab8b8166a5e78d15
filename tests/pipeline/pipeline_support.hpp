// Shared by the pipeline tests: workers running in threads, and a loop that
// drives a ventilator and a sink from the test thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>
#include <zmqkit/pipeline/sink.hpp>
#include <zmqkit/pipeline/ventilator.hpp>
#include <zmqkit/pipeline/worker.hpp>

namespace zmqkit::test {

using namespace std::chrono_literals;

// A worker in its own thread. It "processes" each task for `work` (the work
// itself, not a synchronisation sleep), sends a result, and records what it took.
// stop_after: the worker stops abruptly (no result) upon taking its n-th task.
class worker_thread {
 public:
  worker_thread(zmq::context_t& ctx, std::string vent, std::string sink, pipeline::worker_options opts,
                std::chrono::microseconds work = 0us, std::size_t stop_after = 0)
      : thread_([this, &ctx, vent, sink, opts, work, stop_after] {
          pipeline::worker w(ctx, vent, sink, opts);
          ready_ = true;
          while (!stop_) {
            auto task = w.receive(20ms);
            if (!task) continue;
            {
              std::lock_guard lock(mutex_);
              taken_.push_back(task->id);
              priorities_.push_back(task->priority);
              if (stop_after && taken_.size() >= stop_after) break;  // "crashes" holding its tasks
            }
            if (work > 0us) std::this_thread::sleep_for(work);
            envelope result = make_reply(*task, "test.done");
            result.body = task->body;
            ++done_;  // before sending, so that a test seeing the result sees the count
            w.send_result(std::move(result));
          }
          stopped_ = true;
        }) {}
  ~worker_thread() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool ready() const { return ready_; }
  bool stopped() const { return stopped_; }
  std::size_t done() const { return done_; }
  std::vector<message_id> taken() const {
    std::lock_guard lock(mutex_);
    return taken_;
  }
  std::vector<int> priorities() const {
    std::lock_guard lock(mutex_);
    return priorities_;
  }

 private:
  std::atomic<bool> stop_{false}, ready_{false}, stopped_{false};
  std::atomic<std::size_t> done_{0};
  mutable std::mutex mutex_;
  std::vector<message_id> taken_;
  std::vector<int> priorities_;
  std::thread thread_;
};

// Polls the ventilator and the sink from this thread until `done` holds or
// `deadline` passes. Returns: whether `done` held.
inline bool drive(pipeline::ventilator& vent, pipeline::sink& sink, const std::function<bool()>& done,
                  std::chrono::milliseconds deadline = 10s,
                  const std::function<void(const envelope&)>& on_result = {}) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    vent.poll(1ms);
    while (auto r = sink.receive(0ms))
      if (on_result) on_result(*r);
    if (!done()) {
      if (auto r = sink.receive(1ms); r && on_result) on_result(*r);
    }
  }
  return true;
}

inline std::vector<envelope> make_tasks(std::size_t n, std::uint8_t priority = default_priority) {
  std::vector<envelope> tasks;
  for (std::size_t i = 0; i < n; ++i) {
    auto t = make_envelope("test.task", static_cast<int>(i));
    t.priority = priority;
    t.headers.emplace("n", std::to_string(i));
    tasks.push_back(std::move(t));
  }
  return tasks;
}

}  // namespace zmqkit::test
