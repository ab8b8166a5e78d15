// CURVE handshakes: who gets in, who does not, and that every refusal is
// observable on the server's monitor while nothing reaches the application.
#include <doctest/doctest.h>

#include <zmqkit/handshake_monitor.hpp>
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

namespace {

struct fixture {
  zmqkit::test::temp_dir dir;
  zmq::context_t ctx;
  zmqkit::curve_keypair server = zmqkit::generate_keypair();
  zmqkit::curve_keypair alice = zmqkit::generate_keypair();    // on the allow-list
  zmqkit::curve_keypair mallory = zmqkit::generate_keypair();  // not on it

  fixture() {
    std::filesystem::create_directory(dir / "allow");
    zmqkit::save_public_key(alice.public_key, dir / "allow/alice.pub");
  }
  zmqkit::socket_options server_options() const {
    return {.security = zmqkit::curve_server{.secret_key = server.secret_key}};
  }
  static zmqkit::socket_options client_options(const zmqkit::curve_keypair& me,
                                               const std::string& server_key) {
    return {.security = zmqkit::curve_client{
                .public_key = me.public_key, .secret_key = me.secret_key, .server_key = server_key}};
  }
};

}  // namespace

TEST_CASE_FIXTURE(fixture, "an allowed client is admitted and its key reaches the handler as User-Id") {
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir / "allow"});
  echo_server srv(ctx, server_options());
  CHECK(echo_request(ctx, srv.endpoint(), client_options(alice, server.public_key), "hello") == "hello");
  CHECK(srv.received() == 1);
  REQUIRE(srv.user_ids().size() == 1);
  CHECK(srv.user_ids()[0] == alice.public_key);
  CHECK(srv.key_names()[0] == "alice");
  CHECK(auth.stats().accepted == 1);
  CHECK(auth.stats().refused == 0);
  CHECK(wait_until([&] { return srv.handshakes().succeeded == 1; }));  // events arrive asynchronously
  CHECK(srv.handshakes().handshake_failed() == 0);
}

TEST_CASE_FIXTURE(fixture,
                  "a client that fails the handshake delivers nothing and the failure is observable") {
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir / "allow"});
  echo_server srv(ctx, server_options());

  SUBCASE("unknown client key: refused by the ZAP handler") {
    CHECK_FALSE(
        echo_request(ctx, srv.endpoint(), client_options(mallory, server.public_key), "let me in", 300ms));
    CHECK(wait_until([&] { return srv.handshakes().failed_auth >= 1; }));
    CHECK(auth.stats().refused >= 1);
  }
  SUBCASE("plaintext client: mechanism mismatch") {
    CHECK_FALSE(echo_request(ctx, srv.endpoint(), {}, "let me in", 300ms));
    CHECK(wait_until([&] { return srv.handshakes().failed_protocol >= 1; }));
    CHECK(auth.stats().refused == 0);  // never got as far as ZAP
  }
  SUBCASE("allowed client with the wrong server key: cannot even be decrypted") {
    const auto impostor_server = zmqkit::generate_keypair();
    CHECK_FALSE(
        echo_request(ctx, srv.endpoint(), client_options(alice, impostor_server.public_key), "hi", 300ms));
    CHECK(wait_until([&] { return srv.handshakes().failed_protocol >= 1; }));
    CHECK(auth.stats().accepted == 0);
  }
  CHECK(srv.received() == 0);
  CHECK(srv.handshakes().succeeded == 0);
  MESSAGE("handshake failures seen: protocol " << srv.handshakes().failed_protocol << ", auth "
                                               << srv.handshakes().failed_auth);
  // The server still serves a good client afterwards.
  CHECK(echo_request(ctx, srv.endpoint(), client_options(alice, server.public_key), "ok") == "ok");
  CHECK(srv.received() == 1);
}

