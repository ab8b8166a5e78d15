// The queue device against hostile peers: hash flooding, backlogs, worker
// registrations and byte bounds (issue 11). Raw cppzmq peers over inproc.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <set>

#include <zmqkit/metrics.hpp>

#include "queue_support.hpp"
#include <zmqkit/internal/reply_store.hpp>

using namespace zmqkit;
using namespace zmqkit::test;
using namespace std::chrono_literals;

namespace {

queue::device_options quiet() { return {.heartbeat = std::chrono::hours(1)}; }

// Inverts x ^= x >> shift.
std::uint64_t undo_xorshift(std::uint64_t y, int shift) {
  std::uint64_t x = y;
  for (int i = 0; i < 64 / shift + 1; ++i) x = y ^ (x >> shift);
  return x;
}

// std::hash<message_id> as it was before it was keyed: a fixed mix an attacker can invert.
std::uint64_t unkeyed_hash(const message_id& id) {
  std::uint64_t lo, hi;
  std::memcpy(&hi, id.bytes.data(), 8);
  std::memcpy(&lo, id.bytes.data() + 8, 8);
  std::uint64_t x = lo ^ (hi * 0x9e3779b97f4a7c15ULL);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return x;
}

// Returns: `n` distinct ids whose unkeyed hash is the same value:
// every one lands in the same bucket of an unkeyed table, whatever its size.
std::vector<message_id> ids_colliding_under_std_hash(std::size_t n) {
  constexpr std::uint64_t golden = 0x9e3779b97f4a7c15ULL, mul = 0xbf58476d1ce4e5b9ULL;
  std::uint64_t mul_inverse = mul;  // Newton's iteration for the inverse mod 2^64
  for (int i = 0; i < 6; ++i) mul_inverse *= 2 - mul * mul_inverse;
  const std::uint64_t target = 0x5eed5eed5eed5eedULL;
  const std::uint64_t mixed = undo_xorshift(undo_xorshift(target, 29) * mul_inverse, 31);
  std::vector<message_id> out;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t hi = 0x0190000000000000ULL + i * 0x10000ULL;
    const std::uint64_t lo = mixed ^ (hi * golden);
    message_id id;
    std::memcpy(id.bytes.data(), &hi, 8);
    std::memcpy(id.bytes.data() + 8, &lo, 8);
    out.push_back(id);
  }
  return out;
}

// Returns: how long the device took to queue one request per id (no worker serves their type).
std::chrono::duration<double> time_to_queue(const std::vector<message_id>& ids) {
  queue::device_options o = quiet();
  o.max_pending = ids.size() + 1;
  o.max_pending_per_type = ids.size() + 1;
  o.no_service = std::chrono::hours(1);
  device_fixture fx(o);
  zmq::socket_t c = test_socket(fx.ctx, zmq::socket_type::dealer, 30000ms);
  c.set(zmq::sockopt::sndhwm, 0);
  c.connect(fx.frontend());
  std::vector<zmq::message_t> bodies;
  for (const auto& id : ids) {
    envelope e = request("nobody.serves.this");
    e.id = id;
    bodies.push_back(encode(e));
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& b : bodies) {
    c.send(zmq::message_t{}, zmq::send_flags::sndmore);
    c.send(std::move(b), zmq::send_flags::none);
  }
  REQUIRE(fx.wait_stats([&](const queue::device_stats& s) { return s.pending == ids.size(); }, 60000ms));
  return std::chrono::steady_clock::now() - start;
}

}  // namespace

TEST_CASE("ids crafted to collide under std::hash cost the device no more than random ids") {
  constexpr std::size_t n = 20000;
  const auto crafted = ids_colliding_under_std_hash(n);
  for (const auto& id : crafted) REQUIRE(unkeyed_hash(id) == unkeyed_hash(crafted[0]));
  // std::hash<message_id> is keyed now: the crafted ids no longer share a value.
  std::set<std::size_t> keyed;
  for (std::size_t i = 0; i < 64; ++i) keyed.insert(std::hash<message_id>{}(crafted[i]));
  CHECK(keyed.size() > 60);
  std::vector<message_id> random;
  for (std::size_t i = 0; i < n; ++i) random.push_back(message_id::generate());
  const auto t_random = time_to_queue(random);
  const auto t_crafted = time_to_queue(crafted);
  MESSAGE("random ids: " << t_random.count() << " s, crafted ids: " << t_crafted.count() << " s");
  // Unkeyed, every crafted id scans all the others: ~25 times the random cost at this n.
  CHECK(t_crafted.count() < 4 * t_random.count() + 0.5);
}

