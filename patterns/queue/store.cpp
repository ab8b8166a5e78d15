#include "store.hpp"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <msgpack.hpp>
#include <zmqkit/error.hpp>

namespace zmqkit::queue::detail {

namespace {

// The version record: a store written in another format is refused, never read as empty.
constexpr std::string_view format_key = "format";
constexpr std::string_view format = "zmqkit-queue-store/1";
enum db_index : unsigned { meta_db, requests_db, deliveries_db, replies_db, db_count };
constexpr const char* db_names[db_count] = {"meta", "requests", "deliveries", "replies"};

// Big-endian, so LMDB's key order is numeric order: records come back in the order stored.
std::string key_of(std::uint64_t n) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i, n >>= 8) k[static_cast<std::size_t>(i)] = static_cast<char>(n & 0xff);
  return k;
}

std::uint64_t number_of(const MDB_val& v) {
  std::uint64_t n = 0;
  const auto* p = static_cast<const unsigned char*>(v.mv_data);
  for (std::size_t i = 0; i < v.mv_size && i < 8; ++i) n = (n << 8) | p[i];
  return n;
}

MDB_val val(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }
std::string_view view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

std::string_view raw_of(const msgpack::object& o) {
  if (o.type == msgpack::type::BIN) return {o.via.bin.ptr, o.via.bin.size};
  if (o.type == msgpack::type::STR) return {o.via.str.ptr, o.via.str.size};
  throw std::runtime_error("a field is not bytes");
}

}  // namespace

struct request_store::lmdb {
  MDB_env* env = nullptr;
  MDB_dbi dbi[db_count] = {};
  MDB_txn* txn = nullptr;  // the open write transaction, if any
  int lock_fd = -1;
  ~lmdb() {
    if (txn) mdb_txn_abort(txn);
    if (env) mdb_env_close(env);
    if (lock_fd >= 0) ::close(lock_fd);
  }
};

void request_store::fail(const std::string& problem) const {
  throw zmqkit::error(errc::bad_config, "store", "store " + opts_.dir + ": " + problem);
}

