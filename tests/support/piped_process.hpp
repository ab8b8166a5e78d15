// A child process whose stdin, stdout and stderr are pipes, for end-to-end
// tests of command-line programs: feed stdin, wait for output with a deadline,
// read the exit status. Killed (SIGKILL, by PID) and reaped in the destructor.
//
//   piped_process p({tool, "recv", "-c", ep, "-n", "1"});
//   CHECK(p.wait_for_stdout([](auto& out) { return out.find('\n') != npos; }));
//   auto status = p.wait(5s);
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace zmqkit::test {

class piped_process {
 public:
  explicit piped_process(std::vector<std::string> argv) {
    ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test on write
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    stdin_ = in[1];
    if (rc != 0) {
      ::close(out[0]);
      ::close(err[0]);
      close_stdin();
      throw std::runtime_error("cannot start " + argv[0] + ": " + std::to_string(rc));
    }
    reader_ = std::thread([this, o = out[0], e = err[0]] { read_loop(o, e); });
  }
  piped_process(const piped_process&) = delete;
  piped_process& operator=(const piped_process&) = delete;
  ~piped_process() {
    close_stdin();
    if (!status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    if (reader_.joinable()) reader_.join();  // the pipes close once the child is gone
  }

  pid_t pid() const noexcept { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Writes `data` to the child's stdin (blocking). close_stdin() sends EOF.
  void write_stdin(std::string_view data) {
    while (!data.empty() && stdin_ >= 0) {
      const ssize_t n = ::write(stdin_, data.data(), data.size());
      if (n <= 0) break;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void close_stdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }

  // Returns: whether `condition(stdout so far)` held before `deadline`.
  bool wait_for_stdout(const std::function<bool(const std::string&)>& condition,
                       std::chrono::milliseconds deadline = std::chrono::milliseconds(10000)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, deadline, [&] { return condition(out_) || done_; }) && condition(out_);
  }
  bool wait_for_stderr(const std::function<bool(const std::string&)>& condition,
                       std::chrono::milliseconds deadline = std::chrono::milliseconds(10000)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, deadline, [&] { return condition(err_) || done_; }) && condition(err_);
  }

  // Returns: the exit code (or 128 + signal) once the child exited, or nullopt
  // if it still runs after `timeout`. Output read so far is complete once this returns a value.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (!status_) {
      const auto end = std::chrono::steady_clock::now() + timeout;
      for (;;) {
        int st = 0;
        if (::waitpid(pid_, &st, WNOHANG) == pid_) {
          status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
          break;
        }
        if (std::chrono::steady_clock::now() >= end) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (reader_.joinable()) reader_.join();
    }
    return status_;
  }

  std::string out() {
    std::lock_guard lock(mutex_);
    return out_;
  }
  std::string err() {
    std::lock_guard lock(mutex_);
    return err_;
  }

 private:
  void read_loop(int out_fd, int err_fd) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open = 2;
    char buf[4096];
    while (open > 0) {
      if (::poll(fds, 2, -1) < 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) {
          ::close(fds[i].fd);
          fds[i].fd = -1;
          --open;
          continue;
        }
        std::lock_guard lock(mutex_);
        (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(n));
        changed_.notify_all();
      }
    }
    std::lock_guard lock(mutex_);
    done_ = true;
    changed_.notify_all();
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  std::optional<int> status_;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string out_, err_;
  bool done_ = false;
};

}  // namespace zmqkit::test