TEST_CASE_FIXTURE(fixture, "every CURVE refusal is counted by its reason and named with an address") {
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir / "allow"});
  echo_server srv(ctx, server_options());
  // The failure is named once the refused connection has closed (its DISCONNECTED
  // event). The peer's address is looked up when the monitor sees the connection
  // accepted, so a connection refused before that (at once, as a mechanism
  // mismatch is, or a ZAP refusal while the machine is busy) may be gone: then
  // the local endpoint stands in.
  const auto named = [&](const std::string& reason) {
    return wait_until([&] {
      const auto f = srv.last_failure();
      return f && f->reason == reason && !f->peer.empty();
    });
  };

  SUBCASE("unknown client key") {
    CHECK_FALSE(echo_request(ctx, srv.endpoint(), client_options(mallory, server.public_key), "x", 300ms));
    CHECK(wait_until([&] { return srv.handshakes().refused_unknown_key >= 1; }));
    CHECK(named("unknown_key"));
    CHECK(auth.stats().refused_unknown_key >= 1);
    CHECK(srv.handshakes().refused_plaintext == 0);
  }
  SUBCASE("plaintext client") {
    // Its whole greeting arrives, so the server sees the mismatch (a libzmq client
    // may hang up before its greeting is complete: that counts as bad_handshake).
    zmqkit::test::raw_tcp plaintext(zmqkit::test::tcp_port(srv.endpoint()));
    plaintext.write_some(zmqkit::test::zmtp_greeting("NULL"));
    CHECK(plaintext.closed_by_peer_within(5s));
    CHECK(wait_until([&] { return srv.handshakes().refused_plaintext >= 1; }));
    CHECK(named("plaintext"));
    CHECK(srv.handshakes().refused_unknown_key == 0);
  }
  SUBCASE("wrong server key") {
    const auto impostor = zmqkit::generate_keypair();
    CHECK_FALSE(echo_request(ctx, srv.endpoint(), client_options(alice, impostor.public_key), "x", 300ms));
    CHECK(wait_until([&] { return srv.handshakes().refused_bad_handshake >= 1; }));
    CHECK(named("bad_handshake"));
    CHECK(srv.handshakes().refused_plaintext == 0);
  }
}

TEST_CASE_FIXTURE(fixture, "a refused client's monitor says why, in words a log can show") {
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir / "allow"});
  echo_server srv(ctx, server_options());
  zmq::socket_t client(ctx, zmq::socket_type::dealer);
  zmqkit::apply(client, client_options(mallory, server.public_key));
  client.set(zmq::sockopt::linger, 0);
  zmqkit::handshake_monitor monitor(ctx, client);
  client.connect(srv.endpoint());
  REQUIRE(wait_until([&] { return monitor.last_failure().has_value(); }));
  const std::string text = zmqkit::describe(*monitor.last_failure());
  CHECK(text.starts_with("CURVE handshake failed: "));
  CHECK(monitor.last_failure()->reason == "unknown_key");
  MESSAGE(text);
}

TEST_CASE_FIXTURE(fixture, "the client side sees its own failed handshake too") {
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir / "allow"});
  echo_server srv(ctx, server_options());
  zmq::socket_t client(ctx, zmq::socket_type::dealer);
  zmqkit::apply(client, client_options(mallory, server.public_key));
  client.set(zmq::sockopt::linger, 0);
  zmqkit::handshake_monitor monitor(ctx, client);
  client.connect(srv.endpoint());
  // A refused CURVE client gets an ERROR command: its handshake fails with a reason.
  CHECK(wait_until([&] { return monitor.stats().handshake_failed() >= 1; }));
  CHECK(monitor.stats().succeeded == 0);
}

TEST_CASE_FIXTURE(fixture, "an authenticator restricted to another ZAP domain refuses the server's clients") {
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = dir / "allow", .domain = "billing"});
  echo_server srv(ctx, server_options());  // domain "zmqkit"
  CHECK_FALSE(echo_request(ctx, srv.endpoint(), client_options(alice, server.public_key), "hi", 300ms));
  CHECK(wait_until([&] { return srv.handshakes().failed_auth >= 1; }));
  CHECK(srv.received() == 0);
}

