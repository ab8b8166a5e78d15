// zmqkit::default_context() must not keep a process alive at exit: a program
// that returns from main with sockets still open (even leaked) exits promptly.
#include <utility>  // support/process.hpp uses std::exchange

#include <doctest/doctest.h>

#include <support/process.hpp>
#include <support/sockets.hpp>
#include <zmqkit/socket_options.hpp>

using namespace std::chrono_literals;

TEST_CASE("a program returning from main with clients open on default_context() exits promptly") {
  zmq::context_t ctx;
  // A peer that reads requests and never answers, so the child's requests stay outstanding.
  auto silent = zmqkit::test::test_socket(ctx, zmq::socket_type::router);
  const std::string endpoint = zmqkit::test::bind_ephemeral(silent);

  zmqkit::test::child_process child({ZMQKIT_DEFAULT_CONTEXT_CHILD, endpoint});
  const auto status = child.wait(3000ms);
  REQUIRE_MESSAGE(status.has_value(), "the child was still running 3 s after main returned");
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("default_context() is one context, non-blocky") {
  CHECK(&zmqkit::default_context() == &zmqkit::default_context());
  CHECK(zmqkit::default_context().get(zmq::ctxopt::blocky) == 0);
}
