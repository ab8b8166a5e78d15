// reqrep_test_server: a zmqkit::reqrep::server for the fault tests, run as a
// child process (possibly inside another network namespace).
//
//   reqrep_test_server ENDPOINT [ENDPOINT_FILE]
//
// Counts executions per request id; every reply's body is that count (so 1
// unless a request ran twice). A `test.stats` request is answered with a map
// {requests, executions, duplicates, cache_hits, joined}. Writes the bound
// endpoint to ENDPOINT_FILE once listening; exits on SIGTERM/SIGINT.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <unordered_map>
#include <zmqkit/reqrep/server.hpp>

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void on_signal(int) { stop_requested = 1; }
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ENDPOINT [ENDPOINT_FILE]\n", argv[0]);
    return 2;
  }
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  zmq::context_t ctx;
  std::unordered_map<zmqkit::message_id, int> executions;
  std::uint64_t total = 0, duplicates = 0;
  zmqkit::reqrep::server* self = nullptr;
  zmqkit::reqrep::server srv(ctx, argv[1], [&](const zmqkit::envelope& req) {
    if (req.type == "test.stats") {
      std::map<std::string, std::uint64_t> stats{{"requests", executions.size()},
                                                 {"executions", total},
                                                 {"duplicates", duplicates},
                                                 {"cache_hits", self->stats().cache_hits},
                                                 {"joined", self->stats().joined}};
      return zmqkit::make_reply(req, "test.stats", stats);
    }
    const int n = ++executions[req.id];
    ++total;
    if (n > 1) ++duplicates;
    return zmqkit::make_reply(req, "test.done", n);
  });
  self = &srv;
  if (argc >= 3) {
    const std::string tmp = std::string(argv[2]) + ".tmp";
    std::ofstream(tmp) << srv.endpoint();
    std::rename(tmp.c_str(), argv[2]);
  }
  while (!stop_requested) srv.poll(std::chrono::milliseconds(100));
  return 0;
}
