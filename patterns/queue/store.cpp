#include "store.hpp"

#include <msgpack.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/internal/lmdb_env.hpp>

namespace zmqkit::queue::detail {

namespace {

enum db_index : unsigned { meta_db, requests_db, deliveries_db, replies_db, db_count };
constexpr const char* db_names[db_count] = {"meta", "requests", "deliveries", "replies"};

using internal::mdb_value;
std::string key_of(std::uint64_t n) { return internal::big_endian(n); }

std::string_view raw_of(const msgpack::object& o) {
  if (o.type == msgpack::type::BIN) return {o.via.bin.ptr, o.via.bin.size};
  if (o.type == msgpack::type::STR) return {o.via.str.ptr, o.via.str.size};
  throw std::runtime_error("a field is not bytes");
}

}  // namespace

struct request_store::lmdb : internal::lmdb_env {
  using lmdb_env::lmdb_env;
  MDB_txn* txn = nullptr;  // the open write transaction, if any
  ~lmdb() {
    if (txn) mdb_txn_abort(txn);
  }
};

void request_store::fail(const std::string& problem) const { db_->fail(problem); }

request_store::request_store(store_options opts) : opts_(std::move(opts)) {
  if (opts_.map_bytes == 0) opts_.map_bytes = 2 * (opts_.max_bytes + opts_.max_reply_bytes) + (std::size_t{64} << 20);
  // always: LMDB syncs at each commit. batch: one commit per loop turn, then one
  // sync. none: one commit per loop turn, never synced (the kernel writes back).
  db_ = std::make_unique<lmdb>(internal::lmdb_env_options{.dir = opts_.dir,
                                                          .program = "zmqkit-queue",
                                                          .format = "zmqkit-queue-store/1",
                                                          .databases = {db_names, db_names + db_count},
                                                          .map_bytes = opts_.map_bytes,
                                                          .sync_each_commit = opts_.sync == store_sync::always});
}

request_store::~request_store() { flush(); }

void request_store::load(const std::function<void(stored_request&&)>& on_request,
                         const std::function<void(stored_reply&&)>& on_reply) {
  const internal::lmdb_read read(*db_);
  MDB_txn* txn = read.get();
  auto each = [&](unsigned db, auto&& fn) {
    MDB_cursor* cur = nullptr;
    if (const int rc = mdb_cursor_open(txn, db_->db(db), &cur); rc != 0) fail(mdb_strerror(rc));
    MDB_val k{}, v{};
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      try {
        if (k.mv_size != 8) throw std::runtime_error("key is not a sequence number");
        const msgpack::object_handle h = msgpack::unpack(static_cast<const char*>(v.mv_data), v.mv_size);
        fn(internal::read_big_endian(k), h.get(), v.mv_size);
      } catch (const std::exception& e) {
        mdb_cursor_close(cur);
        fail(std::string("a record in '") + db_names[db] + "' does not decode: " + e.what());
      }
    }
    mdb_cursor_close(cur);
  };
  each(requests_db, [&](std::uint64_t seq, const msgpack::object& o, std::size_t size) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 3 || o.via.array.ptr[1].type != msgpack::type::ARRAY)
      throw std::runtime_error("not [owner, route, body]");
    stored_request r;
    r.seq = seq;
    r.owner = std::string(raw_of(o.via.array.ptr[0]));
    const auto& route = o.via.array.ptr[1].via.array;
    for (std::uint32_t i = 0; i < route.size; ++i) r.route.emplace_back(raw_of(route.ptr[i]));
    r.body = std::string(raw_of(o.via.array.ptr[2]));
    const std::string key = key_of(seq);
    MDB_val dk = mdb_value(key), dv{};
    if (mdb_get(txn, db_->db(deliveries_db), &dk, &dv) == 0 && dv.mv_size == 8)
      r.deliveries = static_cast<std::uint32_t>(internal::read_big_endian(dv));
    requests_[seq] = {size, r.owner};
    bytes_ += size;
    next_seq_ = seq + 1;
    on_request(std::move(r));
  });
  each(replies_db, [&](std::uint64_t seq, const msgpack::object& o, std::size_t size) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 3) throw std::runtime_error("not [id, owner, reply]");
    stored_reply r{std::string(raw_of(o.via.array.ptr[0])), std::string(raw_of(o.via.array.ptr[1])),
                   std::string(raw_of(o.via.array.ptr[2]))};
    replies_.emplace_back(seq, size);
    reply_bytes_ += size;
    next_reply_ = seq + 1;
    on_reply(std::move(r));
  });
  evict_replies();  // the bounds may have shrunk since it was written
}

bool request_store::begin() {
  if (db_->txn) return true;
  if (const int rc = mdb_txn_begin(db_->env(), nullptr, 0, &db_->txn); rc != 0) {
    db_->txn = nullptr;
    ++counters_.errors;
    return false;
  }
  // Writes of this turn that a failed commit or an aborted transaction undid.
  for (const op& o : turn_)
    if (!apply(o)) return false;
  return true;
}

// Returns: false when LMDB refused the write; the transaction is then aborted
// (LMDB leaves it unusable) and the error counted. A delete of nothing is done.
bool request_store::apply(const op& o) {
  MDB_val k = mdb_value(o.key), v = mdb_value(o.value);
  const int rc = o.what == op::put ? mdb_put(db_->txn, db_->db(o.dbi), &k, &v, 0)
                                   : mdb_del(db_->txn, db_->db(o.dbi), &k, nullptr);
  if (rc == 0 || rc == MDB_NOTFOUND) return true;
  mdb_txn_abort(std::exchange(db_->txn, nullptr));
  ++counters_.errors;
  return false;
}