TEST_CASE("the reply store (the reqrep server's cache) takes crafted ids as fast as random ones") {
  constexpr std::size_t n = 20000;
  auto time_to_insert = [](const std::vector<message_id>& ids) {
    internal::reply_store cache({.max_entries = ids.size(), .max_age = std::chrono::hours(1)});
    const zmq::message_t reply(std::string("r"));
    const auto start = std::chrono::steady_clock::now();
    for (const auto& id : ids) cache.insert(id, reply, steady_time{});
    for (const auto& id : ids) REQUIRE(cache.find(id, steady_time{}));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start);
  };
  std::vector<message_id> random;
  for (std::size_t i = 0; i < n; ++i) random.push_back(message_id::generate());
  const auto t_random = time_to_insert(random);
  const auto t_crafted = time_to_insert(ids_colliding_under_std_hash(n));
  MESSAGE("random ids: " << t_random.count() << " s, crafted ids: " << t_crafted.count() << " s");
  CHECK(t_crafted.count() < 4 * t_random.count() + 0.2);
}

TEST_CASE("a full backlog for a type nobody serves does not refuse a type with an idle worker") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_pending = 200, .no_service = std::chrono::hours(1)});
  raw_worker w(fx.ctx, fx.backend(), {"good."});
  REQUIRE(fx.wait_ready(1));
  raw_client attacker(fx.ctx, fx.frontend());
  for (int i = 0; i < 300; ++i) attacker.send(request("nobody.serves.this"));
  REQUIRE(fx.wait_stats([](const auto& s) { return s.received == 300; }));
  raw_client client(fx.ctx, fx.frontend());
  const envelope req = request("good.work");
  client.send(req);
  auto at_worker = w.request();
  REQUIRE(at_worker.size() == 3);
  w.reply_to(at_worker);
  auto got = client.receive_envelope();
  REQUIRE(got);
  CHECK(error_of(got) == "(not an error)");
  CHECK(got->correlation_id == req.id);
}

TEST_CASE("past max-pending-per-type, new requests of that type are overloaded; other types still wait") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_pending = 1000, .max_pending_per_type = 100,
                     .no_service = std::chrono::hours(1)});
  raw_worker w(fx.ctx, fx.backend(), {"good."});
  REQUIRE(fx.wait_ready(1));
  raw_client client(fx.ctx, fx.frontend());
  client.send(request("good.first"));  // keeps the only worker busy
  REQUIRE(w.request().size() == 3);
  raw_client attacker(fx.ctx, fx.frontend());
  for (int i = 0; i < 500; ++i) attacker.send(request("nobody.serves.this"));
  for (int i = 0; i < 400; ++i) REQUIRE(error_of(attacker.receive_envelope()) == "overloaded");
  CHECK(fx.stats().pending == 100);
  CHECK(fx.stats().rejected.at("overloaded") == 400);
  // The served type is busy, not full: its requests wait instead of being refused.
  for (int i = 0; i < 50; ++i) client.send(request("good.more"));
  REQUIRE(fx.wait_pending(150));
  CHECK(fx.stats().rejected.at("overloaded") == 400);
}

namespace {
// Sends one request for each of `n` distinct types nobody serves; waits until all wait.
void queue_distinct_types(device_fixture& fx, std::size_t n) {
  zmq::socket_t c = test_socket(fx.ctx, zmq::socket_type::dealer, 30000ms);
  c.set(zmq::sockopt::sndhwm, 0);
  c.connect(fx.frontend());
  for (std::size_t i = 0; i < n; ++i) {
    c.send(zmq::message_t{}, zmq::send_flags::sndmore);
    c.send(encode(request("nobody." + std::to_string(i))), zmq::send_flags::none);
  }
  REQUIRE(fx.wait_stats([&](const auto& s) { return s.pending >= n; }, 60000ms));
}
}  // namespace

