// zmqkit/handshake_monitor.hpp — makes failed handshakes observable: counts the
// connection and handshake events of one socket.
//
//   ```cpp
//   zmqkit::socket_options opts;
//   zmq::socket_t router(ctx, zmq::socket_type::router);
//   zmqkit::apply(router, opts);
//   zmqkit::handshake_monitor monitor(ctx, router);   // before bind/connect
//   router.bind("tcp://*:5555");
//   // ... serve ...
//   log("handshake failures: {}", monitor.stats().handshake_failed());
//   ```
//
// It attaches a libzmq socket monitor (zmq_socket_monitor on a private inproc
// endpoint) and reads its events on a thread it owns; the constructor returns
// once the monitor is attached, the destructor stops and joins the thread. A
// refused ZAP authentication (unknown client key) is `failed_auth`; a mechanism
// mismatch (plaintext client at a CURVE server), a wrong server key or garbage
// on the wire is `failed_protocol`; a connection lost before the handshake
// completed (e.g. the handshake timeout, or a frame over the maximum message
// size) shows up as `disconnected`. The same failures are counted again by
// reason (refused_unknown_key / refused_plaintext / refused_bad_handshake), and
// last_failure() names the most recent one with the peer's address.
//
// Construct and destroy it on the socket's owning thread, with the socket's
// context; destroy it before the socket (declare it after the socket): the
// destructor detaches the monitor from the socket.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <zmq.hpp>
#include <zmqkit/pimpl.hpp>

namespace zmqkit {

struct handshake_stats {
  std::uint64_t accepted = 0;          // incoming TCP/IPC connections
  std::uint64_t connected = 0;         // outgoing connections established
  std::uint64_t succeeded = 0;         // ZMTP handshakes completed (security included)
  std::uint64_t failed_no_detail = 0;  // handshake failed, libzmq gave no reason
  std::uint64_t failed_protocol = 0;   // malformed or undecryptable handshake, mechanism mismatch
  std::uint64_t failed_auth = 0;       // the ZAP handler refused the peer
  std::uint64_t disconnected = 0;      // established or half-open connections dropped
  // The failures again, by what an operator acts on (CURVE refusals):
  std::uint64_t refused_unknown_key = 0;    // the ZAP handler refused the peer's key (= failed_auth)
  std::uint64_t refused_plaintext = 0;      // mechanism mismatch: a plaintext peer at a CURVE socket, or the reverse
  std::uint64_t refused_bad_handshake = 0;  // any other failure: wrong server key, garbage, no detail

  std::uint64_t handshake_failed() const noexcept { return failed_no_detail + failed_protocol + failed_auth; }
};
using handshake_counters [[deprecated("renamed handshake_stats")]] = handshake_stats;

// The most recent handshake failure, for logs.
struct handshake_failure {
  std::string reason;  // "unknown_key", "plaintext" or "bad_handshake"
  std::string detail;  // libzmq's code in words, e.g. "ZAP status 400", "cryptographic error"
  std::string peer;    // the peer's address ("1.2.3.4:5678"), when known; else the local endpoint
};

// Returns: `failure` as a sentence for a client or worker: "CURVE handshake failed: ...".
std::string describe(const handshake_failure& failure);

class handshake_monitor {
 public:
  // Throws: zmq::error_t when libzmq cannot attach the monitor.
  handshake_monitor(zmq::context_t& ctx, zmq::socket_t& socket);

  // Safe from any thread.
  handshake_stats stats() const;
  [[deprecated("renamed stats()")]] handshake_stats counters() const { return stats(); }
  // Returns: the most recent handshake failure, or nullopt if none. Safe from any thread.
  std::optional<handshake_failure> last_failure() const;
  // Returns: whether the last event was a completed handshake (for a socket with
  // one connection, a client's: it is up). False before any, after a failure or a
  // disconnect. Safe from any thread.
  bool established() const noexcept;

 private:
  struct impl;
  pimpl<impl> impl_;
};

}  // namespace zmqkit
