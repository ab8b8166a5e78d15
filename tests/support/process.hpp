// Child processes for end-to-end and fault tests. A test kills only the
// processes it started, by PID, and the destructor reaps them.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace zmqkit::test {

class child_process {
 public:
  // Starts argv[0] (a path) with argv. Throws std::runtime_error if spawning fails.
  explicit child_process(std::vector<std::string> argv) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    if (int rc = posix_spawn(&pid_, args[0], nullptr, nullptr, args.data(), environ); rc != 0)
      throw std::runtime_error("cannot start " + argv[0] + ": " + std::to_string(rc));
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  child_process(child_process&& o) noexcept : pid_(std::exchange(o.pid_, -1)), status_(o.status_) {}
  ~child_process() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const noexcept { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Returns: the exit status (as from waitpid) once the child has exited, or
  // nullopt if it is still running when `timeout` passes.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (status_) return status_;
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) return status_ = st;
      if (std::chrono::steady_clock::now() >= end) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

}  // namespace zmqkit::test
