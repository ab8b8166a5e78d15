// The worker against a small in-test Paranoid Pirate queue: a ROUTER that
// reads READY/HEARTBEAT/DISCONNECT and hands requests over as
// [worker id, client id, empty, body]. Heartbeats, liveness and the reconnect
// backoff run on a manual clock that the test advances.
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>
#include <zmqkit/queue/device.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;
using namespace zmqkit::reqrep;
using zmqkit::test::frames;

namespace {

struct pp_queue {
  zmq::context_t& ctx;
  zmq::socket_t socket;
  std::string endpoint;
  zmq::message_t worker_id;

  explicit pp_queue(zmq::context_t& c, const std::string& ep = "tcp://127.0.0.1:*")
      : ctx(c), socket(test::test_socket(c, zmq::socket_type::router)) {
    socket.bind(ep);
    endpoint = socket.get(zmq::sockopt::last_endpoint);
  }
  // Next message from the worker, driving the worker's loop meanwhile. Heartbeats are
  // skipped unless asked for.
  frames next(worker& w, bool skip_heartbeats = true) {
    std::optional<frames> got;
    REQUIRE(test::wait_until([&] {
      w.poll(0ms);
      got = test::try_recv_frames(socket);
      if (got && skip_heartbeats && got->size() == 2 && got->at(1).size() == 1 &&
          *got->at(1).data<std::uint8_t>() == control::heartbeat)
        got.reset();
      return got.has_value();
    }));
    worker_id = test::copy_of(got->at(0));
    return std::move(*got);
  }
  void dispatch(std::string_view client_id, const zmq::message_t& body) {
    frames f;
    f.push_back(test::copy_of(worker_id));
    f.emplace_back(client_id.data(), client_id.size());
    f.emplace_back();
    f.push_back(test::copy_of(body));
    test::send_frames(socket, f);
  }
  void heartbeat() {
    frames f;
    f.push_back(test::copy_of(worker_id));
    f.push_back(test::byte_frame(control::heartbeat));
    test::send_frames(socket, f);
  }
};

bool is_control(const frames& f, std::uint8_t code) {
  return f.size() >= 2 && f[1].size() == 1 && *f[1].data<std::uint8_t>() == code;
}

envelope echo(const envelope& req) {
  envelope reply = make_reply(req, "echo.reply");
  reply.body = req.body;
  return reply;
}

}  // namespace

TEST_CASE("worker: READY, then a request comes back with the same leading frames") {
  zmq::context_t ctx;
  manual_clock clock;
  pp_queue queue(ctx);
  worker w(ctx, queue.endpoint, echo, {.clock = &clock});
  const frames ready = queue.next(w);
  REQUIRE(ready.size() == 2);
  CHECK(is_control(ready, control::ready));

  const envelope req = make_envelope("echo", std::string("hi"));
  queue.dispatch("client-7", encode(req));
  const frames reply = queue.next(w);
  REQUIRE(reply.size() == 4);
  CHECK(reply[1].to_string() == "client-7");
  CHECK(reply[2].size() == 0);
  const envelope got = decode(reply[3]);
  CHECK(got.correlation_id == req.id);
  CHECK(got.body_as<std::string>() == "hi");
}

TEST_CASE("worker: READY carries the served type prefixes as a msgpack array") {
  zmq::context_t ctx;
  pp_queue queue(ctx);
  worker w(ctx, queue.endpoint, echo, {.services = {"price.", "stock."}});
  const frames ready = queue.next(w);
  REQUIRE(ready.size() == 3);
  CHECK(is_control(ready, control::ready));
  const auto handle = msgpack::unpack(ready[2].data<char>(), ready[2].size());
  CHECK(handle.get().as<std::vector<std::string>>() == std::vector<std::string>{"price.", "stock."});
}

TEST_CASE("worker: heartbeats every interval, also while its handler is busy") {
  zmq::context_t ctx;
  manual_clock clock;
  pp_queue queue(ctx);
  std::atomic<bool> release{false};
  std::atomic<bool> running{false};
  worker w(ctx, queue.endpoint,
           [&](const envelope& req) {
             running = true;
             release.wait(false);
             return make_reply(req, "done");
           },
           {.heartbeat_interval = 1s, .clock = &clock});
  test::release_on_exit guard{release};  // a failed REQUIRE must not leave the handler blocked
  queue.next(w);                         // READY
  queue.dispatch("c", encode(make_envelope("slow")));
  REQUIRE(test::wait_until([&] {
    w.poll(0ms);
    return running.load();
  }));
  for (int i = 0; i < 3; ++i) {
    queue.heartbeat();  // the queue is alive too, so the worker keeps its socket
    clock.advance(1s);
    CHECK(is_control(queue.next(w, false), control::heartbeat));
  }
  release = true;
  release.notify_all();
  const frames reply = queue.next(w);
  REQUIRE(reply.size() == 4);
  CHECK(decode(reply[3]).type == "done");
  CHECK(w.stats().reconnects == 0);
}

