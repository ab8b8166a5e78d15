// Retention, replay and gap repair through a storing forwarder (docs/protocol.md
// 8.6): a subscriber that overflowed gets every message back in order, a late
// joiner starts from seq 1 or from a time, a durable subscriber resumes where it
// acknowledged, retention bounds what is kept, and bad requests are refused.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <zmqkit/pubsub/forwarder.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "pubsub_helpers.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

struct storing_forwarder {
  test::temp_dir dir;
  pubsub::forwarder fwd;
  storing_forwarder(zmq::context_t& ctx, pubsub::forwarder_options o = {})
      : fwd(ctx, with_store(std::move(o), dir.path().string())) {}
  static pubsub::forwarder_options with_store(pubsub::forwarder_options o, std::string path) {
    o.frontend = test::unique_inproc("fwd-in");
    o.backend = test::unique_inproc("fwd-out");
    o.snapshot_endpoint = test::unique_inproc("fwd-replay");
    o.store_dir = std::move(path);
    return o;
  }
};

// Connects `pub` to the forwarder and waits until what it publishes gets there
// (a PUB drops everything before the forwarder's subscription arrives).
void connect_publisher(pubsub::publisher& pub, pubsub::forwarder& fwd) {
  pub.connect(fwd.frontend_endpoint());
  const auto before = fwd.stats().messages;
  REQUIRE(test::wait_until([&] {
    pub.publish(make_envelope("sync.hello"));
    return fwd.stats().messages > before;
  }));
}

void await_stored(pubsub::forwarder& fwd, std::uint64_t n) {
  REQUIRE(test::wait_until([&] { return fwd.stats().stored >= n; }));
}

pubsub::subscriber_options replaying(const pubsub::forwarder& fwd, std::vector<pubsub::gap>* gaps = nullptr) {
  pubsub::subscriber_options o;
  if (gaps) o.on_gap = [gaps](const pubsub::gap& g) { gaps->push_back(g); };
  o.replay_endpoint = fwd.snapshot_endpoint();
  return o;
}

// Receives until `n` messages of `type` arrived (or 5 s of silence); returns their numbers.
std::vector<std::uint64_t> receive_numbers(pubsub::subscriber& sub, const std::string& type, std::size_t n) {
  std::vector<std::uint64_t> got;
  while (got.size() < n) {
    auto m = sub.receive(5s);
    if (!m) break;
    if (m->env.type == type) got.push_back(m->sequence);
  }
  return got;
}

std::vector<std::uint64_t> one_to(std::uint64_t last, std::uint64_t first = 1) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t s = first; s <= last; ++s) v.push_back(s);
  return v;
}

}  // namespace

TEST_CASE("a subscriber overflowed at the forwarder's high-water mark receives every message, in order") {
  zmq::context_t ctx;
  // Small queues towards the subscriber only: the forwarder stores everything, then drops on the way out.
  storing_forwarder s(ctx, {.socket = {.send_hwm = 50, .receive_hwm = 100000}});
  pubsub::publisher pub(ctx);
  connect_publisher(pub, s.fwd);
  std::vector<pubsub::gap> gaps;
  auto opts = replaying(s.fwd, &gaps);
  opts.socket.receive_hwm = 50;
  opts.start.sequence = 1;
  pubsub::subscriber sub(ctx, opts);
  sub.subscribe("tick.");
  sub.connect(s.fwd.backend_endpoint());
  test::await_subscription(pub, {&sub}, "tick.sync");

  const std::uint64_t n = 5000;
  for (std::uint64_t i = 0; i < n; ++i) pub.publish(make_envelope("tick.n", std::string(64, 'x')));
  await_stored(s.fwd, n);
  // The flood's tail may be lost too: one more message shows it.
  std::vector<std::uint64_t> got;
  for (;;) {
    auto m = sub.receive(300ms);
    if (!m) break;
    if (m->env.type == "tick.n") got.push_back(m->sequence);
  }
  pub.publish(make_envelope("tick.n"));
  auto rest = receive_numbers(sub, "tick.n", n + 1 - got.size());
  got.insert(got.end(), rest.begin(), rest.end());
  MESSAGE("delivered " << got.size() << " of " << n + 1 << ", " << sub.stats().replayed << " by repair in "
                       << sub.stats().replay_requests << " requests; gaps reported " << gaps.size());
  CHECK(sub.stats().replayed > 0);  // the flood did overflow, and repair filled it
  CHECK(gaps.empty());
  CHECK(sub.stats().missed == 0);
  CHECK(got == one_to(n + 1));
}

