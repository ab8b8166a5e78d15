// `zmqkit send` and `zmqkit recv`: the pipeline wire format, one frame [envelope].
// Plain `send` is a PUSH (into a sink's or `zmqkit recv`'s PULL); `send --ventilator`
// is the library ventilator, which pipeline workers take tasks from by credit.
#include <iostream>
#include <memory>
#include <zmqkit/pipeline/ventilator.hpp>

#include "commands.hpp"

namespace zmqkit::tool {

namespace {

// `send --ventilator`: the library ventilator binds, workers connect and grant
// credit, and each task goes to a worker that asked for it. Done when every
// task has been handed to a worker (and left with the linger), or a failure
// when workers asked for none of the rest within --timeout.
template <class State>
int run_ventilator(const State& s, envelope_source& source) {
  if (s.ep.bind.size() != 1 || !s.ep.connect.empty())
    throw failure(exit_usage, "--ventilator binds one endpoint: give exactly one --bind (workers connect)");
  pipeline::ventilator_options opts{.socket = make_socket_options(s.ep)};
  opts.socket.linger = ms(s.timeout_ms);  // tasks handed to a worker leave before exit
  zmq::context_t ctx;
  std::optional<pipeline::ventilator> vent;
  try {
    vent.emplace(ctx, s.ep.bind.front(), opts);
  } catch (const zmq::error_t& e) {
    const bool malformed = e.num() == EINVAL || e.num() == EPROTONOSUPPORT || e.num() == ENOCOMPATPROTO;
    throw failure(malformed ? exit_usage : exit_failure, "cannot bind " + s.ep.bind.front() + ": " + e.what());
  }
  install_signal_handlers();
  auto no_worker = [&] {
    return failure(exit_failure, timeout_message("no worker asked for the " +
                                                     std::to_string(vent->pending()) + " remaining task(s)",
                                                 s.timeout_ms, vent->endpoint()));
  };
  auto progress_deadline = std::chrono::steady_clock::now() + ms(s.timeout_ms);
  std::uint64_t dispatched = 0;
  // Polls once; a task handed to a worker restarts the --timeout clock.
  auto poll_once = [&] {
    vent->poll(std::chrono::milliseconds(50));
    if (vent->stats().dispatched > dispatched) {
      dispatched = vent->stats().dispatched;
      progress_deadline = std::chrono::steady_clock::now() + ms(s.timeout_ms);
    }
    if (std::chrono::steady_clock::now() >= progress_deadline) throw no_worker();
  };
  while (auto env = source.next()) {
    bool queued;
    try {
      queued = vent->submit(*env);
    } catch (const zmqkit::error& e) {
      throw failure(exit_usage, e.what());
    }
    while (!queued && !interrupted.load()) {  // the ventilator's queue is full: wait for credit
      poll_once();
      queued = vent->submit(*env);
    }
    if (interrupted.load()) return exit_ok;
    if (s.interval_ms > 0) {
      const auto until = std::chrono::steady_clock::now() + ms(s.interval_ms);
      while (std::chrono::steady_clock::now() < until && !interrupted.load()) vent->poll(std::chrono::milliseconds(10));
    }
  }
  while (vent->pending() > 0 && !interrupted.load()) poll_once();
  return exit_ok;
}

}  // namespace

command add_send(CLI::App& root) {
  struct state : send_options {
    bool ventilator = false;
  };
  auto s = std::make_shared<state>();
  auto* app = root.add_subcommand(
      "send", "Push envelopes to a PULL (PUSH; frames: [envelope]), or with --ventilator hand them to "
              "pipeline workers by credit");
  add_endpoint_options(*app, s->ep);
  add_envelope_options(*app, s->in, true);
  add_checked_option(*app, "-n,--count", s->count, "Send the envelope N times (each with a fresh id)",
                     CLI::PositiveNumber);
  add_checked_option(*app, "--interval", s->interval_ms, "Wait MS between envelopes", CLI::NonNegativeNumber);
  add_checked_option(*app, "--timeout", s->timeout_ms, "Give up when no peer takes an envelope within MS",
                     CLI::NonNegativeNumber);
  app->add_flag("--ventilator", s->ventilator,
                "Be a pipeline ventilator (ROUTER, one --bind): workers connect and take tasks by credit");
  return {app, [s] {
            envelope_source source(s->in);
            source.set_repeat(s->count);
            if (s->ventilator) return run_ventilator(*s, source);
            zmq::context_t ctx;
            zmq::socket_t socket(ctx, zmq::socket_type::push);
            apply(socket, make_socket_options(s->ep));
            // Queue only to completed connections, so an unreachable peer times out
            // instead of swallowing the envelope.
            socket.set(zmq::sockopt::immediate, 1);
            socket.set(zmq::sockopt::sndtimeo, static_cast<int>(s->timeout_ms));
            socket.set(zmq::sockopt::linger, static_cast<int>(s->timeout_ms));
            attach(socket, s->ep);
            send_each(source, *s, "no peer took", [&](envelope& env) {
              return socket.send(encode(env), zmq::send_flags::none).has_value();
            });
            return exit_ok;
          }};
}

command add_recv(CLI::App& root) {
  struct state {
    endpoint_options ep;
    output_options out;
    long long count = 0;
    long long timeout_ms = -1;
  };
  auto s = std::make_shared<state>();
  auto* app =
      root.add_subcommand("recv", "Pull envelopes from a pipeline (PULL) and print them as JSON lines");
  add_endpoint_options(*app, s->ep);
  add_output_options(*app, s->out);
  add_receive_limit_options(*app, s->count, s->timeout_ms);
  return {app, [s] {
            zmq::context_t ctx;
            zmq::socket_t socket(ctx, zmq::socket_type::pull);
            apply(socket, make_socket_options(s->ep));
            attach(socket, s->ep);
            install_signal_handlers();
            long long received = 0;
            while (s->count == 0 || received < s->count) {
              if (!wait_readable(socket, ms(s->timeout_ms))) break;
              std::vector<zmq::message_t> frames;
              if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait))
                continue;
              if (frames.size() != 1) {
                std::cerr << "zmqkit recv: dropped a message of " << frames.size()
                          << " frames (the pipeline sends one)\n";
                continue;
              }
              try {
                print_envelope(decode(frames.front()), s->out);
                ++received;
              } catch (const zmqkit::error& e) {
                std::cerr << "zmqkit recv: dropped a bad frame (" << frames.front().size()
                          << " bytes): " << e.what() << '\n';
              }
            }
            if (interrupted.load()) return exit_ok;
            require_received(received, s->count, s->timeout_ms, s->ep);
            return exit_ok;
          }};
}

}  // namespace zmqkit::tool