TEST_CASE(
    "worker: a dead queue is detected after liveness x interval; it reconnects with backoff and READYs "
    "again") {
  zmq::context_t ctx;
  manual_clock clock;
  auto queue = std::make_unique<pp_queue>(ctx);
  const std::string endpoint = queue->endpoint;
  worker w(ctx, endpoint, echo, {.heartbeat_interval = 1s, .liveness = 3, .clock = &clock});
  queue->next(w);  // READY
  queue.reset();   // the queue goes away

  auto poll_a_bit = [&] {
    for (int i = 0; i < 5; ++i) w.poll(1ms);
  };
  clock.advance(2999ms);
  poll_a_bit();
  CHECK(w.connected());
  clock.advance(1ms);
  poll_a_bit();
  CHECK_FALSE(w.connected());  // dead: waits 1 s before reconnecting
  CHECK(w.stats().reconnects == 1);
  clock.advance(999ms);
  poll_a_bit();
  CHECK_FALSE(w.connected());
  clock.advance(1ms);
  poll_a_bit();
  CHECK(w.connected());

  // Nobody answers this time either: the next wait doubles to 2 s.
  clock.advance(3s);
  poll_a_bit();
  CHECK_FALSE(w.connected());
  clock.advance(1999ms);
  poll_a_bit();
  CHECK_FALSE(w.connected());
  clock.advance(1ms);
  poll_a_bit();
  CHECK(w.connected());

  // The queue restarts on the same endpoint: the worker says READY again and serves.
  pp_queue restarted(ctx, endpoint);
  CHECK(is_control(restarted.next(w), control::ready));
  const envelope req = make_envelope("echo", std::string("again"));
  restarted.dispatch("c2", encode(req));
  const frames reply = restarted.next(w);
  REQUIRE(reply.size() == 4);
  CHECK(decode(reply[3]).correlation_id == req.id);
  CHECK(w.stats().reconnects == 2);
}

TEST_CASE("worker: a handler exception becomes an error reply") {
  zmq::context_t ctx;
  pp_queue queue(ctx);
  worker w(ctx, queue.endpoint, [](const envelope& req) -> envelope {
    if (req.type == "chosen") throw handler_error("out-of-stock", "sku 42");
    throw std::invalid_argument("quantity must be positive");
  });
  queue.next(w);
  auto ask = [&](const envelope& req) {
    queue.dispatch("c", encode(req));
    const frames reply = queue.next(w);
    REQUIRE(reply.size() == 4);
    const envelope got = decode(reply[3]);
    CHECK(got.correlation_id == req.id);
    return got;
  };
  const envelope a = ask(make_envelope("order"));
  CHECK(a.error_code() == "internal");
  CHECK(a.header(header::reason) == "quantity must be positive");
  const envelope b = ask(make_envelope("chosen"));
  CHECK(b.error_code() == "out-of-stock");
  CHECK(w.stats().handler_errors == 2);
  // Still serving afterwards.
  queue.dispatch("c", zmq::message_t("\x93\x01\x02\x03", 4));  // a complete array, not an envelope
  const frames bad = queue.next(w);
  REQUIRE(bad.size() == 4);
  CHECK(decode(bad[3]).error_code() == "bad-request");
}

TEST_CASE("worker: plain Paranoid Pirate bodies pass through to the plain handler") {
  zmq::context_t ctx;
  pp_queue queue(ctx);
  worker w(ctx, queue.endpoint, echo,
           {.plain = [](std::string_view body) { return std::string(body) + "!"; }});
  const frames ready = queue.next(w);
  CHECK(ready.size() == 2);  // a plain PP queue sees a one-frame READY
  queue.dispatch("guide-client", zmq::message_t(std::string_view("hello")));
  const frames reply = queue.next(w);
  REQUIRE(reply.size() == 4);
  CHECK(reply[1].to_string() == "guide-client");
  CHECK(reply[3].to_string() == "hello!");
}

TEST_CASE("worker: stop() sends DISCONNECT") {
  zmq::context_t ctx;
  pp_queue queue(ctx);
  worker w(ctx, queue.endpoint, echo);
  queue.next(w);
  w.stop();
  CHECK_FALSE(w.connected());
  std::optional<frames> got;
  REQUIRE(test::wait_until([&] {
    got = test::try_recv_frames(queue.socket);
    return got && is_control(*got, control::disconnect);
  }));
}

TEST_CASE("worker: stop() waits for the running handler, sends its reply, then DISCONNECT") {
  zmq::context_t ctx;
  pp_queue queue(ctx);
  std::atomic<bool> started{false}, finished{false};
  worker w(ctx, queue.endpoint, [&](const envelope& req) {
    started = true;
    std::this_thread::sleep_for(100ms);  // the work itself
    finished = true;
    return echo(req);
  });
  queue.next(w);  // READY
  const envelope req = make_envelope("slow", std::string("x"));
  queue.dispatch("c", encode(req));
  REQUIRE(test::wait_until([&] {
    w.poll(1ms);
    return started.load();
  }));
  w.stop();
  CHECK(finished);  // joined: the handler thread is done when stop() returns
  std::optional<frames> reply, bye;
  REQUIRE(test::wait_until([&] {
    while (auto f = test::try_recv_frames(queue.socket)) {
      if (is_control(*f, control::disconnect)) bye = std::move(f);
      else if (f->size() == 4 && !reply) reply = std::move(f);
    }
    return reply && bye;
  }));
  CHECK(decode(reply->at(3)).correlation_id == req.id);
}