TEST_CASE("a late joiner replays from seq 1, then continues live with no gap and no duplicate at the seam") {
  zmq::context_t ctx;
  storing_forwarder s(ctx);
  pubsub::publisher pub(ctx);
  connect_publisher(pub, s.fwd);
  for (int i = 0; i < 300; ++i) pub.publish(make_envelope("course.opened"));
  await_stored(s.fwd, 300);

  std::vector<pubsub::gap> gaps;
  auto opts = replaying(s.fwd, &gaps);
  opts.start.sequence = 1;
  pubsub::subscriber sub(ctx, opts);
  sub.subscribe("course.");
  sub.connect(s.fwd.backend_endpoint());
  // Published while the subscription travels and the replay runs: live or replayed, never both.
  for (int i = 0; i < 100; ++i) pub.publish(make_envelope("course.opened"));
  auto got = receive_numbers(sub, "course.opened", 400);
  for (int i = 0; i < 100; ++i) pub.publish(make_envelope("course.opened"));
  auto live = receive_numbers(sub, "course.opened", 100);
  got.insert(got.end(), live.begin(), live.end());
  CHECK(got == one_to(500));
  CHECK(gaps.empty());
  CHECK(sub.stats().replayed >= 300);
  CHECK(sub.stats().received >= 100);
}

TEST_CASE("a subscriber can start from a time: the first message the forwarder received at or after it") {
  zmq::context_t ctx;
  storing_forwarder s(ctx);
  pubsub::publisher pub(ctx);
  connect_publisher(pub, s.fwd);
  for (int i = 0; i < 100; ++i) pub.publish(make_envelope("order.placed"));
  await_stored(s.fwd, 100);
  const wall_time mark = clock::real().wall_now();
  // The forwarder stamps its receive time; make sure the next batch is received after `mark`.
  REQUIRE(test::wait_until([&] { return clock::real().wall_now() > mark; }));
  for (int i = 0; i < 50; ++i) pub.publish(make_envelope("order.placed"));
  await_stored(s.fwd, 150);

  auto opts = replaying(s.fwd);
  opts.start.time = mark;
  pubsub::subscriber sub(ctx, opts);
  sub.subscribe("order.");
  sub.connect(s.fwd.backend_endpoint());
  CHECK(receive_numbers(sub, "order.placed", 50) == one_to(150, 101));
  CHECK_FALSE(sub.receive(100ms));
}

TEST_CASE("retention: only what the forwarder no longer holds is reported as a gap") {
  zmq::context_t ctx;
  storing_forwarder s(ctx, {.retain = {.messages = 50}});
  pubsub::publisher pub(ctx);
  connect_publisher(pub, s.fwd);
  for (int i = 0; i < 200; ++i) pub.publish(make_envelope("review.posted"));
  await_stored(s.fwd, 200);
  CHECK(s.fwd.stats().dropped_by_retention >= 150);

  std::vector<pubsub::gap> gaps;
  auto opts = replaying(s.fwd, &gaps);
  opts.start.sequence = 1;
  pubsub::subscriber sub(ctx, opts);
  sub.subscribe("review.");
  sub.connect(s.fwd.backend_endpoint());
  CHECK(receive_numbers(sub, "review.posted", 50) == one_to(200, 151));
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].first_missing == 1);
  CHECK(gaps[0].count == 150);
}

TEST_CASE("a durable subscriber resumes after the last message it acknowledged, across a forwarder restart") {
  zmq::context_t ctx;
  test::temp_dir dir;
  auto fwd_opts = [&] {
    return pubsub::forwarder_options{.frontend = test::unique_inproc("in"),
                                     .backend = test::unique_inproc("out"),
                                     .snapshot_endpoint = test::unique_inproc("replay"),
                                     .store_dir = dir.path().string()};
  };
  std::optional<pubsub::forwarder> fwd(std::in_place, ctx, fwd_opts());
  pubsub::publisher pub(ctx, {.id = "registrar"});
  connect_publisher(pub, *fwd);
  for (int i = 0; i < 100; ++i) pub.publish(make_envelope("student.registered"));
  await_stored(*fwd, 100);

  auto sub_opts = [&] {
    auto o = replaying(*fwd);
    o.start.sequence = 1;
    o.durable_name = "mailer";
    return o;
  };
  {
    pubsub::subscriber sub(ctx, sub_opts());
    sub.subscribe("student.");
    sub.connect(fwd->backend_endpoint());
    CHECK(receive_numbers(sub, "student.registered", 60) == one_to(60));
  }  // closing acknowledges what it handled: 1..60
  REQUIRE(test::wait_until([&] { return fwd->stats().acks > 0; }));

  // The forwarder restarts on its store: messages and cursors come back.
  const auto kept = fwd->stats().store_messages;
  CHECK(kept >= 100);  // and the sync messages
  fwd.reset();
  fwd.emplace(ctx, fwd_opts());
  CHECK(fwd->stats().store_messages == kept);
  CHECK(fwd->stats().cursors == 1);
  pubsub::subscriber again(ctx, sub_opts());
  again.subscribe("student.");
  again.connect(fwd->backend_endpoint());
  CHECK(receive_numbers(again, "student.registered", 40) == one_to(100, 61));
  CHECK(again.stats().replayed == 40);
  CHECK(again.stats().missed == 0);
}

