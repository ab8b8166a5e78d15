// zmqkit/socket_options.hpp — hardened defaults and security for every socket
// the toolkit creates.
//
//   ```cpp
//   auto keys = zmqkit::generate_keypair();
//   zmqkit::socket_options opts{.max_message_bytes = 64 << 10};
//   opts.security = zmqkit::curve_server{.secret_key = keys.secret_key};
//   zmq::socket_t socket(ctx, zmq::socket_type::router);
//   zmqkit::apply(socket, opts);      // before bind/connect
//   ```
//
// Every pattern role takes a socket_options in its options struct and applies
// it to each socket it owns. Defaults bound memory (max message size, HWM),
// shutdown (linger) and half-open connections (handshake timeout); docs/security.md
// explains them, and zmqkit/keys.hpp and zmqkit/zap_authenticator.hpp provide the
// key files and the client allow-list that CURVE needs.
#pragma once

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <variant>

namespace zmqkit {

// Keys are Z85 text (40 characters) as produced by zmq_curve_keypair.
struct curve_server {
  std::string secret_key;
  std::string zap_domain = "zmqkit";  // a ZAP handler, if running, sees this domain
};

struct curve_client {
  std::string public_key;
  std::string secret_key;
  std::string server_key;  // the server's public key
};

using security = std::variant<std::monostate, curve_server, curve_client>;

struct socket_options {
  std::chrono::milliseconds linger{1000};             // bounded, so close never hangs
  std::int64_t max_message_bytes = 1 << 20;           // larger frames disconnect the sender
  std::chrono::milliseconds handshake_timeout{5000};  // half-open peers are dropped
  int send_hwm = 1000;
  int receive_hwm = 1000;
  zmqkit::security security{};  // plaintext by default
};

// Applies `opts` to `socket`. Call before bind/connect.
// Throws: zmqkit::error{errc::security} when a key is not 40-character Z85 (or does not decode);
//         zmq::error_t when libzmq refuses an option.
void apply(zmq::socket_t& socket, const socket_options& opts);

// The process-wide default context, for callers that do not manage their own.
// It is never terminated (intentionally leaked, and ZMQ_BLOCKY is off): a program
// that returns from main exits at once, whatever sockets it left open, but
// messages still queued in those sockets at exit are dropped, not flushed.
// A program that must flush on exit owns a zmq::context_t, closes its sockets
// and lets the context's destructor wait their linger (bounded by apply()).
zmq::context_t& default_context();

}  // namespace zmqkit
