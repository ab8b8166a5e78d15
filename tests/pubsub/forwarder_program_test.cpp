// End to end: the zmqkit-forwarder program between a publisher and subscribers.
#include "pubsub_helpers.hpp"

#include <support/process.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

// A loopback TCP port that was free a moment ago.
std::string free_endpoint(zmq::context_t& ctx) {
  auto s = test::test_socket(ctx, zmq::socket_type::router);
  return test::bind_ephemeral(s);  // closed when s goes out of scope
}

int exit_code(std::optional<int> status) {
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  return WEXITSTATUS(*status);
}

}  // namespace

TEST_CASE("zmqkit-forwarder answers --help and --version") {
  for (const char* flag : {"--help", "--version"}) {
    test::child_process p({ZMQKIT_FORWARDER_PATH, flag});
    CHECK(exit_code(p.wait(5s)) == 0);
  }
  test::child_process bad({ZMQKIT_FORWARDER_PATH, "--no-such-flag"});
  CHECK(exit_code(bad.wait(5s)) != 0);
}

TEST_CASE("zmqkit-forwarder passes subscriptions and messages through and exits 0 on SIGTERM") {
  zmq::context_t ctx;
  const std::string frontend = free_endpoint(ctx), backend = free_endpoint(ctx);
  test::child_process fwd({ZMQKIT_FORWARDER_PATH, "--frontend", frontend, "--backend", backend});

  pubsub::publisher pub(ctx);
  pub.connect(frontend);
  pubsub::subscriber courses(ctx), orders(ctx);
  courses.subscribe("course.");
  orders.subscribe("order.");
  courses.connect(backend);
  orders.connect(backend);
  test::await_subscription(pub, {&courses}, "course.sync");
  test::await_subscription(pub, {&orders}, "order.sync");

  pub.publish(make_envelope("course.subscribed"));
  pub.publish(make_envelope("order.created"));
  auto c = courses.receive(2s);
  auto o = orders.receive(2s);
  REQUIRE(c);
  REQUIRE(o);
  CHECK(c->env.type == "course.subscribed");
  CHECK(o->env.type == "order.created");
  CHECK_FALSE(courses.receive(100ms));
  CHECK_FALSE(orders.receive(100ms));

  fwd.signal(SIGTERM);
  CHECK(exit_code(fwd.wait(5s)) == 0);
}
