// `zmqkit request`: one request through a server or zmqkit-queue with the
// library's request/reply client (zmqkit::reqrep::client), so the tool retries,
// fails over and matches replies exactly as a program linking zmqkit does.
#include <iostream>
#include <memory>
#include <zmqkit/reqrep/client.hpp>

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
  add_checked_option(*app, "--timeout", s->timeout_ms, "Wait MS for a reply to each attempt",
                     CLI::PositiveNumber);
  add_checked_option(*app, "--retries", s->retries, "Attempts after the first", CLI::NonNegativeNumber);
  app->add_flag("-v,--verbose", s->verbose, "Report each retry on stderr");
  return {app, [s] {
            if (!s->ep.bind.empty()) throw failure(exit_usage, "request connects (--connect); it cannot --bind");
            if (s->ep.connect.empty()) throw failure(exit_usage, "give an endpoint: --connect");
            envelope_source source(s->in);
            envelope request = *source.next();
            try {
              (void)encode(request);  // a bad envelope is a usage error, before anything is sent
            } catch (const zmqkit::error& e) {
              throw failure(exit_usage, e.what());
            }
            reqrep::client_options opts{.retry = {.timeout = ms(s->timeout_ms), .retries = s->retries},
                                        .socket = make_socket_options(s->ep)};
            opts.socket.linger = std::chrono::milliseconds(0);  // a request given up on is not worth sending
            zmq::context_t ctx;
            reqrep::client client(ctx, s->ep.connect, opts);
            install_signal_handlers();
            client.send(std::move(request));
            // Poll in slices, so that an interruption and each retry are seen as they happen.
            std::optional<reqrep::completion> done;
            std::uint64_t retries_reported = 0;
            while (!done && !interrupted.load()) {
              done = client.poll(std::chrono::milliseconds(100));
              for (; retries_reported < client.stats().retries; ++retries_reported)
                if (s->verbose)
                  std::cerr << "zmqkit request: no reply within " << s->timeout_ms << " ms, retrying ("
                            << retries_reported + 1 << " of " << s->retries << ") on " << client.endpoint()
                            << '\n';
            }
            const auto& st = client.stats();
            if (st.stale > 0)
              std::cerr << "zmqkit request: ignored " << st.stale
                        << " replies to another request (late, duplicate or without a correlation id)\n";
            if (st.bad_replies > 0)
              std::cerr << "zmqkit request: ignored " << st.bad_replies
                        << " malformed replies (expected [empty, envelope])\n";
            if (!done) throw failure(exit_failure, "interrupted");
            if (done->outcome.ok()) {
              print_envelope(done->outcome.reply(), s->out);
              return exit_ok;
            }
            const auto& f = done->outcome.failure();
            if (f.what == reqrep::request_failure::kind::error_reply)
              throw failure(exit_error_reply, "error reply: " + f.code + ": " + f.reason);
            throw failure(exit_failure, "timeout: no reply within " + std::to_string(s->timeout_ms) +
                                            " ms after " + std::to_string(f.attempts) + " attempts (" +
                                            s->ep.describe() + ")");
          }};
}

}  // namespace zmqkit::tool