TEST_CASE("worker: capacity > 1 announces READY's map form; capacity 1 keeps the original forms") {
  zmq::context_t ctx;
  pp_queue queue(ctx);
  SUBCASE("capacity and services") {
    worker w(ctx, queue.endpoint, echo, {.services = {"price."}, .capacity = 8});
    const frames ready = queue.next(w);
    REQUIRE(ready.size() == 3);
    CHECK(is_control(ready, control::ready));
    const auto handle = msgpack::unpack(ready[2].data<char>(), ready[2].size());
    const auto m = handle.get().as<std::map<std::string, msgpack::object>>();
    CHECK(m.size() == 2);
    CHECK(m.at("capacity").as<int>() == 8);
    CHECK(m.at("prefixes").as<std::vector<std::string>>() == std::vector<std::string>{"price."});
  }
  SUBCASE("capacity alone") {
    worker w(ctx, queue.endpoint, echo, {.capacity = 2});
    const frames ready = queue.next(w);
    REQUIRE(ready.size() == 3);
    const auto handle = msgpack::unpack(ready[2].data<char>(), ready[2].size());
    const auto m = handle.get().as<std::map<std::string, msgpack::object>>();
    CHECK(m.size() == 1);
    CHECK(m.at("capacity").as<int>() == 2);
  }
  SUBCASE("capacity 1: bare READY") {
    worker w(ctx, queue.endpoint, echo, {.capacity = 1});
    CHECK(queue.next(w).size() == 2);
  }
  SUBCASE("out of range") {
    for (std::uint32_t bad : {0u, 1025u}) {
      CAPTURE(bad);
      try {
        worker w(ctx, queue.endpoint, echo, {.capacity = bad});
        FAIL("accepted");
      } catch (const zmqkit::error& e) {
        CHECK(e.code() == errc::bad_config);
      }
    }
  }
}

TEST_CASE(
    "worker: behind the real queue device, capacity N queues N requests at the worker, run one at a time") {
  zmq::context_t ctx;
  queue::device dev(
      ctx, {.frontend = test::unique_inproc("cap-front"), .backend = test::unique_inproc("cap-back")});
  std::thread device_thread([&] { dev.run(); });

  std::uint32_t capacity = 1;
  SUBCASE("capacity 3") { capacity = 3; }
  SUBCASE("capacity 1 (default)") { capacity = 1; }
  CAPTURE(capacity);

  std::atomic<bool> release{false};
  std::atomic<int> running{0}, most_at_once{0};
  std::jthread worker_thread([&](std::stop_token st) {
    worker w(ctx, dev.backend_endpoint(),
             [&](const envelope& req) {
               const int now = ++running;
               int seen = most_at_once.load();
               while (now > seen && !most_at_once.compare_exchange_weak(seen, now)) {
               }
               test::wait_until([&] { return release.load(); }, 10s);
               --running;
               return echo(req);
             },
             {.capacity = capacity});
    w.run(st);
  });
  test::release_on_exit guard{release};  // destroyed first: a failed REQUIRE must not leave handlers blocked

  zmq::socket_t client = test::test_socket(ctx, zmq::socket_type::dealer);
  client.connect(dev.frontend_endpoint());
  REQUIRE(test::wait_until([&] { return dev.stats().worker_capacity == capacity; }));
  std::set<message_id> sent;
  for (int i = 0; i < 5; ++i) {
    const envelope req = make_envelope("job", std::string("n") + std::to_string(i));
    sent.insert(req.id);
    client.send(zmq::message_t(), zmq::send_flags::sndmore);
    client.send(encode(req), zmq::send_flags::none);
  }
  // The device hands the worker exactly `capacity` requests; the rest wait at the device.
  REQUIRE(test::wait_until([&] {
    const auto s = dev.stats();
    return s.in_flight == capacity && s.pending == 5 - capacity && s.workers_busy == 1 && running == 1;
  }));
  CHECK_FALSE(test::wait_until([&] { return dev.stats().in_flight > capacity; }, 50ms));

  release = true;
  std::set<message_id> answered;
  for (int i = 0; i < 5; ++i) {
    const auto reply = test::recv_frames(client);
    REQUIRE(reply);
    REQUIRE(reply->size() == 2);
    answered.insert(*decode(reply->at(1)).correlation_id);
  }
  CHECK(answered == sent);
  CHECK(most_at_once == 1);  // capacity queues requests; it does not run them concurrently
  const auto s = dev.stats();
  CHECK(s.replied == 5);
  CHECK(s.requeued == 0);
  CHECK(s.dropped.empty());

  worker_thread.request_stop();
  worker_thread.join();
  dev.stop();
  device_thread.join();
}
