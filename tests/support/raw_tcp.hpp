// Plain POSIX TCP, for tests that talk to a ZeroMQ port the way an attacker
// would: garbage bytes, half-open connections, floods.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace zmqkit::test {

// The port of a "tcp://127.0.0.1:PORT" endpoint.
inline std::uint16_t tcp_port(const std::string& endpoint) {
  return static_cast<std::uint16_t>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
}

// A connected loopback TCP socket, closed on destruction.
class raw_tcp {
 public:
  explicit raw_tcp(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect() failed");
    }
  }
  raw_tcp(const raw_tcp&) = delete;
  raw_tcp& operator=(const raw_tcp&) = delete;
  raw_tcp(raw_tcp&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ~raw_tcp() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Writes what the peer accepts (it may close on us mid-way). Returns: bytes written.
  std::size_t write_some(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const auto n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  // Reads until the peer closes. Returns: whether it closed before `deadline`.
  bool closed_by_peer_within(std::chrono::milliseconds deadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    char buf[4096];
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;  // EOF or reset
    }
  }

 private:
  int fd_ = -1;
};

// A ZMTP 3.0 greeting announcing `mechanism` (e.g. "CURVE", "NULL"), as a client.
inline std::string zmtp_greeting(const std::string& mechanism) {
  std::string g(64, '\0');
  g[0] = static_cast<char>(0xff);
  g[9] = 0x7f;
  g[10] = 3;  // version 3.0
  g.replace(12, mechanism.size(), mechanism);
  return g;
}

inline std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

struct flood_stats {
  std::size_t connections = 0;
  std::size_t bytes = 0;
};

// Opens `connections` TCP connections to `port` in batches of `batch` open at
// once, each writing up to `max_bytes` of random bytes; every second one opens
// with a valid ZMTP greeting announcing CURVE, so the garbage reaches the CURVE
// handshake parser rather than only the greeting check.
inline flood_stats garbage_flood(std::uint16_t port, std::size_t connections, std::size_t max_bytes,
                                 std::uint64_t seed = 42, std::size_t batch = 100) {
  std::mt19937_64 rng(seed);
  flood_stats stats;
  for (std::size_t done = 0; done < connections;) {
    std::vector<raw_tcp> open;
    for (std::size_t i = 0; i < batch && done < connections; ++i, ++done) {
      raw_tcp& c = open.emplace_back(port);
      std::string bytes = random_bytes(rng, 1 + rng() % max_bytes);
      if (done % 2 == 0) bytes = zmtp_greeting("CURVE") + bytes;
      stats.bytes += c.write_some(bytes);
      ++stats.connections;
    }
  }
  return stats;
}

}  // namespace zmqkit::test

namespace zmqkit::test {

// A loopback TCP port that was free a moment ago, for a child process to bind
// (ephemeral: a clash with another process is possible but unlikely).
inline std::uint16_t free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("no free port");
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace zmqkit::test
