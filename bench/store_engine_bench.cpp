// Why the queue device's store is LMDB: the device's write pattern (one put when
// a request is accepted, one delete when it completes; ~200-byte records) on
// LMDB and on SQLite in WAL mode, each at the three durability levels the device
// offers: a synced commit per operation (always), one synced commit per group of
// 64 requests (batch: group commit), the same commits unsynced (none). Same
// records, same directory, same run.
//
// usage: store_engine_bench [requests, default 2000 (synced runs: requests / 4)] [dir, default /tmp]
#include <lmdb.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

namespace {

constexpr int group = 64;
const std::string record(200, 'r');

std::string key_of(int n) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i, n >>= 8) k[static_cast<std::size_t>(i)] = static_cast<char>(n & 0xff);
  return k;
}

void must(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "store_engine_bench: %s failed\n", what);
    std::exit(1);
  }
}

// Runs n put+delete pairs, committing every `per_commit` operations. Returns: µs per request.
double lmdb_run(const std::string& dir, int n, int per_commit, bool sync) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  MDB_env* env = nullptr;
  must(mdb_env_create(&env) == 0 && mdb_env_set_mapsize(env, std::size_t{1} << 30) == 0, "mdb_env_create");
  must(mdb_env_open(env, dir.c_str(), MDB_NOLOCK | (sync ? 0 : MDB_NOSYNC), 0600) == 0, "mdb_env_open");
  MDB_dbi dbi;
  MDB_txn* txn = nullptr;
  must(mdb_txn_begin(env, nullptr, 0, &txn) == 0 && mdb_dbi_open(txn, nullptr, 0, &dbi) == 0, "mdb_dbi_open");
  int in_txn = 0;
  auto op = [&](const std::string& key, bool put) {
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v{record.size(), const_cast<char*>(record.data())};
    must((put ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, nullptr)) == 0, "mdb write");
    if (++in_txn >= per_commit) {
      must(mdb_txn_commit(txn) == 0 && mdb_txn_begin(env, nullptr, 0, &txn) == 0, "mdb commit");
      in_txn = 0;
    }
  };
  const auto start = std::chrono::steady_clock::now();
  // Requests overlap as in a queue: request i completes when request i + group is accepted.
  for (int i = 0; i < n + group; ++i) {
    if (i < n) op(key_of(i), true);
    if (i >= group) op(key_of(i - group), false);
  }
  must(mdb_txn_commit(txn) == 0, "mdb commit");
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  mdb_env_close(env);
  return us / n;
}

double sqlite_run(const std::string& dir, int n, int per_commit, const char* synchronous) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  sqlite3* db = nullptr;
  must(sqlite3_open((dir + "/store.db").c_str(), &db) == SQLITE_OK, "sqlite3_open");
  auto exec = [&](const std::string& sql) { must(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK, sql.c_str()); };
  exec("PRAGMA journal_mode=WAL");
  exec(std::string("PRAGMA synchronous=") + synchronous);
  exec("CREATE TABLE requests (seq INTEGER PRIMARY KEY, record BLOB)");
  sqlite3_stmt *put = nullptr, *del = nullptr;
  must(sqlite3_prepare_v2(db, "INSERT INTO requests VALUES (?, ?)", -1, &put, nullptr) == SQLITE_OK, "prepare");
  must(sqlite3_prepare_v2(db, "DELETE FROM requests WHERE seq = ?", -1, &del, nullptr) == SQLITE_OK, "prepare");
  int in_txn = 0;
  exec("BEGIN");
  auto op = [&](int seq, bool insert) {
    sqlite3_stmt* s = insert ? put : del;
    sqlite3_bind_int(s, 1, seq);
    if (insert) sqlite3_bind_blob(s, 2, record.data(), static_cast<int>(record.size()), SQLITE_STATIC);
    must(sqlite3_step(s) == SQLITE_DONE, "sqlite write");
    sqlite3_reset(s);
    if (++in_txn >= per_commit) {
      exec("COMMIT");
      exec("BEGIN");
      in_txn = 0;
    }
  };
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n + group; ++i) {
    if (i < n) op(i, true);
    if (i >= group) op(i - group, false);
  }
  exec("COMMIT");
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  sqlite3_finalize(put);
  sqlite3_finalize(del);
  sqlite3_close(db);
  return us / n;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  const std::string base = (argc > 2 ? std::string(argv[2]) : std::string("/tmp")) + "/zmqkit-store-engine-" +
                           std::to_string(::getpid());
  const int synced = std::max(n / 4, 50);
  std::printf("put+delete per request, 200-byte records (µs per request; lower is better)\n");
  std::printf("%-30s %12s %12s %8s\n", "policy", "LMDB", "SQLite WAL", "ratio");
  struct row {
    const char* name;
    int requests, per_commit;
    bool lmdb_sync;
    const char* sqlite_sync;
  };
  for (const row r : {row{"always (sync per request)", synced, 1, true, "FULL"},
                      row{"batch (sync per 64 requests)", n, 2 * group, true, "FULL"},
                      row{"none (commit per 64, no sync)", n, 2 * group, false, "OFF"}}) {
    const double l = lmdb_run(base + "-lmdb", r.requests, r.per_commit, r.lmdb_sync);
    const double s = sqlite_run(base + "-sqlite", r.requests, r.per_commit, r.sqlite_sync);
    std::printf("%-30s %12.1f %12.1f %7.2fx\n", r.name, l, s, s / l);
  }
  std::filesystem::remove_all(base + "-lmdb");
  std::filesystem::remove_all(base + "-sqlite");
}