TEST_CASE("bad replay requests get an error reply or are dropped, counted, and the forwarder keeps serving") {
  zmq::context_t ctx;
  storing_forwarder s(ctx);
  auto dealer = test::test_socket(ctx, zmq::socket_type::dealer);
  dealer.connect(s.fwd.snapshot_endpoint());
  const auto before = s.fwd.stats().bad_replay_requests;
  for (const auto& request : std::vector<std::vector<std::string>>{
           {"zmk.replay", "p"},                                // too few frames
           {"zmk.replay", "p", "t", "x", "0", "0"},           // start not a number
           {"zmk.replay", "p", "t", "0", "0", "0"},           // seq 0 is no sequence number
           {"zmk.replay", "", "t", "1", "0", "0"},            // empty publisher
           {"zmk.replay", "p", "t", "9", "3", "0"},           // start after to
           {"zmk.replay", "p", "t", "@x", "0", "0"},          // a time that is not a number
           {"zmk.cursor"},                                    // no name
           {"zmk.cursor", std::string(256, 'n')},             // name too long
       }) {
    test::send_raw(dealer, request);
    std::vector<zmq::message_t> reply;
    REQUIRE(zmq::recv_multipart(dealer, std::back_inserter(reply)));
    REQUIRE(reply.size() == 3);
    CHECK(test::bytes(reply[0]) == "zmk.error");
    CHECK(test::bytes(reply[1]) == request[0]);
  }
  // Acknowledgements get no reply: counted only.
  test::send_raw(dealer, {"zmk.ack", "name", "p", "t"});
  test::send_raw(dealer, {"zmk.ack", "name", "p", "t", "zero"});
  REQUIRE(test::wait_until([&] { return s.fwd.stats().bad_replay_requests == before + 10; }));
  // Still serving: a well-formed request of an unknown stream is answered (nothing held, the range lost).
  test::send_raw(dealer, {"zmk.replay", "p", "t", "1", "5", "0"});
  std::vector<zmq::message_t> reply;
  REQUIRE(zmq::recv_multipart(dealer, std::back_inserter(reply)));
  REQUIRE(reply.size() == 4);
  CHECK(test::bytes(reply[0]) == "zmk.replay");
  const auto head = msgpack::unpack(static_cast<const char*>(reply[3].data()), reply[3].size());
  const auto m = head.get().as<std::map<std::string, msgpack::object>>();
  CHECK(m.at("end").as<bool>());
  CHECK(m.at("next").as<std::uint64_t>() == 6);
  CHECK(m.at("lost").as<std::vector<std::vector<std::uint64_t>>>() == std::vector<std::vector<std::uint64_t>>{{1, 5}});
}

TEST_CASE("a store that is not a forwarder store is refused, naming the path") {
  zmq::context_t ctx;
  test::temp_dir dir;
  std::ofstream(dir / "data.mdb") << std::string(10000, 'x');
  try {
    pubsub::forwarder fwd(ctx, {.frontend = test::unique_inproc("in"),
                                .backend = test::unique_inproc("out"),
                                .snapshot_endpoint = test::unique_inproc("replay"),
                                .store_dir = dir.path().string()});
    FAIL("opened a corrupt store");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == errc::bad_config);
    CHECK(std::string(e.what()).find(dir.path().string()) != std::string::npos);
  }
  CHECK_THROWS_AS(pubsub::forwarder(ctx, {.frontend = test::unique_inproc("in"),
                                          .backend = test::unique_inproc("out"),
                                          .store_dir = dir.path().string()}),
                  zmqkit::error);  // a store needs the snapshot endpoint
}
