// `zmqkit request`: one request through a server or zmqkit-queue, Lazy Pirate
// style: frames [empty, envelope]; on silence, a fresh socket and the same
// request (same id, zmk.attempt = the retry number), up to --retries times.
#include <iostream>
#include <memory>

#include "commands.hpp"

namespace zmqkit::tool {

command add_request(CLI::App& root) {
  struct state {
    endpoint_options ep;
    envelope_input in;
    output_options out;
    long long timeout_ms = 2500;
    int retries = 3;
    bool verbose = false;
  };
  auto s = std::make_shared<state>();
  auto* app = root.add_subcommand(
      "request", "Send a request (DEALER; frames: [empty, envelope]) with retries and print the reply");
  add_endpoint_options(*app, s->ep);
  add_envelope_options(*app, s->in, false);
  add_output_options(*app, s->out);
  app->add_option("--timeout", s->timeout_ms, "Wait MS for a reply to each attempt")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--retries", s->retries, "Attempts after the first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_flag("-v,--verbose", s->verbose, "Report each retry on stderr");
  return {app, [s] {
            envelope_source source(s->in);
            envelope request = *source.next();
            zmq::context_t ctx;
            install_signal_handlers();
            for (int attempt = 0; attempt <= s->retries; ++attempt) {
              if (attempt > 0)
                request.headers.insert_or_assign(std::string(header::attempt), std::to_string(attempt));
              zmq::message_t frame;
              try {
                frame = encode(request);
              } catch (const zmqkit::error& e) {
                throw failure(exit_usage, e.what());
              }
              // A fresh socket per attempt, so a reply to an abandoned attempt never lingers.
              zmq::socket_t socket(ctx, zmq::socket_type::dealer);
              apply(socket, make_socket_options(s->ep));
              socket.set(zmq::sockopt::linger, 0);
              attach(socket, s->ep);
              socket.send(zmq::message_t(), zmq::send_flags::sndmore);
              socket.send(frame, zmq::send_flags::none);
              const auto deadline = std::chrono::steady_clock::now() + ms(s->timeout_ms);
              for (;;) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now());
                if (left.count() <= 0 || !wait_readable(socket, left)) break;
                std::vector<zmq::message_t> frames;
                if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait))
                  continue;
                if (frames.size() != 2 || frames[0].size() != 0) {
                  std::cerr << "zmqkit request: ignored a reply of " << frames.size()
                            << " frames (expected [empty, envelope])\n";
                  continue;
                }
                envelope reply;
                try {
                  reply = decode(frames[1]);
                } catch (const zmqkit::error& e) {
                  std::cerr << "zmqkit request: ignored a bad reply: " << e.what() << '\n';
                  continue;
                }
                if (reply.correlation_id != request.id && !(reply.is_error() && !reply.correlation_id)) {
                  std::cerr << "zmqkit request: ignored a reply to another request\n";
                  continue;
                }
                print_envelope(reply, s->out);
                if (reply.is_error())
                  throw failure(exit_error_reply,
                                "error reply: " + std::string(reply.error_code().value_or("?")) + ": " +
                                    std::string(reply.header(header::reason).value_or("")));
                return exit_ok;
              }
              if (interrupted.load()) throw failure(exit_failure, "interrupted");
              if (s->verbose && attempt < s->retries)
                std::cerr << "zmqkit request: no reply within " << s->timeout_ms << " ms, retrying ("
                          << attempt + 1 << " of " << s->retries << ")\n";
            }
            throw failure(exit_failure, "timeout: no reply within " + std::to_string(s->timeout_ms) +
                                            " ms after " + std::to_string(s->retries + 1) + " attempts (" +
                                            s->ep.describe() + ")");
          }};
}

}  // namespace zmqkit::tool
