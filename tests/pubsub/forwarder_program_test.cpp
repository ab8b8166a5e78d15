// End to end: the zmqkit-forwarder program between a publisher and subscribers.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <support/process.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

// Distinct loopback TCP ports that were free a moment ago. Plain sockets,
// because a ZeroMQ socket closes its listener asynchronously (the port may
// still be taken); all are held until all are known, so they differ.
std::vector<std::string> free_endpoints(int n) {
  std::vector<int> fds(n);
  std::vector<std::string> eps(n);
  for (int i = 0; i < n; ++i) {
    fds[i] = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fds[i] >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fds[i], reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fds[i], reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    eps[i] = "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  for (int fd : fds) ::close(fd);
  return eps;
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
  const auto eps = free_endpoints(2);
  const std::string &frontend = eps[0], &backend = eps[1];
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

TEST_CASE("zmqkit-forwarder --snapshot serves the last value of each type") {
  zmq::context_t ctx;
  const auto eps = free_endpoints(3);
  test::child_process fwd(
      {ZMQKIT_FORWARDER_PATH, "--frontend", eps[0], "--backend", eps[1], "--snapshot", eps[2]});
  pubsub::publisher pub(ctx);
  pub.connect(eps[0]);
  auto probe = test::test_socket(ctx, zmq::socket_type::dealer);
  probe.connect(eps[2]);
  REQUIRE(test::wait_until([&] {  // until the forwarder runs and has cached one
    pub.publish("course.opened", std::string("latest"));
    test::send_raw(probe, {"zmk.snapshot", "course."});
    std::vector<zmq::message_t> reply;
    return zmq::recv_multipart(probe, std::back_inserter(reply)) == 3;
  }));

  pubsub::subscriber sub(ctx, {.snapshot_endpoints = {eps[2]}});
  sub.subscribe("course.");
  sub.connect(eps[1]);
  REQUIRE(sub.request_snapshot(2s) == 1u);
  auto n = sub.receive(0ms);
  REQUIRE(n);
  CHECK(n->from_snapshot);
  CHECK(n->env.body_as<std::string>() == "latest");

  fwd.signal(SIGINT);
  CHECK(exit_code(fwd.wait(5s)) == 0);
}
