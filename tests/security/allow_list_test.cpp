// The allow-list changes without a restart: a key added is admitted, a key
// removed is refused, by explicit reload() and by the directory scan.
#include <doctest/doctest.h>

#include <fstream>
#include <zmqkit/keys.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "echo_server.hpp"
#include "support/sockets.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using zmqkit::test::echo_request;
using zmqkit::test::echo_server;
using zmqkit::test::wait_until;

namespace {

struct fixture {
  zmqkit::test::temp_dir dir;
  zmq::context_t ctx;
  zmqkit::curve_keypair server = zmqkit::generate_keypair();
  zmqkit::curve_keypair alice = zmqkit::generate_keypair();
  zmqkit::curve_keypair bob = zmqkit::generate_keypair();
  fs::path allow = dir / "allow";

  fixture() { fs::create_directory(allow); }
  zmqkit::socket_options server_options() const {
    return {.security = zmqkit::curve_server{.secret_key = server.secret_key}};
  }
  zmqkit::socket_options as(const zmqkit::curve_keypair& me) const {
    return {.security = zmqkit::curve_client{
                .public_key = me.public_key, .secret_key = me.secret_key, .server_key = server.public_key}};
  }
  // True when a fresh connection with `me` gets its request echoed.
  bool admitted(const echo_server& srv, const zmqkit::curve_keypair& me,
                std::chrono::milliseconds wait = 2000ms) {
    return echo_request(ctx, srv.endpoint(), as(me), "ping", wait).has_value();
  }
};

}  // namespace

TEST_CASE_FIXTURE(fixture, "reload() admits a newly added key and refuses a removed one, without restart") {
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = allow, .reload_interval = 0ms});  // explicit only
  echo_server srv(ctx, server_options());

  CHECK_FALSE(admitted(srv, alice, 300ms));
  CHECK(wait_until([&] { return auth.stats().refused >= 1; }));
  CHECK(srv.received() == 0);

  zmqkit::save_public_key(alice.public_key, allow / "alice.pub");
  auth.reload();
  CHECK(auth.stats().allowed_keys == 1);
  CHECK(admitted(srv, alice));
  CHECK(srv.received() == 1);

  fs::remove(allow / "alice.pub");
  auth.reload();
  CHECK(auth.stats().allowed_keys == 0);
  const auto refused_before = auth.stats().refused;
  CHECK_FALSE(admitted(srv, alice, 300ms));
  CHECK(wait_until([&] { return auth.stats().refused > refused_before; }));
  CHECK(srv.received() == 1);  // nothing more delivered
}

TEST_CASE_FIXTURE(fixture, "the directory scan picks up changes by itself") {
  zmqkit::manual_clock clock;
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = allow, .reload_interval = 1000ms, .clock = &clock});
  echo_server srv(ctx, server_options());
  CHECK(auth.stats().reloads == 1);

  zmqkit::save_public_key(bob.public_key, allow / "bob.pub");
  clock.advance(1500ms);
  REQUIRE(wait_until([&] { return auth.stats().reloads == 2; }));
  CHECK(admitted(srv, bob));
  CHECK(srv.user_ids().back() == bob.public_key);

  fs::remove(allow / "bob.pub");
  clock.advance(1500ms);
  REQUIRE(wait_until([&] { return auth.stats().reloads == 3; }));
  CHECK_FALSE(admitted(srv, bob, 300ms));
  CHECK(srv.received() == 1);
}

TEST_CASE_FIXTURE(fixture, "a malformed key file is skipped, the others still count") {
  zmqkit::save_public_key(alice.public_key, allow / "alice.pub");
  std::ofstream(allow / "broken.pub") << "not a key\n";
  std::ofstream(allow / "notes.txt") << "ignored: not *.pub\n";
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = allow});
  CHECK(auth.stats().allowed_keys == 1);
  CHECK(auth.stats().skipped_files == 1);
  echo_server srv(ctx, server_options());
  CHECK(admitted(srv, alice));
}

TEST_CASE_FIXTURE(fixture, "reload() of a vanished directory is an error and keeps the last good list") {
  zmqkit::save_public_key(alice.public_key, allow / "alice.pub");
  zmqkit::zap_authenticator auth(ctx, {.allow_dir = allow, .reload_interval = 0ms});
  fs::remove_all(allow);
  CHECK_THROWS_AS(auth.reload(), zmqkit::error);
  echo_server srv(ctx, server_options());
  CHECK(admitted(srv, alice));
}
