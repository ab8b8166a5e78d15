// Fault test: the server process is stopped (SIGSTOP) for 2 s in the middle of
// a run, then continued. Requests in flight meanwhile are retried (same ids)
// and answered once it resumes: none fails, none runs twice.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <zmqkit/reqrep/client.hpp>

#include "fault_load.hpp"
#include "support/process.hpp"
#include "support/sockets.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

TEST_CASE("server stopped for 2 s mid-run: 0 failed requests, 0 duplicate executions") {
  const std::string endpoint_file =
      (std::filesystem::temp_directory_path() / ("zmqkit-reqrep-sigstop-" + std::to_string(::getpid())))
          .string();
  std::filesystem::remove(endpoint_file);
  test::child_process server({ZMQKIT_REQREP_TEST_SERVER, "tcp://127.0.0.1:*", endpoint_file});
  REQUIRE(test::wait_until([&] { return std::filesystem::exists(endpoint_file); }, 10000ms));
  std::string endpoint;
  std::ifstream(endpoint_file) >> endpoint;
  std::filesystem::remove(endpoint_file);

  zmq::context_t ctx;
  reqrep::client c(ctx, endpoint,
                   {.retry = {.timeout = 500ms, .retries = 8, .backoff = 1.5, .max_timeout = 2000ms},
                    .socket = {.linger = 0ms}});
  const std::size_t n = test::full_run() ? 10000 : 1000;
  std::optional<std::chrono::steady_clock::time_point> stopped_at;
  bool resumed = false;
  const auto result = test::run_load(c, n, 8, [&](std::size_t done) {
    if (!stopped_at && done >= n / 2) {
      server.signal(SIGSTOP);
      stopped_at = std::chrono::steady_clock::now();
    } else if (stopped_at && !resumed && std::chrono::steady_clock::now() - *stopped_at >= 2s) {
      server.signal(SIGCONT);
      resumed = true;
    }
  });
  if (!resumed) server.signal(SIGCONT);
  auto stats = test::server_stats(c);
  test::print_figures("server SIGSTOP 2 s", n, result, c.stats(), stats);
  CHECK(resumed);
  CHECK(result.failed == 0);
  CHECK(result.first_failure == "");
  CHECK(result.answered == n);
  CHECK(result.executed_twice == 0);
  CHECK(stats["duplicates"] == 0);
  CHECK(c.stats().retries > 0);  // the pause did hold requests past their timeout
  server.signal(SIGTERM);
  CHECK(server.wait(5000ms).has_value());
}