TEST_CASE_FIXTURE(fixture, "without an authenticator CURVE encrypts but admits any client key (libzmq 4.3)") {
  // Documents why the ZAP handler matters: the server's public key is not a secret.
  echo_server srv(ctx, server_options());
  CHECK(echo_request(ctx, srv.endpoint(), client_options(mallory, server.public_key), "in") == "in");
}

TEST_CASE("one ZAP handler per context: a second one is a clear error") {
  zmqkit::test::temp_dir dir;
  zmq::context_t ctx;
  zmqkit::zap_authenticator first(ctx, {.allow_dir = dir.path()});
  try {
    zmqkit::zap_authenticator second(ctx, {.allow_dir = dir.path()});
    FAIL("second ZAP handler bound");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == zmqkit::errc::security);
  }
}

TEST_CASE("an allow-list directory that does not exist is a clear error") {
  zmq::context_t ctx;
  try {
    zmqkit::zap_authenticator auth(ctx, {.allow_dir = "/nonexistent/zmqkit-allow"});
    FAIL("missing directory accepted");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == zmqkit::errc::security);
    CHECK(e.field() == "/nonexistent/zmqkit-allow");
  }
}

TEST_CASE_FIXTURE(fixture, "one authenticator serves different allow-lists to different ZAP domains") {
  // As the queue device does: clients may use the frontend, workers the backend, not the reverse.
  const auto bob = zmqkit::generate_keypair();
  std::filesystem::create_directory(dir / "workers");
  zmqkit::save_public_key(bob.public_key, dir / "workers/bob.pub");
  zmqkit::zap_authenticator auth(
      ctx, {.domain_dirs = {{"frontend", dir / "allow"}, {"backend", dir / "workers"}}});
  CHECK(auth.stats().allowed_keys == 2);
  echo_server front(
      ctx, {.security = zmqkit::curve_server{.secret_key = server.secret_key, .zap_domain = "frontend"}});
  echo_server back(
      ctx, {.security = zmqkit::curve_server{.secret_key = server.secret_key, .zap_domain = "backend"}});
  CHECK(echo_request(ctx, front.endpoint(), client_options(alice, server.public_key), "a") == "a");
  CHECK(echo_request(ctx, back.endpoint(), client_options(bob, server.public_key), "b") == "b");
  CHECK_FALSE(echo_request(ctx, front.endpoint(), client_options(bob, server.public_key), "x", 300ms));
  CHECK_FALSE(echo_request(ctx, back.endpoint(), client_options(alice, server.public_key), "y", 300ms));
  CHECK(wait_until([&] { return auth.stats().refused >= 2; }));
  CHECK(front.received() == 1);
  CHECK(back.received() == 1);
}

TEST_CASE_FIXTURE(fixture, "an open ZAP domain admits any CURVE key beside an authenticated one") {
  zmqkit::zap_authenticator auth(ctx,
                                 {.domain_dirs = {{"clients", dir / "allow"}}, .open_domains = {"public"}});
  echo_server open(
      ctx, {.security = zmqkit::curve_server{.secret_key = server.secret_key, .zap_domain = "public"}});
  echo_server closed(
      ctx, {.security = zmqkit::curve_server{.secret_key = server.secret_key, .zap_domain = "clients"}});
  CHECK(echo_request(ctx, open.endpoint(), client_options(mallory, server.public_key), "m") == "m");
  CHECK(open.user_ids().at(0) == mallory.public_key);
  CHECK_FALSE(echo_request(ctx, closed.endpoint(), client_options(mallory, server.public_key), "m", 300ms));
  CHECK(wait_until([&] { return closed.handshakes().failed_auth >= 1; }));
  CHECK(closed.received() == 0);
  // Still CURVE: a plaintext client is refused on the open domain too.
  CHECK_FALSE(echo_request(ctx, open.endpoint(), {}, "p", 300ms));
  CHECK(open.received() == 1);
}
