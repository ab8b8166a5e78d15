#include <zmqkit/clock.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit {

namespace {
void check_key(std::string_view key, const char* what) {
  if (!is_z85_key(key))
    throw error(errc::security, what, std::string(what) + ": not a 40-character Z85 CURVE key");
}
}  // namespace

void apply(zmq::socket_t& socket, const socket_options& opts) {
  socket.set(zmq::sockopt::linger, to_zmq_ms(opts.linger));
  socket.set(zmq::sockopt::maxmsgsize, opts.max_message_bytes);
  socket.set(zmq::sockopt::handshake_ivl, to_zmq_ms(opts.handshake_timeout));
  socket.set(zmq::sockopt::sndhwm, opts.send_hwm);
  socket.set(zmq::sockopt::rcvhwm, opts.receive_hwm);

  if (const auto* server = std::get_if<curve_server>(&opts.security)) {
    check_key(server->secret_key, "secret key");
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, server->secret_key);
    socket.set(zmq::sockopt::zap_domain, server->zap_domain);
  } else if (const auto* client = std::get_if<curve_client>(&opts.security)) {
    check_key(client->public_key, "public key");
    check_key(client->secret_key, "secret key");
    check_key(client->server_key, "server key");
    socket.set(zmq::sockopt::curve_serverkey, client->server_key);
    socket.set(zmq::sockopt::curve_publickey, client->public_key);
    socket.set(zmq::sockopt::curve_secretkey, client->secret_key);
  }
}

zmq::context_t& default_context() {
  // Leaked on purpose: terminating it from a static destructor would wait for
  // every socket still open anywhere in the program (forever for a leaked one).
  // Non-blocky, so a caller that does terminate it never waits on linger either.
  static zmq::context_t* const context = [] {
    auto* ctx = new zmq::context_t;
    ctx->set(zmq::ctxopt::blocky, 0);
    return ctx;
  }();
  return *context;
}

}  // namespace zmqkit
