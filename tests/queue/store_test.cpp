// The queue device's durable store (patterns/queue/store.hpp): what is written
// comes back after a reopen, in order; a full map refuses new requests without
// breaking the store; a store that fails its checks is refused naming its path.
#include "../../patterns/queue/store.hpp"

#include <doctest/doctest.h>
#include <lmdb.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>
#include <zmqkit/error.hpp>

using zmqkit::queue::store_sync;
using zmqkit::queue::detail::request_store;
using zmqkit::queue::detail::store_options;
using zmqkit::queue::detail::stored_reply;
using zmqkit::queue::detail::stored_request;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string t = (std::filesystem::temp_directory_path() / "zmqkit-store-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()));
    path = t;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string store() const { return (path / "store").string(); }
};

struct loaded {
  std::vector<stored_request> requests;
  std::vector<stored_reply> replies;
};

loaded load(request_store& s) {
  loaded out;
  s.load([&](stored_request&& r) { out.requests.push_back(std::move(r)); },
         [&](stored_reply&& r) { out.replies.push_back(std::move(r)); });
  return out;
}

std::uint64_t put(request_store& s, const std::string& body) {
  std::string why;
  return s.put_request({"client-1"}, body, "", why);
}

std::string error_of(const store_options& o) {
  try {
    request_store s(o);
  } catch (const zmqkit::error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("store: requests and replies come back after a reopen, in order, completed ones gone") {
  for (const store_sync sync : {store_sync::always, store_sync::batch, store_sync::none}) {
    temp_dir t;
    const std::string id(16, 'i');
    {
      request_store s({.dir = t.store(), .sync = sync});
      CHECK(load(s).requests.empty());
      std::string why;
      const auto a = put(s, "first"), c = put(s, "third");
      const auto b = s.put_request({"client-2"}, "second", "owner-key", why);
      REQUIRE((a && b && c));
      s.delivered(c, 2);
      const std::string_view reply = "the reply";
      s.complete(b, id, &reply);
      CHECK(s.flush());
      CHECK_FALSE(s.uncommitted());
    }
    request_store s({.dir = t.store(), .sync = sync});
    const loaded l = load(s);
    REQUIRE(l.requests.size() == 2);
    CHECK(l.requests[0].body == "first");
    CHECK(l.requests[0].route == std::vector<std::string>{"client-1"});
    CHECK(l.requests[0].deliveries == 0);
    CHECK(l.requests[1].body == "third");
    CHECK(l.requests[1].deliveries == 2);
    REQUIRE(l.replies.size() == 1);
    CHECK(l.replies[0].id == id);
    CHECK(l.replies[0].owner == "owner-key");
    CHECK(l.replies[0].reply == "the reply");
    CHECK(put(s, "fourth") > l.requests[1].seq);  // numbering continues past what is stored
  }
}

TEST_CASE("store: batch writes wait for flush(), which makes them durable") {
  temp_dir t;
  request_store s({.dir = t.store(), .sync = store_sync::batch});
  REQUIRE(put(s, "x"));
  CHECK(s.uncommitted());
  CHECK(s.flush());
  CHECK_FALSE(s.uncommitted());
  CHECK(s.counters().syncs == 1);
}

TEST_CASE("store: past max_bytes, and when LMDB's map is full, new requests are refused; the store stays whole") {
  temp_dir t;
  const std::string body(10000, 'b');
  std::vector<std::uint64_t> accepted;
  {
    request_store s({.dir = t.store(), .sync = store_sync::batch, .max_bytes = 50000});
    std::string why;
    for (int i = 0; i < 10; ++i)
      if (const auto seq = s.put_request({"c"}, body, "", why)) accepted.push_back(seq);
    CHECK(accepted.size() == 4);
    CHECK(why.find("bytes of requests stored") != std::string::npos);
    s.complete(accepted.front(), {}, nullptr);
    accepted.erase(accepted.begin());
    CHECK(s.put_request({"c"}, body, "", why) != 0);  // room again
    CHECK(s.flush());
  }
  temp_dir small;
  std::size_t stored = 0;
  {
    // A map far smaller than max_bytes: LMDB's MDB_MAP_FULL is what refuses.
    request_store s({.dir = small.store(), .sync = store_sync::batch, .max_bytes = 1 << 30, .map_bytes = 256 << 10});
    std::string why, last_why;
    for (int i = 0; i < 100; ++i) {
      if (s.put_request({"c"}, body, "", why)) ++stored;
      else last_why = why;
      if (i % 7 == 0) CHECK(s.flush());  // commits keep working around the refusals
    }
    CHECK(stored > 0);
    CHECK(stored < 100);
    CHECK(last_why.find("full") != std::string::npos);
    CHECK(s.counters().errors > 0);
    CHECK(s.flush());
  }
  request_store s({.dir = small.store(), .sync = store_sync::batch, .max_bytes = 1 << 30, .map_bytes = 256 << 10});
  CHECK(load(s).requests.size() == stored);
}

TEST_CASE("store: a store that fails its checks is refused, naming the path and the problem") {
  temp_dir t;
  { request_store s({.dir = t.store()}); }
  SUBCASE("in use by another device") {
    request_store first({.dir = t.store()});
    const std::string e = error_of({.dir = t.store()});
    CHECK(e.find(t.store()) != std::string::npos);
    CHECK(e.find("in use") != std::string::npos);
  }
  SUBCASE("another format's version record") {
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 8);
    REQUIRE(mdb_env_open(env, t.store().c_str(), MDB_NOLOCK, 0600) == 0);
    MDB_txn* txn = nullptr;
    MDB_dbi meta;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    REQUIRE(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
    std::string k = "format", v = "zmqkit-queue-store/99";
    MDB_val key{k.size(), k.data()}, val{v.size(), v.data()};
    REQUIRE(mdb_put(txn, meta, &key, &val, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    const std::string e = error_of({.dir = t.store()});
    CHECK(e.find(t.store()) != std::string::npos);
    CHECK(e.find("zmqkit-queue-store/99") != std::string::npos);
  }
  SUBCASE("another program's LMDB store") {
    temp_dir other;
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_open(env, other.path.c_str(), MDB_NOLOCK, 0600) == 0);
    MDB_txn* txn = nullptr;
    MDB_dbi main_db;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    REQUIRE(mdb_dbi_open(txn, nullptr, 0, &main_db) == 0);
    std::string k = "user:1", v = "someone else's data";
    MDB_val key{k.size(), k.data()}, val{v.size(), v.data()};
    REQUIRE(mdb_put(txn, main_db, &key, &val, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    const std::string e = error_of({.dir = other.path.string()});
    CHECK(e.find(other.path.string()) != std::string::npos);
    CHECK(e.find("version record") != std::string::npos);
  }
  SUBCASE("a truncated data file") {
    std::filesystem::resize_file(t.path / "store" / "data.mdb", 4096);
    const std::string e = error_of({.dir = t.store()});
    CHECK(e.find("data.mdb") != std::string::npos);
  }
}

// --- the device with a store, driven through the reqrep client ----------------
#include <zmqkit/reqrep/client.hpp>

#include "queue_support.hpp"

using namespace std::chrono_literals;

TEST_CASE("device store: submit() returns once stored; a clean restart queues it again; collect() gets the reply") {
  temp_dir t;
  zmqkit::queue::device_options o;
  o.store = t.store();
  o.store_sync_policy = store_sync::always;
  zmqkit::message_id id;
  {
    zmqkit::test::device_fixture d(o);
    zmqkit::reqrep::client c(d.ctx, d.frontend(), {.retry = {.timeout = 2000ms, .retries = 2}});
    auto ack = c.submit(zmqkit::make_envelope("titanic.job", std::string("work")));
    REQUIRE(ack.ok());
    CHECK(ack.reply().type == zmqkit::stored_type);
    id = *ack.reply().correlation_id;
    CHECK(d.stats().stored == 1);
    CHECK(d.stats().acked == 1);
  }  // stopped with the request still queued (answered 'unavailable', kept in the store)
  o.frontend = o.backend = {};
  zmqkit::test::device_fixture d(o);
  CHECK(d.stats().recovered == 1);
  CHECK(d.stats().pending == 1);
  zmq::context_t& ctx = d.ctx;
  zmqkit::test::raw_worker w(ctx, d.backend());
  auto req = w.request();
  REQUIRE(req.size() >= 2);
  CHECK(zmqkit::decode(req.back()).id == id);
  w.reply_to(req);
  REQUIRE(d.wait_stats([](const auto& s) { return s.replied == 1; }));
  zmqkit::reqrep::client c(ctx, d.frontend(), {.retry = {.timeout = 2000ms, .retries = 2}});
  CHECK_THROWS_AS(c.collect(id), zmqkit::error);  // not submitted by this client
  auto again = zmqkit::make_envelope("titanic.job", std::string("work"));
  again.id = id;
  auto r = c.collect(again);
  REQUIRE(r.ok());
  CHECK(r.reply().type == "test.reply");
  CHECK(d.stats().answered_from_cache == 1);
  CHECK_FALSE(w.receives_request_within(100ms));  // not executed again
}

TEST_CASE("device store: a stored-acknowledged request waits past the no-service time for a worker, also after a restart") {
  temp_dir t;
  zmqkit::queue::device_options o{.heartbeat = std::chrono::hours(1), .no_service = 5s};
  o.store = t.store();
  auto acked = zmqkit::make_envelope("titanic.lonely", std::string("work"));
  acked.headers.emplace(std::string(zmqkit::header::ack), "stored");
  const auto plain = zmqkit::make_envelope("titanic.lonely", std::string("asks and waits"));
  {
    zmqkit::test::device_fixture d(o);
    zmqkit::test::raw_client c(d.ctx, d.frontend());
    c.send(acked);
    auto ack = c.receive_envelope();
    REQUIRE(ack);
    CHECK(ack->type == zmqkit::stored_type);
    c.send(plain);
    REQUIRE(d.wait_pending(2));
    d.clock.advance(6s);  // past the no-service time: only the unacknowledged one is answered
    auto answer = c.receive_envelope();
    REQUIRE(answer);
    CHECK(answer->correlation_id == plain.id);
    CHECK(zmqkit::test::error_of(answer) == "no-service");
    CHECK(d.stats().pending == 1);
  }
  o.frontend = o.backend = {};
  zmqkit::test::device_fixture d(o);  // recovered: still exempt
  REQUIRE(d.stats().recovered == 1);
  d.clock.advance(60s);
  CHECK_FALSE(zmqkit::test::wait_until([&] { return d.stats().pending == 0; }, 50ms));
  zmqkit::test::raw_worker w(d.ctx, d.backend());
  auto req = w.request();
  REQUIRE(req.size() >= 2);
  CHECK(zmqkit::decode(req.back()).id == acked.id);
}

TEST_CASE("client submit(): the request carries zmk.ack = stored and no TTL of the retry budget's") {
  zmq::context_t ctx;
  zmq::socket_t router = zmqkit::test::test_socket(ctx, zmq::socket_type::router);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::optional<zmqkit::envelope> seen;
  std::thread server([&] {
    auto frames = zmqkit::test::recv_all(router);
    if (frames.size() != 3) return;
    seen = zmqkit::decode(frames[2]);
    auto ack = zmqkit::make_envelope(std::string(zmqkit::stored_type));
    ack.correlation_id = seen->id;
    router.send(frames[0], zmq::send_flags::sndmore);
    router.send(zmq::message_t{}, zmq::send_flags::sndmore);
    router.send(zmqkit::encode(ack), zmq::send_flags::none);
  });
  zmqkit::reqrep::client c(ctx, endpoint, {.retry = {.timeout = 2000ms, .retries = 1}});
  const auto r = c.submit(zmqkit::make_envelope("titanic.job", std::string("work")));
  server.join();
  REQUIRE(seen);
  CHECK(seen->header(zmqkit::header::ack) == "stored");
  CHECK(seen->ttl.count() == 0);  // a plain request() would carry the retry budget (expire_when_abandoned)
  REQUIRE(r.ok());
  CHECK(r.reply().type == zmqkit::stored_type);
}
