// Hardened defaults at work: an oversized message disconnects its sender and
// delivers nothing; a peer that never completes its handshake is dropped.
#include <doctest/doctest.h>

#include <zmqkit/keys.hpp>
#include <zmqkit/socket_options.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "echo_server.hpp"
#include "support/raw_tcp.hpp"
#include "support/sockets.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using zmqkit::test::echo_request;
using zmqkit::test::echo_server;
using zmqkit::test::wait_until;

TEST_CASE(
    "a message over the maximum size disconnects its sender, delivers nothing, and the server keeps "
    "serving") {
  zmq::context_t ctx;
  zmqkit::test::temp_dir dir;
  const auto server_keys = zmqkit::generate_keypair();
  const auto client_keys = zmqkit::generate_keypair();
  zmqkit::save_public_key(client_keys.public_key, dir / "client.pub");
  constexpr std::int64_t limit = 64 << 10;

  zmqkit::socket_options server_opts{.max_message_bytes = limit};
  zmqkit::socket_options client_opts;
  std::optional<zmqkit::zap_authenticator> auth;
  SUBCASE("plaintext") {}
  SUBCASE("CURVE") {
    auth.emplace(ctx, zmqkit::zap_options{.allow_dir = dir.path()});
    server_opts.security = zmqkit::curve_server{.secret_key = server_keys.secret_key};
    client_opts.security = zmqkit::curve_client{.public_key = client_keys.public_key,
                                                .secret_key = client_keys.secret_key,
                                                .server_key = server_keys.public_key};
  }
  echo_server srv(ctx, server_opts);

  zmq::socket_t big(ctx, zmq::socket_type::dealer);
  zmqkit::apply(big, client_opts);  // the sender's own limit is on receiving, not sending
  big.set(zmq::sockopt::linger, 0);
  big.connect(srv.endpoint());
  REQUIRE(wait_until([&] { return srv.handshakes().succeeded == 1; }));
  const std::string oversized(static_cast<std::size_t>(limit) + 1, 'x');
  REQUIRE(big.send(zmq::buffer(oversized), zmq::send_flags::none));
  CHECK(wait_until([&] { return srv.handshakes().disconnected >= 1; }));
  CHECK(srv.received() == 0);

  // Just under the limit still passes, from another client.
  const std::string at_limit(static_cast<std::size_t>(limit) - 100, 'y');
  CHECK(echo_request(ctx, srv.endpoint(), client_opts, at_limit) == at_limit);
  CHECK(echo_request(ctx, srv.endpoint(), client_opts, "small") == "small");
  CHECK(srv.received() == 2);
  MESSAGE("max " << limit << " B: oversized sender disconnected " << srv.handshakes().disconnected
                 << " time(s), delivered " << srv.received() << " (the two good requests)");
}

TEST_CASE("a peer that never completes the handshake is dropped after the handshake timeout") {
  zmq::context_t ctx;
  const auto server_keys = zmqkit::generate_keypair();
  echo_server srv(ctx, {.handshake_timeout = 200ms,
                        .security = zmqkit::curve_server{.secret_key = server_keys.secret_key}});
  zmqkit::test::raw_tcp silent(zmqkit::test::tcp_port(srv.endpoint()));
  zmqkit::test::raw_tcp half(zmqkit::test::tcp_port(srv.endpoint()));
  half.write_some(zmqkit::test::zmtp_greeting("CURVE"));  // a greeting, then nothing
  CHECK(silent.closed_by_peer_within(5s));
  CHECK(half.closed_by_peer_within(5s));
  CHECK(wait_until([&] { return srv.handshakes().handshake_failed() >= 2; }));
  CHECK(srv.received() == 0);
}

TEST_CASE("the hardened defaults are what the documentation says") {
  const zmqkit::socket_options defaults;
  CHECK(defaults.max_message_bytes == 1 << 20);
  CHECK(defaults.linger == 1000ms);
  CHECK(defaults.handshake_timeout == 5000ms);
  CHECK(defaults.send_hwm == 1000);
  CHECK(defaults.receive_hwm == 1000);
  CHECK(std::holds_alternative<std::monostate>(defaults.security));
}