request_store::request_store(store_options opts) : opts_(std::move(opts)), db_(std::make_unique<lmdb>()) {
  if (opts_.dir.empty()) fail("no directory given");
  if (::mkdir(opts_.dir.c_str(), 0700) != 0 && errno != EEXIST) fail(std::strerror(errno));
  struct stat st {};
  if (::stat(opts_.dir.c_str(), &st) != 0) fail(std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) fail("not a directory");
  // One device per store: LMDB's own lock table is off (MDB_NOLOCK; one thread
  // reads and writes), so a second process is kept out here.
  const std::string lock_path = opts_.dir + "/lock";
  db_->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (db_->lock_fd < 0) fail(lock_path + ": " + std::strerror(errno));
  if (::flock(db_->lock_fd, LOCK_EX | LOCK_NB) != 0) fail("in use by another process (" + lock_path + " is locked)");

  const std::string data_path = opts_.dir + "/data.mdb";
  struct stat data {};
  const bool existed = ::stat(data_path.c_str(), &data) == 0;
  if (existed && !S_ISREG(data.st_mode)) fail(data_path + ": not a regular file");

  if (opts_.map_bytes == 0) opts_.map_bytes = 2 * (opts_.max_bytes + opts_.max_reply_bytes) + (std::size_t{64} << 20);
  int rc = mdb_env_create(&db_->env);
  if (rc == 0) rc = mdb_env_set_maxdbs(db_->env, db_count);
  if (rc == 0) rc = mdb_env_set_mapsize(db_->env, opts_.map_bytes);
  // always: LMDB syncs at each commit. batch: one commit per loop turn, then one
  // sync. none: one commit per loop turn, never synced (the kernel writes back).
  const unsigned flags = MDB_NOLOCK | (opts_.sync == store_sync::always ? 0u : MDB_NOSYNC);
  if (rc == 0) rc = mdb_env_open(db_->env, opts_.dir.c_str(), flags, 0600);
  if (rc != 0) fail(data_path + ": cannot open: " + mdb_strerror(rc));

  // A data file shorter than its last page is truncated: reading it would fault.
  MDB_envinfo info{};
  MDB_stat env_stat{};
  mdb_env_info(db_->env, &info);
  mdb_env_stat(db_->env, &env_stat);
  if (::stat(data_path.c_str(), &data) != 0) fail(data_path + ": " + std::strerror(errno));
  const auto needed = static_cast<std::uint64_t>(info.me_last_pgno + 1) * env_stat.ms_psize;
  if (static_cast<std::uint64_t>(data.st_size) < needed)
    fail(data_path + ": truncated (" + std::to_string(data.st_size) + " bytes, its pages need " +
         std::to_string(needed) + ")");

  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(db_->env, nullptr, 0, &txn);
  if (rc != 0) fail(data_path + ": " + mdb_strerror(rc));
  // An LMDB store of something else: records in the main database but no "meta".
  MDB_dbi main_db = 0, probe = 0;
  MDB_stat main_stat{};
  if (mdb_dbi_open(txn, nullptr, 0, &main_db) == 0 && mdb_stat(txn, main_db, &main_stat) == 0 &&
      main_stat.ms_entries > 0 && mdb_dbi_open(txn, db_names[meta_db], 0, &probe) == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    fail(data_path + ": an LMDB store without a version record (not a zmqkit-queue store?)");
  }
  bool had_data = false;
  for (unsigned i = 0; i < db_count && rc == 0; ++i) {
    rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &db_->dbi[i]);
    MDB_stat s{};
    if (rc == 0 && i != meta_db && mdb_stat(txn, db_->dbi[i], &s) == 0 && s.ms_entries > 0) had_data = true;
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    fail(data_path + ": " + mdb_strerror(rc));
  }
  MDB_val k = val(format_key), v{};
  rc = mdb_get(txn, db_->dbi[meta_db], &k, &v);
  if (rc == MDB_NOTFOUND && !had_data) {
    MDB_val fv = val(format);
    rc = mdb_put(txn, db_->dbi[meta_db], &k, &fv, 0);
  } else if (rc == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    fail(data_path + ": has records but no version record (not a zmqkit-queue store?)");
  } else if (rc == 0 && view(v) != format) {
    const std::string found(view(v));
    mdb_txn_abort(txn);
    fail(data_path + ": format '" + found + "', this zmqkit-queue reads '" + std::string(format) + "'");
  }
  if (rc == 0) rc = mdb_txn_commit(txn);
  else mdb_txn_abort(txn);
  if (rc != 0) fail(data_path + ": " + mdb_strerror(rc));
  if (opts_.sync != store_sync::always && mdb_env_sync(db_->env, 1) != 0) fail(data_path + ": sync failed");
}

request_store::~request_store() {
  flush();
  if (db_->env && opts_.sync != store_sync::always) mdb_env_sync(db_->env, 1);
}

void request_store::load(const std::function<void(stored_request&&)>& on_request,
                         const std::function<void(stored_reply&&)>& on_reply) {
  MDB_txn* txn = nullptr;
  if (const int rc = mdb_txn_begin(db_->env, nullptr, MDB_RDONLY, &txn); rc != 0) fail(mdb_strerror(rc));
  struct closer {
    MDB_txn* t;
    ~closer() { mdb_txn_abort(t); }
  } close_txn{txn};
  auto each = [&](unsigned db, auto&& fn) {
    MDB_cursor* cur = nullptr;
    if (const int rc = mdb_cursor_open(txn, db_->dbi[db], &cur); rc != 0) fail(mdb_strerror(rc));
    MDB_val k{}, v{};
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      try {
        if (k.mv_size != 8) throw std::runtime_error("key is not a sequence number");
        const msgpack::object_handle h = msgpack::unpack(static_cast<const char*>(v.mv_data), v.mv_size);
        fn(number_of(k), h.get(), v.mv_size);
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
    MDB_val dk = val(key), dv{};
    if (mdb_get(txn, db_->dbi[deliveries_db], &dk, &dv) == 0 && dv.mv_size == 8)
      r.deliveries = static_cast<std::uint32_t>(number_of(dv));
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
  if (const int rc = mdb_txn_begin(db_->env, nullptr, 0, &db_->txn); rc != 0) {
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
  MDB_val k = val(o.key), v = val(o.value);
  const int rc = o.what == op::put ? mdb_put(db_->txn, db_->dbi[o.dbi], &k, &v, 0)
                                   : mdb_del(db_->txn, db_->dbi[o.dbi], &k, nullptr);
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
  if (rc == 0 && opts_.sync == store_sync::batch) rc = mdb_env_sync(db_->env, 1);
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