TEST_CASE("stats and /metrics list the longest backlogs and '(other)', not every one of 70 000 types") {
  constexpr std::size_t types = 70000;
  device_fixture fx({.heartbeat = std::chrono::hours(1), .no_service = std::chrono::hours(1)});
  raw_client big(fx.ctx, fx.frontend());
  for (int i = 0; i < 5; ++i) big.send(request("big.backlog"));
  big.send(zmq::message_t(std::string("a plain body")));
  queue_distinct_types(fx, types);
  REQUIRE(fx.wait_pending(types + 6));
  const auto s = fx.stats();
  CHECK(s.pending_by_type.size() <= 102);
  CHECK(s.pending_by_type.at("big.backlog") == 5);
  std::size_t sum = 0;
  for (const auto& [type, n] : s.pending_by_type) sum += n;
  CHECK(sum == s.pending);
  CHECK(s.pending_by_type.count("(other)") == 1);
  // /metrics renders what the admin endpoint sends: it must parse (main: 'map size overflow').
  const auto text = metrics::render_prometheus(metrics::parse_snapshot(queue::encode_stats(s)));
  CHECK(text.find("big.backlog") != std::string::npos);
}

TEST_CASE("stop() with 70 000 waiting types answers them all promptly") {
  constexpr std::size_t types = 70000;
  device_fixture fx({.heartbeat = std::chrono::hours(1), .no_service = std::chrono::hours(1)});
  queue_distinct_types(fx, types);
  const auto start = std::chrono::steady_clock::now();
  fx.stop();
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  MESSAGE("drain took " << took.count() << " s");
  // Scanning every type for every request (main) takes minutes here; one pass takes well under a second.
  CHECK(took.count() < 20);
  CHECK(fx.stats().rejected.at("unavailable") == types);
}

TEST_CASE("worker registrations are bounded: workers, prefixes per worker, prefix length") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_workers = 3, .max_prefixes_per_worker = 4});
  std::vector<std::unique_ptr<raw_worker>> workers;
  for (int i = 0; i < 5; ++i) workers.push_back(std::make_unique<raw_worker>(fx.ctx, fx.backend()));
  REQUIRE(fx.wait_stats([](const auto& s) { return s.dropped.count("worker-refused") && s.dropped.at("worker-refused") == 2; }));
  CHECK(fx.stats().workers_ready == 3);
  raw_worker many(fx.ctx, fx.backend(), {"a", "b", "c", "d", "e"});
  raw_worker long_prefix(fx.ctx, fx.backend(), {std::string(256, 'x')});
  REQUIRE(fx.wait_stats([](const auto& s) { return s.dropped.count("backend-frames") && s.dropped.at("backend-frames") == 2; }));
  // One leaves: a newcomer is admitted again.
  workers[0]->disconnect();
  REQUIRE(fx.wait_ready(2));
  raw_worker late(fx.ctx, fx.backend(), {"a", "b", "c", "d"});
  REQUIRE(fx.wait_ready(3));
}


TEST_CASE("by default a READY with 65 prefixes, or a prefix longer than a type, is refused") {
  device_fixture fx(quiet());
  std::vector<std::string> prefixes;
  for (int j = 0; j < 65; ++j) prefixes.push_back("p" + std::to_string(j) + ".");
  raw_worker many(fx.ctx, fx.backend(), prefixes);
  raw_worker long_prefix(fx.ctx, fx.backend(), {std::string(256, 'x')});
  prefixes.pop_back();
  raw_worker fine(fx.ctx, fx.backend(), prefixes);
  REQUIRE(fx.wait_stats([](const auto& s) { return s.workers_ready == 1 && s.dropped.count("backend-frames") && s.dropped.at("backend-frames") == 2; }));
}

namespace {
std::size_t dropped(const queue::device_stats& s, const char* reason) {
  return s.dropped.count(reason) ? s.dropped.at(reason) : 0;
}
}  // namespace

