#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq_addon.hpp>
#include <cstdio>
#include <zmqkit/actor.hpp>
#include <zmqkit/handshake_monitor.hpp>

namespace zmqkit {

struct handshake_monitor::impl {
  void* monitored = nullptr;  // the socket's handle, to detach the monitor on destruction
  zmq::socket_t events;       // the monitor thread's: receives libzmq's monitor events
  std::optional<actor> reader;  // the monitor thread: reads `events` on its loop (EINTR-safe)
  std::atomic<std::uint64_t> accepted{0}, connected{0}, succeeded{0}, failed_no_detail{0}, failed_protocol{0},
      failed_auth{0}, disconnected{0}, refused_unknown_key{0}, refused_plaintext{0}, refused_bad_handshake{0};

  // Monitor thread only: the peer address of each open accepted connection (by
  // file descriptor, as libzmq reports it), to name the peer of a failure.
  std::unordered_map<std::uint32_t, std::string> peers;
  std::optional<handshake_failure> pending;  // failed, waiting for its DISCONNECTED to learn the peer
  mutable std::mutex last_mutex;
  std::optional<handshake_failure> last;

  ~impl() {
    // Detach first, while the reader still drains: libzmq must not block sending to a reader that is gone.
    if (monitored) zmq_socket_monitor(monitored, nullptr, 0);
    reader.reset();  // stops and joins the thread before the state it reads goes
  }

  static std::string peer_address(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
    char host[INET6_ADDRSTRLEN] = {};
    unsigned port = 0;
    if (addr.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
    } else {
      return {};  // ipc: no address
    }
    return std::string(host) + ":" + std::to_string(port);
  }

  static std::string protocol_error(std::uint32_t code) {
    switch (code) {
      case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: return "security mechanism mismatch";
      case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: return "cryptographic error (wrong server key?)";
      case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE: return "key exchange failed";
      default: {
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%08x", code);
        return std::string("protocol error ") + hex;
      }
    }
  }

  void failed(std::string reason, std::string detail, const std::string& endpoint) {
    remember({std::move(reason), std::move(detail), endpoint});
  }

  void remember(handshake_failure f) {
    pending = f;
    std::lock_guard lock(last_mutex);
    last = std::move(f);
  }

  std::atomic<bool> established{false};

  void count(std::uint16_t event, std::uint32_t value, const std::string& endpoint) {
    if (event != ZMQ_EVENT_ACCEPTED && event != ZMQ_EVENT_CONNECTED)
      established = event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    switch (event) {
      case ZMQ_EVENT_ACCEPTED:
        ++accepted;
        if (peers.size() < 65536) peers[value] = peer_address(static_cast<int>(value));
        break;
      case ZMQ_EVENT_CONNECTED: ++connected; break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: ++succeeded; break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        ++failed_no_detail;
        ++refused_bad_handshake;
        failed("bad_handshake", "no detail", endpoint);
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        ++failed_protocol;
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
          ++refused_plaintext;
          failed("plaintext", protocol_error(value), endpoint);
        } else {
          ++refused_bad_handshake;
          failed("bad_handshake", protocol_error(value), endpoint);
        }
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        ++failed_auth;
        ++refused_unknown_key;
        failed("unknown_key", "ZAP status " + std::to_string(value) + " (key not allowed)", endpoint);
        break;
      case ZMQ_EVENT_DISCONNECTED: {
        ++disconnected;
        const auto it = peers.find(value);
        if (pending && it != peers.end() && !it->second.empty()) {
          pending->peer = it->second;  // the failure's connection closes right after it
          std::lock_guard lock(last_mutex);
          last = pending;
        }
        pending.reset();
        if (it != peers.end()) peers.erase(it);
        break;
      }
      default: break;
    }
  }

  // Reads the events queued now (a bounded batch: the loop comes back for more).
  void read_events() {
    std::vector<zmq::message_t> frames;
    for (int i = 0; i < 256; ++i) {
      // An event is two frames: [event id (2 bytes) + value (4 bytes), endpoint].
      frames.clear();
      if (!zmq::recv_multipart(events, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
      if (frames.empty() || frames[0].size() < 6) continue;
      std::uint16_t event = 0;
      std::uint32_t value = 0;
      std::memcpy(&event, frames[0].data(), sizeof event);
      std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, sizeof value);
      count(event, value, frames.size() > 1 ? frames[1].to_string() : std::string());
    }
  }
};

handshake_monitor::handshake_monitor(zmq::context_t& ctx, zmq::socket_t& socket)
    : impl_(make_pimpl<impl>()) {
  auto& m = *impl_;
  const std::string id = std::to_string(reinterpret_cast<std::uintptr_t>(&m));
  const std::string endpoint = "inproc://zmqkit-monitor-" + id;
  constexpr int wanted = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                         ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                         ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED;
  if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), wanted) != 0) throw zmq::error_t();
  m.monitored = socket.handle();
  // libzmq sends events blocking, from its I/O threads: a deep queue and a reader
  // that never stops keep a burst of connections (a flood) from stalling them.
  // Connected before any bind/connect on the socket, so no event is lost.
  m.events = zmq::socket_t(ctx, zmq::socket_type::pair);
  m.events.set(zmq::sockopt::linger, 0);
  m.events.set(zmq::sockopt::rcvhwm, 100000);
  m.events.connect(endpoint);
  m.reader.emplace(ctx, [&m](loop& l, zmq::socket_t&) { l.add(m.events, [&m] { m.read_events(); }); });
}

handshake_stats handshake_monitor::stats() const {
  const auto& m = *impl_;
  return {m.accepted,     m.connected,           m.succeeded,         m.failed_no_detail,     m.failed_protocol,
          m.failed_auth,  m.disconnected,        m.refused_unknown_key, m.refused_plaintext,
          m.refused_bad_handshake};
}

std::optional<handshake_failure> handshake_monitor::last_failure() const {
  std::lock_guard lock(impl_->last_mutex);
  return impl_->last;
}

bool handshake_monitor::established() const noexcept { return impl_->established; }

std::string describe(const handshake_failure& f) {
  std::string what = f.reason == "unknown_key" ? "the server does not allow our key"
                     : f.reason == "plaintext" ? "one side uses CURVE, the other plaintext"
                                               : "bad handshake (wrong server key?)";
  return "CURVE handshake failed: " + what + " (" + f.detail + (f.peer.empty() ? "" : ", " + f.peer) + ")";
}

}  // namespace zmqkit