// Stages one write in the open transaction. Returns: false when LMDB refused it
// (MDB_MAP_FULL): the transaction, which LMDB leaves unusable, is started again
// from this turn's other writes.
bool request_store::stage(op o) {
  if (!begin()) return false;
  if (!apply(o)) {
    begin();
    return false;
  }
  turn_.push_back(std::move(o));
  return true;
}

// always commits (and syncs) each operation; batch and none wait for flush().
bool request_store::settle() { return opts_.sync != store_sync::always || commit(); }

bool request_store::commit() {
  if (!db_->txn && !begin()) return false;
  const auto start = std::chrono::steady_clock::now();
  int rc = mdb_txn_commit(std::exchange(db_->txn, nullptr));
  if (rc == 0 && opts_.sync == store_sync::batch) rc = db_->sync();
  if (rc != 0) {
    ++counters_.errors;
    failing_ = mdb_strerror(rc);
    return false;  // turn_ is kept: begin() writes it again
  }
  failing_.clear();
  if (opts_.sync != store_sync::none) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
    ++counters_.syncs;
    counters_.last_sync_us = static_cast<std::uint64_t>(us.count());
    counters_.sync_us += counters_.last_sync_us;
  }
  turn_.clear();
  return true;
}

bool request_store::uncommitted() const noexcept { return opts_.sync != store_sync::always && !turn_.empty(); }

bool request_store::flush() {
  if (turn_.empty() && !db_->txn) return true;
  if (turn_.empty()) {
    mdb_txn_abort(std::exchange(db_->txn, nullptr));
    return true;
  }
  return commit();
}

std::uint64_t request_store::put_request(const std::vector<std::string_view>& route, std::string_view body,
                                         std::string_view owner, std::string& why) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(3);
  pk.pack(owner);
  pk.pack_array(static_cast<std::uint32_t>(route.size()));
  for (const auto r : route) {
    pk.pack_bin(static_cast<std::uint32_t>(r.size()));
    pk.pack_bin_body(r.data(), static_cast<std::uint32_t>(r.size()));
  }
  pk.pack_bin(static_cast<std::uint32_t>(body.size()));
  pk.pack_bin_body(body.data(), static_cast<std::uint32_t>(body.size()));
  if (bytes_ + buf.size() > opts_.max_bytes) {
    why = "more than " + std::to_string(opts_.max_bytes) + " bytes of requests stored";
    return 0;
  }
  // While commits fail (the disk full), nothing new is taken: what is already in
  // the turn waits, with its replies, for the commit that succeeds.
  if (!failing_.empty()) {
    if (turn_.empty()) failing_.clear();  // nothing waits: this request's own commit tells
    else if (!commit()) {
      why = "the store cannot be written (" + failing_ + ")";
      return 0;
    }
  }
  const std::uint64_t seq = next_seq_;
  if (!stage({op::put, requests_db, key_of(seq), std::string(buf.data(), buf.size())})) {
    why = "the store is full (LMDB map full)";
    return 0;
  }
  if (!settle()) {
    turn_.pop_back();  // not stored: refused; the rest of the turn is written again next time
    why = "the store cannot be written (disk full or I/O error)";
    return 0;
  }
  ++next_seq_;
  requests_[seq] = {buf.size(), std::string(owner)};
  bytes_ += buf.size();
  return seq;
}

void request_store::delivered(std::uint64_t seq, std::uint32_t deliveries) {
  // Committed with the next write, not on its own: a delivery not yet recorded
  // when the device crashes is one the worker may not have finished either.
  stage({op::put, deliveries_db, key_of(seq), key_of(deliveries)});
}

void request_store::complete(std::uint64_t seq, std::string_view id, const std::string_view* reply) {
  const auto it = requests_.find(seq);
  if (it == requests_.end()) return;
  const std::string owner = std::move(it->second.owner);
  bytes_ -= it->second.bytes;
  requests_.erase(it);
  const std::string key = key_of(seq);
  stage({op::del, deliveries_db, key, {}});
  stage({op::del, requests_db, key, {}});
  if (reply && opts_.max_replies > 0 && reply->size() <= opts_.max_reply_bytes) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(3);
    pk.pack_bin(static_cast<std::uint32_t>(id.size()));
    pk.pack_bin_body(id.data(), static_cast<std::uint32_t>(id.size()));
    pk.pack(owner);
    pk.pack_bin(static_cast<std::uint32_t>(reply->size()));
    pk.pack_bin_body(reply->data(), static_cast<std::uint32_t>(reply->size()));
    const std::uint64_t n = next_reply_++;
    if (stage({op::put, replies_db, key_of(n), std::string(buf.data(), buf.size())})) {
      replies_.emplace_back(n, buf.size());
      reply_bytes_ += buf.size();
    }
    evict_replies();
  }
  settle();  // a failed commit keeps the writes: they go with the next one
}

void request_store::evict_replies() {
  while (!replies_.empty() && (replies_.size() > opts_.max_replies || reply_bytes_ > opts_.max_reply_bytes)) {
    reply_bytes_ -= replies_.front().second;
    stage({op::del, replies_db, key_of(replies_.front().first), {}});
    replies_.pop_front();
  }
}

}  // namespace zmqkit::queue::detail
