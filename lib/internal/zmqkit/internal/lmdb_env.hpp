// zmqkit/internal/lmdb_env.hpp — an LMDB environment in a directory of its own,
// opened with the checks every durable store of zmqkit makes (the queue
// device's request store, the forwarder's stream store), so none starts
// silently empty on something it cannot read:
// - the directory is created when absent, and must be a directory;
// - one process per store: an flock on DIR/lock (LMDB's own lock table is off,
//   MDB_NOLOCK: one thread reads and writes);
// - the data file must not be shorter than its last page (truncated);
// - a version record names the store's format; a store of another format, or
//   an LMDB file with records but no version record, is refused.
// Every refusal is zmqkit::error{bad_config} whose text names the path and the
// problem; the programs exit 2 on it. Internal: patterns include it, public
// headers never do.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zmqkit::internal {

struct lmdb_env_options {
  std::string dir;
  std::string program;                // who reads it, for messages: "zmqkit-queue"
  std::string format;                 // the version record's value, e.g. "zmqkit-queue-store/1"
  std::vector<const char*> databases;  // named databases; the version record is kept in databases[0]
  std::size_t map_bytes = 0;           // LMDB's map (the most the store can ever hold)
  bool sync_each_commit = false;       // false: MDB_NOSYNC, the owner calls sync()
};

class lmdb_env {
 public:
  // Throws: zmqkit::error{bad_config, "store"} naming the path and the problem.
  explicit lmdb_env(lmdb_env_options opts);
  ~lmdb_env();
  lmdb_env(const lmdb_env&) = delete;
  lmdb_env& operator=(const lmdb_env&) = delete;

  MDB_env* env() const noexcept { return env_; }
  MDB_dbi db(std::size_t i) const noexcept { return dbi_[i]; }
  const std::string& dir() const noexcept { return opts_.dir; }
  // Returns: 0, or LMDB's error (flushes the OS buffers to disk).
  int sync() noexcept { return mdb_env_sync(env_, 1); }
  // Throws: zmqkit::error{bad_config} "store DIR: problem".
  [[noreturn]] void fail(const std::string& problem) const;

 private:
  lmdb_env_options opts_;
  MDB_env* env_ = nullptr;
  std::vector<MDB_dbi> dbi_;
  int lock_fd_ = -1;
};

// A read-only transaction, aborted when it goes out of scope.
class lmdb_read {
 public:
  explicit lmdb_read(const lmdb_env& env);
  ~lmdb_read() { mdb_txn_abort(txn_); }
  lmdb_read(const lmdb_read&) = delete;
  lmdb_read& operator=(const lmdb_read&) = delete;
  MDB_txn* get() const noexcept { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
};

// Big-endian, so LMDB's key order is numeric order.
std::string big_endian(std::uint64_t n);
void append_big_endian(std::string& out, std::uint64_t n);
// Reads up to 8 big-endian bytes from p.
std::uint64_t read_big_endian(const void* p, std::size_t size) noexcept;
inline std::uint64_t read_big_endian(const MDB_val& v) noexcept { return read_big_endian(v.mv_data, v.mv_size); }

inline MDB_val mdb_value(std::string_view s) noexcept { return {s.size(), const_cast<char*>(s.data())}; }
inline std::string_view mdb_view(const MDB_val& v) noexcept {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

}  // namespace zmqkit::internal
