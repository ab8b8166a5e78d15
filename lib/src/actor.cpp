#include <zmqkit/actor.hpp>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <utility>

namespace zmqkit {

struct actor::impl {
  zmq::socket_t ours;
  zmq::socket_t theirs;  // the actor thread's once it has started
  loop events;           // built here, run only on the actor thread
  std::exception_ptr failure;
  std::thread thread;

  explicit impl(const zmqkit::clock& clock) : events(clock) {}
  ~impl() {
    try {
      stop();
    } catch (...) {  // a destructor cannot report it; stop() before destroying to see it
    }
  }

  void stop() {
    if (!thread.joinable()) return;
    events.stop();
    thread.join();
    if (auto f = std::exchange(failure, nullptr)) std::rethrow_exception(f);
  }
};

actor::actor(zmq::context_t& ctx, setup_fn setup, const zmqkit::clock& clock)
    : impl_(make_pimpl<impl>(clock)) {
  static std::atomic<std::uint64_t> counter{0};
  const std::string endpoint = "inproc://zmqkit-actor-" + std::to_string(counter++);
  auto& s = *impl_;
  s.theirs = zmq::socket_t(ctx, zmq::socket_type::pair);
  s.theirs.set(zmq::sockopt::linger, 0);
  s.theirs.bind(endpoint);
  s.ours = zmq::socket_t(ctx, zmq::socket_type::pair);
  s.ours.set(zmq::sockopt::linger, 0);
  s.ours.connect(endpoint);

  std::promise<void> started;
  auto ready = started.get_future();
  // The thread owns the promise: set_value() may still be running when the constructor returns.
  s.thread = std::thread([&s, started = std::move(started), setup = std::move(setup)]() mutable {
    try {
      setup(s.events, s.theirs);
    } catch (...) {
      started.set_exception(std::current_exception());
      return;
    }
    started.set_value();
    try {
      s.events.run();
    } catch (...) {
      s.failure = std::current_exception();
    }
  });
  try {
    ready.get();
  } catch (...) {
    s.thread.join();
    throw;
  }
}

zmq::socket_t& actor::pipe() noexcept { return impl_->ours; }

void actor::post(loop::handler work) { impl_->events.post(std::move(work)); }

void actor::stop() { impl_->stop(); }

}  // namespace zmqkit
