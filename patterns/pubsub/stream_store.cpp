#include "stream_store.hpp"

#include <algorithm>
#include <zmqkit/error.hpp>

namespace zmqkit::pubsub::detail {

namespace {

using internal::append_big_endian;
using internal::big_endian;
using internal::mdb_value;
using internal::mdb_view;
using internal::read_big_endian;

// meta: the version record. streams: id -> stream key. messages: id, seq ->
// receive time (8 bytes) + envelope. cursors: name length, name, stream key -> seq.
enum db_index : unsigned { meta_db, streams_db, messages_db, cursors_db, db_count };
constexpr const char* db_names[db_count] = {"meta", "streams", "messages", "cursors"};
constexpr std::size_t record_overhead = 24;  // key (id, seq) and receive time, charged to the byte bounds

std::string message_key(std::uint64_t id, std::uint64_t seq) {
  std::string k = big_endian(id);
  append_big_endian(k, seq);
  return k;
}

std::uint64_t nanos(wall_time t) { return static_cast<std::uint64_t>(t.time_since_epoch().count()); }

// Splits a stream key back into (pub, type); nullopt when it is not one.
std::optional<std::pair<std::string_view, std::string_view>> split_stream_key(std::string_view key) {
  if (key.empty() || key.size() < 1u + static_cast<unsigned char>(key[0])) return std::nullopt;
  const std::size_t n = static_cast<unsigned char>(key[0]);
  return std::pair{key.substr(1, n), key.substr(1 + n)};
}

}  // namespace

std::string stream_key(std::string_view pub, std::string_view type) {
  std::string k;
  k.reserve(1 + pub.size() + type.size());
  k.push_back(static_cast<char>(pub.size()));  // a publisher id is at most 255 bytes (8.2)
  k.append(pub).append(type);
  return k;
}

stream_store::stream_store(stream_store_options opts) : opts_(std::move(opts)) {
  db_ = std::make_unique<internal::lmdb_env>(internal::lmdb_env_options{
      .dir = opts_.dir,
      .program = "zmqkit-forwarder",
      .format = "zmqkit-forwarder-store/1",
      .databases = {db_names, db_names + db_count},
      // LMDB reuses freed pages only once no reader needs them: room for that.
      .map_bytes = static_cast<std::size_t>(2 * opts_.max_bytes + (std::uint64_t{64} << 20)),
      .sync_each_commit = opts_.sync});
  load();
}

stream_store::~stream_store() {
  if (txn_) mdb_txn_commit(std::exchange(txn_, nullptr));
}

void stream_store::load() {
  streams_.clear();
  by_id_.clear();
  oldest_.clear();
  cursors_.clear();
  cursor_count_ = 0;
  bytes_ = messages_ = 0;
  const internal::lmdb_read read(*db_);
  auto each = [&](unsigned db, auto&& fn) {
    MDB_cursor* cur = nullptr;
    if (const int rc = mdb_cursor_open(read.get(), db_->db(db), &cur); rc != 0) db_->fail(mdb_strerror(rc));
    MDB_val k{}, v{};
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      if (!fn(mdb_view(k), mdb_view(v))) {
        mdb_cursor_close(cur);
        db_->fail(std::string("a record in '") + db_names[db] + "' does not decode");
      }
    }
    mdb_cursor_close(cur);
  };
  each(streams_db, [&](std::string_view k, std::string_view v) {
    const auto parts = split_stream_key(v);
    if (k.size() != 8 || !parts) return false;
    stream s{.id = read_big_endian(k.data(), 8), .pub = std::string(parts->first), .type = std::string(parts->second)};
    next_id_ = std::max(next_id_, s.id + 1);
    by_id_.emplace(s.id, std::string(v));
    streams_.emplace(std::string(v), std::move(s));
    return true;
  });
  stream* s = nullptr;
  each(messages_db, [&](std::string_view k, std::string_view v) {
    if (k.size() != 16 || v.size() < 8) return false;
    const std::uint64_t id = read_big_endian(k.data(), 8), seq = read_big_endian(k.data() + 8, 8);
    if (!s || s->id != id) {
      const auto key = by_id_.find(id);
      if (key == by_id_.end()) return false;
      s = &streams_[key->second];
      s->first = seq;
      s->first_time = read_big_endian(v.data(), 8);
      oldest_.emplace(s->first_time, id);
    }
    s->last = seq;
    ++s->count;
    s->bytes += v.size() + record_overhead;
    bytes_ += v.size() + record_overhead;
    ++messages_;
    return true;
  });
  each(cursors_db, [&](std::string_view k, std::string_view v) {
    if (k.empty() || k.size() < 1u + static_cast<unsigned char>(k[0]) || v.size() != 8) return false;
    const std::size_t n = static_cast<unsigned char>(k[0]);
    cursors_[std::string(k.substr(1, n))][std::string(k.substr(1 + n))] = read_big_endian(v.data(), 8);
    ++cursor_count_;
    return true;
  });
}

