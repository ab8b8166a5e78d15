// Regression for the handshake-DoS class: raw TCP garbage, many connections,
// at a CURVE-protected ROUTER port. Nothing may be delivered, and a good client
// must still be served, during and after the flood.
// Default: 300 connections; ZMQKIT_FULL=1: 3000.
#include <doctest/doctest.h>

#include <cstdlib>
#include <thread>
#include <zmqkit/keys.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "echo_server.hpp"
#include "support/raw_tcp.hpp"
#include "support/sockets.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using zmqkit::test::echo_request;
using zmqkit::test::echo_server;
using zmqkit::test::wait_until;

namespace {
std::size_t flood_size() {
  const char* full = std::getenv("ZMQKIT_FULL");
  return full && std::string(full) == "1" ? 3000 : 300;
}
}  // namespace

TEST_CASE("a garbage flood at a CURVE port delivers nothing and a good client is still served") {
  zmq::context_t ctx;
  zmqkit::test::temp_dir dir;
  const auto server_keys = zmqkit::generate_keypair();
  const auto client_keys = zmqkit::generate_keypair();
  zmqkit::save_public_key(client_keys.public_key, dir / "good.pub");
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir.path()});
  echo_server srv(ctx, {.handshake_timeout = 1000ms,
                        .security = zmqkit::curve_server{.secret_key = server_keys.secret_key}});
  const zmqkit::socket_options good{.security = zmqkit::curve_client{.public_key = client_keys.public_key,
                                                                     .secret_key = client_keys.secret_key,
                                                                     .server_key = server_keys.public_key}};
  const auto port = zmqkit::test::tcp_port(srv.endpoint());
  const std::size_t n = flood_size();

  // During: a flood thread hammers the port while the good client asks.
  zmqkit::test::flood_stats during;
  std::thread flood([&] { during = zmqkit::test::garbage_flood(port, n, 8192, 1); });
  CHECK(wait_until([&] { return srv.handshakes().accepted >= n / 4; }, 10s));  // well under way
  const auto t0 = std::chrono::steady_clock::now();
  const auto reply_during = echo_request(ctx, srv.endpoint(), good, "during", 10s);
  const auto latency_during = std::chrono::steady_clock::now() - t0;
  flood.join();
  CHECK(reply_during == "during");

  // After: a second flood has completed, then the good client asks again.
  const auto after = zmqkit::test::garbage_flood(port, n, 8192, 2);
  const auto t1 = std::chrono::steady_clock::now();
  const auto reply_after = echo_request(ctx, srv.endpoint(), good, "after", 10s);
  const auto latency_after = std::chrono::steady_clock::now() - t1;
  CHECK(reply_after == "after");

  CHECK(srv.received() == 2);  // the two good requests, nothing from the garbage
  for (const auto& id : srv.user_ids()) CHECK(id == client_keys.public_key);
  CHECK(auth.stats().refused == 0);  // garbage never got as far as authentication
  CHECK(wait_until([&] { return srv.handshakes().succeeded == 2; }));  // events arrive asynchronously
  const auto hs = srv.handshakes();
  MESSAGE("flood: " << during.connections + after.connections << " connections, "
                    << (during.bytes + after.bytes) / 1024 << " KiB of garbage; server saw " << hs.accepted
                    << " accepted, " << hs.handshake_failed() << " handshake failures (protocol "
                    << hs.failed_protocol << ", no detail " << hs.failed_no_detail << "), " << hs.disconnected
                    << " disconnects; good client reply latency during "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(latency_during).count()
                    << " ms, after "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(latency_after).count() << " ms");
}
