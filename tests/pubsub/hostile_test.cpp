// Hostile subscribers against a publisher (issue 11): its PUB socket only ever
// receives subscriptions, so a frame longer than any subscription is refused
// before libzmq stores it (libzmq 4.3.4 keeps one trie node per byte).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

// A ZMTP 3.0 SUB peer written by hand (NULL mechanism): nothing of libzmq on
// our side stores what it sends, so the test process cannot be the one to crash.
class raw_subscriber {
 public:
  explicit raw_subscriber(const std::string& endpoint) {
    const auto colon = endpoint.rfind(':');
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    std::string greeting("\xff\0\0\0\0\0\0\0\0\x7f\x03\x00NULL", 16);
    greeting.resize(64, '\0');
    send_all(greeting);
    REQUIRE(receive(64).size() == 64);
    const std::string ready = std::string("\x05READY\x0bSocket-Type\0\0\0\x03SUB", 25);
    send_all(std::string("\x04") + static_cast<char>(ready.size()) + ready);
    const std::string head = receive(2);
    REQUIRE(head.size() == 2);
    receive(static_cast<unsigned char>(head[1]));
  }
  ~raw_subscriber() { ::close(fd_); }

  void subscribe(const std::string& prefix) {
    const std::string body = "\x01" + prefix;
    std::string frame;
    if (body.size() < 256) {
      frame = std::string("\x00", 1) + static_cast<char>(body.size());
    } else {
      frame = "\x02";
      for (int shift = 56; shift >= 0; shift -= 8) frame.push_back(static_cast<char>((body.size() >> shift) & 0xff));
    }
    send_all(frame + body);
  }

  // Returns: whether the peer closed the connection within `timeout` (anything it sends is skipped).
  bool closed_by_peer(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
    return false;
  }

 private:
  void send_all(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const auto n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;  // the peer hung up: what the tests look for
      sent += static_cast<std::size_t>(n);
    }
  }
  std::string receive(std::size_t n) {
    std::string out;
    char buf[256];
    while (out.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      const auto got = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (got <= 0) break;
      out.append(buf, static_cast<std::size_t>(got));
    }
    return out;
  }
  int fd_ = -1;
};

}  // namespace

TEST_CASE("a publisher disconnects a subscriber sending a 300 KB subscription and keeps serving") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.id = "p"});
  const std::string endpoint = pub.bind("tcp://127.0.0.1:*");
  pubsub::subscriber good(ctx);
  good.subscribe("ok.");
  good.connect(endpoint);
  test::await_subscription(pub, {&good}, "ok.sync");

  raw_subscriber hostile(endpoint);
  hostile.subscribe(std::string(300'000, 'h'));
  CHECK(hostile.closed_by_peer(5s));

  raw_subscriber polite(endpoint);
  polite.subscribe("fine.");  // an ordinary subscription from a raw peer is kept
  CHECK_FALSE(polite.closed_by_peer(300ms));

  pub.publish(make_envelope("ok.after"));
  auto n = good.receive(2s);
  REQUIRE(n);
  CHECK(n->env.type == "ok.after");
}

TEST_CASE("a snapshot request with a prefix longer than any type is a bad request") {
  zmq::context_t ctx;
  pubsub::publisher pub(ctx, {.id = "p", .snapshot_endpoint = "tcp://127.0.0.1:*"});
  pub.publish(make_envelope("a.b"));
  zmq::socket_t d(ctx, zmq::socket_type::dealer);
  d.set(zmq::sockopt::linger, 0);
  d.set(zmq::sockopt::rcvtimeo, 300);
  d.connect(pub.snapshot_endpoint());
  test::send_raw(d, {std::string(pubsub::snapshot_command), std::string(300, 'a')});
  zmq::message_t m;
  CHECK_FALSE(d.recv(m));
  CHECK(test::wait_until([&] { return pub.stats().bad_snapshot_requests == 1; }));
  test::send_raw(d, {std::string(pubsub::snapshot_command), "a."});
  d.set(zmq::sockopt::rcvtimeo, 2000);
  CHECK(d.recv(m));
}
