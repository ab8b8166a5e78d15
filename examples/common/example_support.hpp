// example_support.hpp — the plumbing the example programs share, kept out of
// the examples themselves so they read as zmqkit code: command-line flags,
// SIGINT/SIGTERM, spawning this program's own roles as child processes (each
// role is a separate process, as in production) and reading what they print.
//
// Protocol between a scenario and the roles it starts (stdout lines):
//   "ready"                 the role is connected and serving
//   "listening NAME EP"     the role bound EP (ephemeral ports are resolved)
//   "result KEY VALUE"      printed when the role stops (SIGTERM), read by the scenario
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

namespace example {

// --- flags: `prog role --key value --flag` --------------------------------------
class flags {
 public:
  flags(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument " + key);
      key = key.substr(2);
      if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0)
        values_[key] = argv[++i];
      else
        values_[key] = "1";
    }
  }
  std::string get(const std::string& key, std::string fallback = {}) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  std::string need(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) throw std::runtime_error("missing --" + key);
    return it->second;
  }
  int num(const std::string& key, int fallback) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : std::stoi(it->second);
  }
  bool has(const std::string& key) const { return values_.count(key) != 0; }

 private:
  std::map<std::string, std::string> values_;
};

// --- stopping ---------------------------------------------------------------------
inline std::atomic<bool>& stop_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
inline void install_stop_handler() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { stop_flag().store(true); };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}
inline bool stopping() { return stop_flag().load(); }

// Runs `receive` (a pattern's blocking receive with a timeout) and treats a signal
// interrupting the wait (zmq::error_t EINTR: our SIGTERM) as "nothing arrived".
template <class F>
auto interruptible(F&& receive) -> decltype(receive()) {
  try {
    return receive();
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    return {};
  }
}

// Lines for the scenario that started this role.
inline void say(const std::string& line) {
  std::cout << line << std::endl;  // flushed: the parent reads it through a pipe
}
inline void result(const std::string& key, const std::string& value) { say("result " + key + " " + value); }
inline void result(const std::string& key, std::uint64_t value) { result(key, std::to_string(value)); }

// --- children -----------------------------------------------------------------------
// A role of this same program running as a separate process. Its stdout comes
// back through a pipe; it dies with its parent (PR_SET_PDEATHSIG), so a killed
// scenario leaves nothing behind; the destructor terminates and reaps it.
class child {
 public:
  child(std::string name, std::vector<std::string> args) : name_(std::move(name)) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    std::string self(4096, '\0');
    ssize_t n = readlink("/proc/self/exe", self.data(), self.size() - 1);
    if (n <= 0) throw std::runtime_error("cannot find own executable");
    self.resize(static_cast<std::size_t>(n));
    std::vector<std::string> argv_s{self};  // so that ps shows "education registration-worker ..."
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);
      dup2(fds[1], STDOUT_FILENO);
      execv(self.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }

  // Returns: the next line the child printed, or nullopt after `timeout` or at its end.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || out_ < 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) {
        close(out_);
        out_ = -1;
        continue;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Waits for a line starting with `prefix`; returns its remainder. Throws after `timeout`.
  std::string expect(const std::string& prefix,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto line = read_line(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
      if (!line) break;
      if (line->rfind(prefix, 0) == 0) return line->substr(std::min(line->size(), prefix.size() + 1));
    }
    throw std::runtime_error(name_ + ": no '" + prefix + "' line in time");
  }

  // SIGTERM, then collects its "result KEY VALUE" lines until it exits (SIGKILL after `grace`).
  // Returns: KEY → values (a key may repeat). Exit status in exit_code().
  std::multimap<std::string, std::string> stop(std::chrono::milliseconds grace = std::chrono::seconds(5)) {
    std::multimap<std::string, std::string> results;
    if (pid_ <= 0) return results;
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (auto line = read_line(std::chrono::duration_cast<std::chrono::milliseconds>(std::max(
               deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration{0})))) {
      std::istringstream in(*line);
      std::string word, key, value;
      in >> word >> key;
      std::getline(in >> std::ws, value);
      if (word == "result") results.emplace(key, value);
    }
    if (std::chrono::steady_clock::now() >= deadline) kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return results;
  }
  int exit_code() const { return exit_code_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
  int exit_code_ = -1;
};

inline std::uint64_t get_num(const std::multimap<std::string, std::string>& r, const std::string& key) {
  auto it = r.find(key);
  return it == r.end() ? 0 : std::stoull(it->second);
}

// --- figures ----------------------------------------------------------------------------
inline double percentile_ms(std::vector<double> ms, double p) {
  if (ms.empty()) return 0;
  std::sort(ms.begin(), ms.end());
  auto idx = static_cast<std::size_t>(p * static_cast<double>(ms.size() - 1) + 0.5);
  return ms[std::min(idx, ms.size() - 1)];
}

// Scenario checks: print each, remember failures for the exit code.
class checks {
 public:
  void operator()(bool ok, const std::string& what) {
    std::cout << (ok ? "  ok    " : "  FAIL  ") << what << "\n";
    if (!ok) ++failed_;
  }
  int exit_code() const { return failed_ == 0 ? 0 : 1; }
  int failed() const { return failed_; }

 private:
  int failed_ = 0;
};

}  // namespace example

// --- the queue device's admin endpoint ------------------------------------------------------
#include <msgpack.hpp>
#include <zmq.hpp>

namespace example {

// Asks zmqkit-queue's --admin endpoint for its counters ([empty, "stats"] on a
// ROUTER, answered [empty, msgpack map]); nested maps are flattened to "a.b".
// Returns: nullopt when it does not answer within `timeout`.
inline std::optional<std::map<std::string, std::int64_t>> admin_stats(zmq::context_t& ctx,
                                                                      const std::string& ep,
                                                                      std::chrono::milliseconds timeout) {
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
  req.connect(ep);
  req.send(zmq::str_buffer("stats"), zmq::send_flags::none);
  zmq::message_t reply;
  if (!req.recv(reply)) return std::nullopt;
  msgpack::object_handle h = msgpack::unpack(static_cast<const char*>(reply.data()), reply.size());
  std::map<std::string, std::int64_t> out;
  auto walk = [&](auto& self, const msgpack::object& o, const std::string& prefix) -> void {
    if (o.type != msgpack::type::MAP) return;
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
      const auto& kv = o.via.map.ptr[i];
      std::string key = prefix + kv.key.as<std::string>();
      if (kv.val.type == msgpack::type::MAP)
        self(self, kv.val, key + ".");
      else if (kv.val.type == msgpack::type::POSITIVE_INTEGER ||
               kv.val.type == msgpack::type::NEGATIVE_INTEGER)
        out[key] = kv.val.as<std::int64_t>();
    }
  };
  walk(walk, h.get(), "");
  return out;
}

}  // namespace example