bool stream_store::write() {
  if (txn_) return true;
  if (mdb_txn_begin(db_->env(), nullptr, 0, &txn_) == 0) return true;
  txn_ = nullptr;
  ++counters_.errors;
  return false;
}

void stream_store::commit() {
  if (!txn_) return;
  int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
  if (rc == 0 && opts_.sync) rc = db_->sync();
  if (rc == 0) return;
  // Disk full or I/O error: what this turn wrote is not on disk. The index is
  // read back from what is, so it never claims a message the store lacks.
  ++counters_.errors;
  load();
}

stream_store::stream* stream_store::find(std::string_view pub, std::string_view type) {
  const auto it = streams_.find(stream_key(pub, type));
  return it == streams_.end() ? nullptr : &it->second;
}

stream_store::stream* stream_store::create(std::string_view pub, std::string_view type) {
  if (streams_.size() >= opts_.max_streams || !write()) return nullptr;
  std::string key = stream_key(pub, type);
  const std::string id_key = big_endian(next_id_);
  MDB_val k = mdb_value(id_key), v = mdb_value(key);
  if (mdb_put(txn_, db_->db(streams_db), &k, &v, 0) != 0) return nullptr;
  stream s{.id = next_id_++, .pub = std::string(pub), .type = std::string(type)};
  by_id_.emplace(s.id, key);
  return &streams_.emplace(std::move(key), std::move(s)).first->second;
}

void stream_store::drop_first(stream& s) {
  if (s.count == 0 || !write()) return;
  MDB_cursor* cur = nullptr;
  if (mdb_cursor_open(txn_, db_->db(messages_db), &cur) != 0) return;
  const std::string key = message_key(s.id, s.first);
  MDB_val k = mdb_value(key), v{};
  if (mdb_cursor_get(cur, &k, &v, MDB_SET_KEY) == 0) {
    const std::uint64_t size = v.mv_size + record_overhead;
    if (mdb_cursor_del(cur, 0) == 0) {
      oldest_.erase({s.first_time, s.id});
      s.bytes -= size;
      bytes_ -= size;
      --s.count;
      --messages_;
      ++counters_.dropped_by_retention;
      if (s.count > 0 && mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT) == 0 && k.mv_size == 16 &&
          read_big_endian(k.mv_data, 8) == s.id) {
        s.first = read_big_endian(static_cast<const char*>(k.mv_data) + 8, 8);
        s.first_time = read_big_endian(v.mv_data, 8);
        oldest_.emplace(s.first_time, s.id);
      } else {
        s.count = s.bytes = s.first = 0;
      }
    }
  }
  mdb_cursor_close(cur);
}

void stream_store::drop_all(stream& s) {
  const std::uint64_t retention_drops = counters_.dropped_by_retention;
  while (s.count > 0) {
    const std::uint64_t before = s.count;
    drop_first(s);
    if (s.count == before) break;  // LMDB refused: leave it
  }
  counters_.dropped_by_retention = retention_drops;  // counted as a restart by the caller
}

void stream_store::retain(stream& s) {
  while (s.count > 1 && (s.count > opts_.retain_messages || s.bytes > opts_.retain_bytes)) {
    const std::uint64_t before = s.count;
    drop_first(s);
    if (s.count == before) break;
  }
  while (bytes_ > opts_.max_bytes && !oldest_.empty()) {
    stream& victim = streams_[by_id_[oldest_.begin()->second]];
    const std::uint64_t before = victim.count;
    drop_first(victim);
    if (victim.count == before) break;
  }
}

void stream_store::expire(wall_time now) {
  if (opts_.retain_age.count() <= 0) return;
  const std::uint64_t horizon = nanos(now - opts_.retain_age);
  while (!oldest_.empty() && oldest_.begin()->first < horizon) {
    stream& s = streams_[by_id_[oldest_.begin()->second]];
    const std::uint64_t before = s.count;
    drop_first(s);
    if (s.count == before) break;
  }
}

void stream_store::append(std::string_view pub, std::string_view type, std::uint64_t seq,
                          std::string_view envelope, wall_time now) {
  stream* s = find(pub, type);
  if (!s) s = create(pub, type);
  if (!s || !write()) {
    ++counters_.refused;
    return;
  }
  if (s->count > 0 && seq <= s->last) {  // numbering restarted (8.2): the old numbers mean other messages
    ++counters_.restarts;
    drop_all(*s);
  }
  const std::string key = message_key(s->id, seq);
  std::string value;
  value.reserve(8 + envelope.size());
  append_big_endian(value, nanos(now));
  value.append(envelope);
  MDB_val k = mdb_value(key), v = mdb_value(value);
  if (const int rc = mdb_put(txn_, db_->db(messages_db), &k, &v, 0); rc != 0) {
    // Map full: LMDB leaves the transaction unusable. What it held is lost to
    // the store (replay reports it lost); the index follows the disk again.
    ++counters_.refused;
    mdb_txn_abort(std::exchange(txn_, nullptr));
    load();
    return;
  }
  if (s->count == 0) {
    s->first = seq;
    s->first_time = nanos(now);
    oldest_.emplace(s->first_time, s->id);
  }
  s->last = seq;
  ++s->count;
  s->bytes += value.size() + record_overhead;
  bytes_ += value.size() + record_overhead;
  ++messages_;
  ++counters_.stored;
  retain(*s);
}

