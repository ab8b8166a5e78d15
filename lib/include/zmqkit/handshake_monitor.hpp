// zmqkit/handshake_monitor.hpp — makes failed handshakes observable: counts the
// connection and handshake events of one socket.
//
//   zmq::socket_t router(ctx, zmq::socket_type::router);
//   zmqkit::apply(router, opts);
//   zmqkit::handshake_monitor monitor(ctx, router);   // before bind/connect
//   router.bind("tcp://*:5555");
//   ...
//   log("handshake failures: {}", monitor.stats().handshake_failed());
//
// It attaches a libzmq socket monitor (zmq_socket_monitor on a private inproc
// endpoint) and reads its events on a thread it owns; the constructor returns
// once the monitor is attached, the destructor stops and joins the thread. A
// refused ZAP authentication (unknown client key) is `failed_auth`; a mechanism
// mismatch (plaintext client at a CURVE server), a wrong server key or garbage
// on the wire is `failed_protocol`; a connection lost before the handshake
// completed (e.g. the handshake timeout, or a frame over the maximum message
// size) shows up as `disconnected`.
//
// Construct and destroy it on the socket's owning thread, with the socket's
// context; destroy it before the socket (declare it after the socket): the
// destructor detaches the monitor from the socket.
#pragma once

#include <cstdint>
#include <memory>
#include <zmq.hpp>

namespace zmqkit {

struct handshake_stats {
  std::uint64_t accepted = 0;          // incoming TCP/IPC connections
  std::uint64_t connected = 0;         // outgoing connections established
  std::uint64_t succeeded = 0;         // ZMTP handshakes completed (security included)
  std::uint64_t failed_no_detail = 0;  // handshake failed, libzmq gave no reason
  std::uint64_t failed_protocol = 0;   // malformed or undecryptable handshake, mechanism mismatch
  std::uint64_t failed_auth = 0;       // the ZAP handler refused the peer
  std::uint64_t disconnected = 0;      // established or half-open connections dropped

  std::uint64_t handshake_failed() const noexcept { return failed_no_detail + failed_protocol + failed_auth; }
};
using handshake_counters [[deprecated("renamed handshake_stats")]] = handshake_stats;

class handshake_monitor {
 public:
  // Throws: zmq::error_t when libzmq cannot attach the monitor.
  handshake_monitor(zmq::context_t& ctx, zmq::socket_t& socket);
  ~handshake_monitor();
  handshake_monitor(handshake_monitor&&) noexcept;
  handshake_monitor& operator=(handshake_monitor&&) noexcept;
  handshake_monitor(const handshake_monitor&) = delete;
  handshake_monitor& operator=(const handshake_monitor&) = delete;

  // Safe from any thread.
  handshake_stats stats() const;
  [[deprecated("renamed stats()")]] handshake_stats counters() const { return stats(); }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace zmqkit