TEST_CASE("address stacks are bounded: too many frames or bytes is dropped and counted, the device serves on") {
  device_fixture fx(quiet());
  zmq::socket_t c = test_socket(fx.ctx, zmq::socket_type::dealer);
  c.connect(fx.frontend());
  auto send_with_route = [&](std::size_t frames, std::size_t frame_bytes) {
    const std::string frame(frame_bytes, 'r');
    for (std::size_t i = 0; i < frames; ++i) c.send(zmq::buffer(frame), zmq::send_flags::sndmore);
    c.send(zmq::message_t{}, zmq::send_flags::sndmore);
    c.send(encode(request("t.x")), zmq::send_flags::none);
  };
  send_with_route(200000, 1);  // 1 M in the issue; 200 k shows it and stays quick
  send_with_route(32, 1);  // with the client's identity: 33 address frames
  send_with_route(2, 5000);
  const bool all_dropped = fx.wait_stats([](const auto& s) { return dropped(s, "too-many-frames") == 1 && dropped(s, "address-stack") == 2; }, 30000ms);
  REQUIRE(all_dropped);
  CHECK(fx.stats().pending == 0);
  send_with_route(31, 255);  // 32 address frames, 7 910 bytes: within the bounds
  REQUIRE(fx.wait_pending(1));
  raw_worker w(fx.ctx, fx.backend());
  auto at_worker = w.request();
  CHECK(at_worker.size() == 1 + 31 + 1 + 1);  // the client's identity, its route, empty, body
}

TEST_CASE("the waiting room is bounded in bytes: past max-pending-bytes new requests are overloaded") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .max_pending_bytes = 100000,
                     .no_service = std::chrono::hours(1)});
  raw_client c(fx.ctx, fx.frontend());
  for (int i = 0; i < 20; ++i) c.send(make_envelope("nobody.x", std::string(10000, 'b')));
  std::size_t overloaded = 0;
  for (int i = 0; i < 11; ++i) overloaded += error_of(c.receive_envelope()) == "overloaded";
  CHECK(overloaded == 11);
  const auto s = fx.stats();
  CHECK(s.pending == 9);
  CHECK(s.pending_bytes <= 100000);
  CHECK(s.pending_bytes > 90000);
  fx.stop();
  CHECK(fx.stats().pending_bytes == 0);
}

TEST_CASE("the device's reply cache is bounded in bytes: the oldest replies go first") {
  device_fixture fx({.heartbeat = std::chrono::hours(1), .reply_cache_bytes = 50000});
  raw_worker w(fx.ctx, fx.backend());
  REQUIRE(fx.wait_ready(1));
  raw_client c(fx.ctx, fx.frontend());
  std::vector<envelope> sent;
  for (int i = 0; i < 10; ++i) {
    sent.push_back(request("t.x"));
    c.send(sent.back());
    auto req = w.request();
    REQUIRE(req.size() == 3);
    w.reply(req, encode(make_reply(decode(req.back()), "t.reply", std::string(10000, 'r'))));
    REQUIRE(c.receive_envelope());
  }
  const auto s = fx.stats();
  CHECK(s.reply_cache_size == 4);  // 4 x ~10 KB fit in 50 000 bytes, 5 do not
  CHECK(s.reply_cache_bytes <= 50000);
  c.send(sent.back());  // the newest is answered from the cache
  REQUIRE(c.receive_envelope());
  CHECK(fx.stats().answered_from_cache == 1);
  c.send(sent.front());  // the oldest was evicted: it runs again
  CHECK(w.request().size() == 3);
}

TEST_CASE("the reply store (the reqrep server's cache) is bounded in bytes, and never keeps a reply larger than the bound") {
  internal::reply_store cache({.max_entries = 100, .max_bytes = 1000, .max_age = std::chrono::hours(1)});
  std::vector<message_id> ids;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(message_id::generate());
    cache.insert(ids.back(), zmq::message_t(std::string(300, 'r')), steady_time{});
    CHECK(cache.bytes() <= 1000);
  }
  CHECK(cache.size() == 3);
  CHECK(cache.find(ids[9], steady_time{}));
  CHECK_FALSE(cache.find(ids[6], steady_time{}));
  cache.insert(message_id::generate(), zmq::message_t(std::string(1001, 'r')), steady_time{});
  CHECK(cache.size() == 3);
  CHECK(cache.bytes() == 900);
}
