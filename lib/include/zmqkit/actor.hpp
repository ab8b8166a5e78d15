// zmqkit/actor.hpp — a background thread running its own zmqkit::loop, with a
// control pipe to it (the CZMQ zactor idea): what lib/ and the patterns use for
// their background work, instead of a hand-rolled poll loop per thread.
//
//   ```cpp
//   zmq::context_t ctx;
//   zmqkit::actor echo(ctx, [](zmqkit::loop& loop, zmq::socket_t& pipe) {
//     loop.add(pipe, [&pipe] {                       // runs on the actor's thread
//       zmq::message_t m;
//       while (pipe.recv(m, zmq::recv_flags::dontwait)) pipe.send(m, zmq::send_flags::dontwait);
//     });
//   });
//   echo.pipe().send(zmq::str_buffer("ping"), zmq::send_flags::none);
//   zmq::message_t back;
//   (void)echo.pipe().recv(back);                    // "ping"
//   ```
//
// The constructor starts the thread, runs `setup` there (it adds watches and
// timers to the actor's loop; the pipe's far end is its to keep) and returns
// once setup has returned; an exception from setup is rethrown by the
// constructor. The loop then runs until stop() or the destructor, which stop
// it and join the thread; an exception from a handler ends the thread's loop
// and is rethrown by stop(). post() runs a function on the actor's thread.
// The pipe is an inproc PAIR; pipe() is the owner's end, for the owner's thread.
#pragma once

#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/pimpl.hpp>

#include <exception>
#include <functional>

namespace zmqkit {

class actor {
 public:
  using setup_fn = std::function<void(loop& loop, zmq::socket_t& pipe)>;

  // Destroying it stop()s it, ignoring what stop() would rethrow.
  // Throws: what setup threw; zmq::error_t / std::system_error when the pipe or the loop cannot be made.
  actor(zmq::context_t& ctx, setup_fn setup, const zmqkit::clock& clock = zmqkit::clock::real());

  zmq::socket_t& pipe() noexcept;
  // Thread-safe: runs `work` on the actor's thread.
  void post(loop::handler work);
  // Stops the loop and joins the thread; idempotent.
  // Throws: the exception that ended the actor's loop early, if one did (once).
  void stop();

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit
