#include <zmqkit/clock.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/socket_options.hpp>

#include <doctest/doctest.h>

using namespace std::chrono_literals;

TEST_CASE("hardened defaults are applied to a socket") {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  zmqkit::apply(s, {});
  CHECK(s.get(zmq::sockopt::linger) == 1000);
  CHECK(s.get(zmq::sockopt::maxmsgsize) == (1 << 20));
  CHECK(s.get(zmq::sockopt::handshake_ivl) == 5000);
  CHECK(s.get(zmq::sockopt::sndhwm) == 1000);
}

TEST_CASE("a malformed CURVE key is a security error, not a libzmq crash") {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::router);
  zmqkit::socket_options opts;
  opts.security = zmqkit::curve_server{.secret_key = "too short"};
  try {
    zmqkit::apply(s, opts);
    FAIL("short key accepted");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == zmqkit::errc::security);
  }
}

TEST_CASE("durations convert to libzmq milliseconds in one place") {
  CHECK(zmqkit::to_zmq_ms(1500ms) == 1500);
  CHECK(zmqkit::to_zmq_ms(500us) == 1);   // rounds up: waits, never busy-polls
  CHECK(zmqkit::to_zmq_ms(-1ms) == -1);   // infinite
  CHECK(zmqkit::to_zmq_ms(std::chrono::hours(10'000)) == std::numeric_limits<int>::max());
}

TEST_CASE("the manual clock moves only when advanced") {
  zmqkit::manual_clock clock;
  const auto t0 = clock.now();
  const auto w0 = clock.wall_now();
  CHECK(clock.now() == t0);
  clock.advance(3s);
  CHECK(clock.now() - t0 == 3s);
  CHECK(clock.wall_now() - w0 == 3s);
}
