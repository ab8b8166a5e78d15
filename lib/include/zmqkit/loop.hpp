// zmqkit/loop.hpp — one event loop for zmq sockets, plain file descriptors,
// timers and work posted from other threads, so several roles (client, worker,
// publisher, subscriber) share one thread, or live inside another event loop.
//
//   ```cpp
//   zmq::context_t ctx;
//   zmq::socket_t pull(ctx, zmq::socket_type::pull);
//   pull.bind("inproc://jobs");
//   zmqkit::loop loop;
//   loop.add(pull, [&] {                        // readable: read what is there now
//     zmq::message_t m;
//     while (pull.recv(m, zmq::recv_flags::dontwait)) { /* ... */ }
//   });
//   loop.every(std::chrono::seconds(1), [] { /* a heartbeat */ });
//   loop.after(std::chrono::seconds(5), [&] { loop.stop(); });
//   loop.run();                                 // until stop()
//   ```
//
// Three ways to drive it, all from one thread (the loop's thread):
// - run() until stop(); run_for(d); run_once(timeout) for one round;
// - inside another event loop: wait until fd() is readable, then call
//   poll_ready(), which does the ready work without blocking. fd() is an epoll
//   descriptor and becomes readable when a watched socket or descriptor is,
//   when work is posted, and when the next timer is due (a timerfd armed on the
//   loop's clock, so with a manual_clock the outer loop calls poll_ready() after
//   advancing it, or uses next_timeout()).
//
// ZeroMQ sockets: ZMQ_FD signals edge-triggered ("something may have changed"),
// and any operation on the socket (a send from a timer, a recv) may consume the
// signal without the socket's queue being empty. So the loop never trusts
// ZMQ_FD alone: it reads ZMQ_EVENTS of every watched socket after every round of
// handlers, calls a socket's handler while ZMQ_EVENTS has ZMQ_POLLIN, and while
// any socket is still readable afterwards it keeps fd() readable itself (the
// post eventfd) and run_once() does not sleep. A handler need not read
// everything: reading a bounded batch is fine, the loop comes back to it.
//
// Timers follow the injected zmqkit::clock: with a manual_clock a test advances
// it and calls run_once(0ms); nothing sleeps. Waits (run_for, run_once's
// timeout) are real time; on a clock other than clock::real() a single wait
// lasts at most 100 ms, so a loop on another thread notices the clock moving.
//
// Threading: post() and stop() may be called from any thread; everything else
// from the loop's thread only. Handlers run on that thread; an exception from a
// handler leaves run()/run_once()/poll_ready() (the loop stays usable). A handler
// may add and cancel watches and timers, its own included. A signal
// interrupting the wait (EINTR) is a wake-up with nothing ready, never an error.
#pragma once

#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/pimpl.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

namespace zmqkit {

class loop {
 public:
  using handler = std::function<void()>;
  // Names a watch or a timer, for cancel(). 0 is never used.
  using id = std::uint64_t;

  // Throws: std::system_error when the epoll/eventfd/timerfd descriptors cannot be made.
  explicit loop(const zmqkit::clock& clock = zmqkit::clock::real());
  // Neither copied nor moved: what is attached to a loop keeps its address.
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  // Calls on_readable while `socket` has a message to read (ZMQ_EVENTS & ZMQ_POLLIN).
  // The socket must outlive the watch: cancel() before closing it.
  // Throws: std::system_error (EEXIST) when the socket is watched already.
  id add(zmq::socket_ref socket, handler on_readable);
  // Calls on_readable while `fd` is readable (level-triggered). One watch per descriptor.
  id add_fd(int fd, handler on_readable);

  // Timers: once at `when` / after `delay`, or every `period` (first after one
  // period). Times are on the loop's clock. Timers due together run in due order.
  id at(steady_time when, handler on_time);
  id after(std::chrono::nanoseconds delay, handler on_time);
  id every(std::chrono::nanoseconds period, handler on_time);

  // Removes a watch or timer; an unknown or already finished id is ignored.
  void cancel(id what) noexcept;

  // Thread-safe: runs `work` on the loop's thread during its next round and wakes it.
  void post(handler work);

  // Runs until stop(). Returns at once if stop() was called before (stop() is sticky
  // until restart()).
  void run();
  // Runs for up to `d` (real time), or until stop().
  void run_for(std::chrono::nanoseconds d);
  // One round: waits up to `timeout` (real time; 0 = not at all) for something to
  // do unless something is ready already, then does what is ready.
  // Returns: whether any handler, timer or posted work ran.
  bool run_once(std::chrono::nanoseconds timeout);
  // Thread-safe: makes run()/run_for() return after the current handler.
  void stop() noexcept;
  bool stopped() const noexcept;
  // Clears the stop flag, so run() may be called again.
  void restart() noexcept;

  // For another event loop: readable when this loop has work (see the top of the file).
  int fd() const noexcept;
  // Does the ready work without blocking. Returns: as run_once().
  bool poll_ready();
  // Time until the next timer on the loop's clock (0 if due, or if work is ready
  // now), or nullopt when there is no timer: for outer loops that prefer their own timer.
  std::optional<std::chrono::nanoseconds> next_timeout() const;

  const zmqkit::clock& clock() const noexcept;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit
