// Running zmqkit's programs (zmqkit-queue, zmqkit-forwarder) from the tool tests
// and scraping their /metrics.
#pragma once

#include <unistd.h>

#include <atomic>
#include <doctest/doctest.h>
#include <regex>
#include <string>
#include <support/piped_process.hpp>
#include <vector>

#include "tool.hpp"

namespace zmqkit::test {

inline const std::string queue_binary = ZMQKIT_QUEUE_BINARY;

inline std::string ipc(const std::string& name) {
  static std::atomic<int> n{0};
  return "ipc:///tmp/zmqkit-tools-test-" + std::to_string(::getpid()) + "-" + name + "-" +
         std::to_string(n++);
}

// A zmqkit-queue process on ipc endpoints with /metrics on an ephemeral port.
struct queue_process {
  std::string frontend = ipc("front"), backend = ipc("back"), admin = ipc("admin");
  piped_process process;
  int metrics_port = -1;

  explicit queue_process(std::vector<std::string> extra = {})
      : process([&] {
          std::vector<std::string> argv = {queue_binary, "--frontend",     frontend,     "--backend",
                                           backend,      "--admin",        admin,        "--heartbeat-ms",
                                           "200",        "--metrics-http", "127.0.0.1:0"};
          argv.insert(argv.end(), extra.begin(), extra.end());
          return argv;
        }()) {
    // The device logs its endpoints once everything is bound and serving.
    REQUIRE(process.wait_for_stderr(
        [](const std::string& err) { return err.find("frontend ") != std::string::npos; }));
    std::smatch m;
    const std::string err = process.err();
    REQUIRE(std::regex_search(err, m, std::regex(R"(metrics http://127\.0\.0\.1:(\d+)/metrics)")));
    metrics_port = std::stoi(m[1]);
  }
};

struct http_result {
  int curl_exit;
  std::string body;
};
inline http_result scrape(int port) {
  piped_process p(
      {"/usr/bin/curl", "-sSf", "--max-time", "10", "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
  const int code = p.wait(20s).value_or(-1);
  return {code, p.out()};
}

inline bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.starts_with(line + "\n");
}

// Runs `promtool check metrics` (Debian package prometheus) on an exposition.
// Returns: promtool's exit code and what it said.
inline tool_result promtool_check(const std::string& exposition) {
  piped_process p({ZMQKIT_PROMTOOL, "check", "metrics"});
  p.write_stdin(exposition);
  p.close_stdin();
  const auto code = p.wait(20s);
  return {code.value_or(-1), p.out(), p.err()};
}

}  // namespace zmqkit::test
