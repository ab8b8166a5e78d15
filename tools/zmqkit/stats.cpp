// `zmqkit stats`: asks a zmqkit-queue admin endpoint (a ROUTER) for its counters:
// request [empty, "stats"], reply [empty, msgpack map name -> number | map].
#include <unistd.h>

#include <iostream>
#include <memory>

#include "commands.hpp"

namespace zmqkit::tool {

namespace {

std::size_t key_width(const json& map, std::size_t indent) {
  std::size_t w = 0;
  for (const auto& [k, v] : map.items()) {
    w = std::max(w, indent + k.size());
    if (v.is_object()) w = std::max(w, key_width(v, indent + 2));
  }
  return w;
}

void print_rows(const json& map, std::size_t indent, std::size_t width) {
  for (const auto& [k, v] : map.items()) {
    std::cout << std::string(indent, ' ') << k;
    if (v.is_object()) {
      std::cout << '\n';
      print_rows(v, indent + 2, width);
    } else {
      const std::string value = dump_line(v);
      std::cout << std::string(width - indent - k.size() + 2, ' ')
                << std::string(value.size() < 12 ? 12 - value.size() : 0, ' ') << value << '\n';
    }
  }
}

}  // namespace

command add_stats(CLI::App& root) {
  struct state {
    endpoint_options ep;
    bool as_json = false;
    double watch_s = 0;
    long long count = 0;
    long long timeout_ms = 2000;
  };
  auto s = std::make_shared<state>();
  auto* app = root.add_subcommand("stats", "Print a zmqkit-queue's counters (DEALER to its --admin ROUTER endpoint)");
  add_endpoint_options(*app, s->ep);
  app->add_flag("--json", s->as_json, "Print the counters as one JSON object per line");
  app->add_option("-w,--watch", s->watch_s, "Refresh every N seconds (fractions allowed) until interrupted")
      ->check(CLI::PositiveNumber);
  add_checked_option(*app, "-n,--count", s->count, "With --watch: stop after N refreshes (0 = no limit)",
                     CLI::NonNegativeNumber);
  add_checked_option(*app, "--timeout", s->timeout_ms, "Wait MS for each answer", CLI::PositiveNumber);
  return {app, [s] {
            zmq::context_t ctx;
            install_signal_handlers();
            const bool watch = s->watch_s > 0;
            const bool clear = watch && !s->as_json && ::isatty(STDOUT_FILENO);
            std::optional<zmq::socket_t> socket;
            for (long long done = 0; !interrupted.load();) {
              if (!socket) {
                socket.emplace(ctx, zmq::socket_type::dealer);
                apply(*socket, make_socket_options(s->ep));
                socket->set(zmq::sockopt::linger, 0);
                attach(*socket, s->ep);
              }
              socket->send(zmq::message_t(), zmq::send_flags::sndmore);
              socket->send(zmq::str_buffer("stats"), zmq::send_flags::none);
              std::optional<json> stats;
              const auto deadline = std::chrono::steady_clock::now() + ms(s->timeout_ms);
              while (!stats) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now());
                if (left.count() <= 0 || !wait_readable(*socket, left)) break;
                std::vector<zmq::message_t> frames;
                if (!zmq::recv_multipart(*socket, std::back_inserter(frames), zmq::recv_flags::dontwait))
                  continue;
                if (frames.size() == 2 && frames[0].size() == 0)
                  stats = msgpack_to_json(as_string_view(frames[1]));
                if (!stats || !stats->is_object()) {
                  stats.reset();
                  std::cerr << "zmqkit stats: ignored an answer that is not [empty, msgpack map]\n";
                }
              }
              if (interrupted.load()) break;
              if (!stats) {
                const std::string msg = timeout_message("no answer", s->timeout_ms, s->ep.describe());
                if (!watch) throw failure(exit_failure, msg);
                std::cerr << "zmqkit stats: " << msg << "; retrying\n";
                socket.reset();  // drop any late answer with the socket
              } else if (s->as_json) {
                std::cout << dump_line(*stats) << '\n' << std::flush;
              } else {
                if (clear)
                  std::cout << "\033[H\033[2J";
                else if (done > 0)
                  std::cout << '\n';
                if (watch) std::cout << "# " << format_rfc3339(clock::real().wall_now()) << '\n';
                print_rows(*stats, 0, key_width(*stats, 0));
                std::cout << std::flush;
              }
              ++done;
              if (!watch || (s->count > 0 && done >= s->count)) break;
              sleep_interruptibly(std::chrono::milliseconds(static_cast<long long>(s->watch_s * 1000)));
            }
            return exit_ok;
          }};
}

}  // namespace zmqkit::tool
