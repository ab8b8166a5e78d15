// Running the built `zmqkit` program from the tool tests.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <support/piped_process.hpp>
#include <vector>

namespace zmqkit::test {

using json = nlohmann::ordered_json;
using namespace std::chrono_literals;

inline const std::string tool = ZMQKIT_TOOL_PATH;

struct tool_result {
  int code = -1;  // exit code; -1 when it did not exit in time (then it is killed)
  std::string out, err;
};

// Runs `zmqkit args...` to completion, feeding `input` on stdin.
inline tool_result run_tool(std::vector<std::string> args, const std::string& input = {},
                            std::chrono::milliseconds limit = 20s) {
  args.insert(args.begin(), tool);
  piped_process p(std::move(args));
  p.write_stdin(input);
  p.close_stdin();
  const auto code = p.wait(limit);
  return {code.value_or(-1), p.out(), p.err()};
}

// A loopback TCP endpoint where nothing listens: a port the kernel handed out
// and that was closed again (synchronously, unlike a ZeroMQ unbind).
inline std::string unused_tcp_endpoint() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

inline std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

inline std::size_t count_lines(const std::string& text) {
  std::size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// The stderr of a failing run is one clear line.
inline bool one_line(const std::string& err) { return count_lines(err) == 1 && err.back() == '\n'; }

}  // namespace zmqkit::test
