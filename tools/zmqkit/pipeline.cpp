// `zmqkit send` and `zmqkit recv`: the pipeline wire format, one frame [envelope].
#include <iostream>
#include <memory>

#include "commands.hpp"

namespace zmqkit::tool {

command add_send(CLI::App& root) {
  struct state {
    endpoint_options ep;
    envelope_input in;
    long long count = 1;
    long long interval_ms = 0;
    long long timeout_ms = 5000;
  };
  auto s = std::make_shared<state>();
  auto* app = root.add_subcommand("send", "Push envelopes into a pipeline (PUSH; frames: [envelope])");
  add_endpoint_options(*app, s->ep);
  add_envelope_options(*app, s->in, true);
  app->add_option("-n,--count", s->count, "Send the envelope N times (each with a fresh id)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--interval", s->interval_ms, "Wait MS between envelopes")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--timeout", s->timeout_ms, "Give up when no peer takes an envelope within MS")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  return {app, [s] {
            envelope_source source(s->in);
            source.set_repeat(s->count);
            zmq::context_t ctx;
            zmq::socket_t socket(ctx, zmq::socket_type::push);
            apply(socket, make_socket_options(s->ep));
            // Queue only to completed connections, so an unreachable peer times out
            // instead of swallowing the envelope.
            socket.set(zmq::sockopt::immediate, 1);
            socket.set(zmq::sockopt::sndtimeo, static_cast<int>(s->timeout_ms));
            socket.set(zmq::sockopt::linger, static_cast<int>(s->timeout_ms));
            attach(socket, s->ep);
            long long sent = 0;
            while (auto env = source.next()) {
              if (interrupted.load()) break;
              zmq::message_t frame;
              try {
                frame = encode(*env);
              } catch (const zmqkit::error& e) {
                throw failure(exit_usage, e.what());
              }
              if (!socket.send(frame, zmq::send_flags::none))
                throw failure(exit_failure, "timeout: no peer took envelope " + std::to_string(sent + 1) +
                                                " within " + std::to_string(s->timeout_ms) + " ms (" +
                                                s->ep.describe() + ")");
              ++sent;
              if (s->interval_ms > 0) sleep_interruptibly(ms(s->interval_ms));
            }
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
  app->add_option("-n,--count", s->count, "Stop after N envelopes (0 = no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--timeout", s->timeout_ms,
                  "Stop when nothing arrives for MS; an error unless --count (or one) envelopes arrived "
                  "(-1 = wait forever)")
      ->capture_default_str();
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
            if (received < std::max(s->count, 1LL))
              throw failure(exit_failure, "timeout: received " + std::to_string(received) +
                                              (s->count > 0 ? " of " + std::to_string(s->count) : "") +
                                              " envelopes; nothing arrived within " +
                                              std::to_string(s->timeout_ms) + " ms (" + s->ep.describe() +
                                              ")");
            return exit_ok;
          }};
}

}  // namespace zmqkit::tool