replay_batch stream_store::read(std::string_view pub, std::string_view type, std::uint64_t from,
                                std::optional<wall_time> since, std::uint64_t to, std::size_t max_messages,
                                std::size_t max_bytes) {
  commit();
  replay_batch out;
  const stream* s = find(pub, type);
  out.head = s && s->count > 0 ? s->last : 0;
  const std::uint64_t last = to != 0 ? to : out.head;
  std::uint64_t expect = from;
  bool full = false;
  if (s && s->count > 0) {
    const internal::lmdb_read txn(*db_);
    MDB_cursor* cur = nullptr;
    if (mdb_cursor_open(txn.get(), db_->db(messages_db), &cur) == 0) {
      const std::string start = message_key(s->id, since ? s->first : from);
      MDB_val k = mdb_value(start), v{};
      std::size_t bytes = 0;
      for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
           rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || read_big_endian(k.mv_data, 8) != s->id) break;
        const std::uint64_t seq = read_big_endian(static_cast<const char*>(k.mv_data) + 8, 8);
        if (v.mv_size < 8) continue;
        if (since) {  // the first message received at or after `since` starts the read
          if (read_big_endian(v.mv_data, 8) < nanos(*since)) continue;
          since.reset();
          expect = seq;
        }
        if (seq > last) break;
        if (out.messages.size() >= max_messages || (bytes > 0 && bytes + v.mv_size > max_bytes)) {
          full = true;
          break;
        }
        if (seq > expect) out.lost.emplace_back(expect, seq - 1);
        out.messages.push_back({seq, std::string(mdb_view(v).substr(8))});
        bytes += v.mv_size;
        expect = seq + 1;
      }
      mdb_cursor_close(cur);
    }
  }
  if (since) expect = out.head + 1;  // nothing received since then: start after the head
  if (!full && to != 0 && expect <= to) {
    out.lost.emplace_back(expect, to);  // never reached the forwarder, or no longer retained
    expect = to + 1;
  }
  out.next = expect;
  out.end = !full;
  return out;
}

std::vector<stream_store::stream_range> stream_store::streams(const std::vector<std::string_view>& prefixes) const {
  std::vector<stream_range> out;
  for (const auto& entry : streams_) {
    const auto& s = entry.second;
    if (std::none_of(prefixes.begin(), prefixes.end(), [&](std::string_view p) { return s.type.starts_with(p); }))
      continue;
    out.push_back({s.pub, s.type, s.count > 0 ? s.first : 0, s.last});
  }
  return out;
}

std::vector<std::pair<stream_store::stream_range, std::uint64_t>> stream_store::cursors(std::string_view name) const {
  std::vector<std::pair<stream_range, std::uint64_t>> out;
  const auto it = cursors_.find(name);
  if (it == cursors_.end()) return out;
  for (const auto& [key, seq] : it->second) {
    const auto parts = split_stream_key(key);
    if (!parts) continue;
    stream_range r{std::string(parts->first), std::string(parts->second)};
    if (const auto s = streams_.find(key); s != streams_.end()) {
      r.first = s->second.count > 0 ? s->second.first : 0;
      r.last = s->second.last;
    }
    out.emplace_back(std::move(r), seq);
  }
  return out;
}

bool stream_store::set_cursor(std::string_view name, std::string_view pub, std::string_view type, std::uint64_t seq) {
  const std::string key = stream_key(pub, type);
  auto named = cursors_.find(name);
  const bool known = named != cursors_.end() && named->second.contains(key);
  if (!known && cursor_count_ >= opts_.max_cursors) return false;
  if (!write()) return false;
  std::uint64_t& cursor = cursors_[name][key];
  if (known && seq <= cursor) return true;
  std::string record;
  record.push_back(static_cast<char>(name.size()));  // a name is at most 255 bytes (8.6)
  record.append(name).append(key);
  const std::string value = big_endian(seq);
  MDB_val k = mdb_value(record), v = mdb_value(value);
  if (mdb_put(txn_, db_->db(cursors_db), &k, &v, 0) != 0) {
    ++counters_.refused;
    mdb_txn_abort(std::exchange(txn_, nullptr));
    load();
    return false;
  }
  if (!known) ++cursor_count_;
  cursor = seq;
  return true;
}

}  // namespace zmqkit::pubsub::detail
