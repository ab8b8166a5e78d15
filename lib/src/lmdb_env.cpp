#include "zmqkit/internal/lmdb_env.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <zmqkit/error.hpp>

namespace zmqkit::internal {

namespace {
constexpr std::string_view format_key = "format";
}

void lmdb_env::fail(const std::string& problem) const {
  throw zmqkit::error(errc::bad_config, "store", "store " + opts_.dir + ": " + problem);
}

lmdb_env::lmdb_env(lmdb_env_options opts) : opts_(std::move(opts)) {
  // The destructor does not run when the constructor throws: release as we leave.
  struct guard {
    lmdb_env* self;
    bool armed = true;
    ~guard() {
      if (!armed) return;
      if (self->env_) mdb_env_close(self->env_);
      if (self->lock_fd_ >= 0) ::close(self->lock_fd_);
    }
  } release{this};

  if (opts_.dir.empty()) fail("no directory given");
  if (::mkdir(opts_.dir.c_str(), 0700) != 0 && errno != EEXIST) fail(std::strerror(errno));
  struct stat st {};
  if (::stat(opts_.dir.c_str(), &st) != 0) fail(std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) fail("not a directory");
  const std::string lock_path = opts_.dir + "/lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) fail(lock_path + ": " + std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) fail("in use by another process (" + lock_path + " is locked)");

  const std::string data_path = opts_.dir + "/data.mdb";
  struct stat data {};
  if (::stat(data_path.c_str(), &data) == 0 && !S_ISREG(data.st_mode)) fail(data_path + ": not a regular file");

  int rc = mdb_env_create(&env_);
  if (rc == 0) rc = mdb_env_set_maxdbs(env_, static_cast<MDB_dbi>(opts_.databases.size()));
  if (rc == 0) rc = mdb_env_set_mapsize(env_, opts_.map_bytes);
  const unsigned flags = MDB_NOLOCK | (opts_.sync_each_commit ? 0u : MDB_NOSYNC);
  if (rc == 0) rc = mdb_env_open(env_, opts_.dir.c_str(), flags, 0600);
  if (rc != 0) fail(data_path + ": cannot open: " + mdb_strerror(rc));

  // A data file shorter than its last page is truncated: reading it would fault.
  MDB_envinfo info{};
  MDB_stat env_stat{};
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &env_stat);
  if (::stat(data_path.c_str(), &data) != 0) fail(data_path + ": " + std::strerror(errno));
  const auto needed = static_cast<std::uint64_t>(info.me_last_pgno + 1) * env_stat.ms_psize;
  if (static_cast<std::uint64_t>(data.st_size) < needed)
    fail(data_path + ": truncated (" + std::to_string(data.st_size) + " bytes, its pages need " +
         std::to_string(needed) + ")");

  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) fail(data_path + ": " + mdb_strerror(rc));
  auto refuse = [&](const std::string& problem) {
    mdb_txn_abort(txn);
    fail(data_path + ": " + problem);
  };
  // An LMDB store of something else: records in the main database but no version record.
  MDB_dbi main_db = 0, probe = 0;
  MDB_stat main_stat{};
  if (mdb_dbi_open(txn, nullptr, 0, &main_db) == 0 && mdb_stat(txn, main_db, &main_stat) == 0 &&
      main_stat.ms_entries > 0 && mdb_dbi_open(txn, opts_.databases[0], 0, &probe) == MDB_NOTFOUND)
    refuse("an LMDB store without a version record (not a " + opts_.program + " store?)");
  bool had_data = false;
  dbi_.resize(opts_.databases.size());
  for (std::size_t i = 0; i < dbi_.size(); ++i) {
    if ((rc = mdb_dbi_open(txn, opts_.databases[i], MDB_CREATE, &dbi_[i])) != 0) refuse(mdb_strerror(rc));
    MDB_stat s{};
    if (i != 0 && mdb_stat(txn, dbi_[i], &s) == 0 && s.ms_entries > 0) had_data = true;
  }
  MDB_val k = mdb_value(format_key), v{};
  rc = mdb_get(txn, dbi_[0], &k, &v);
  if (rc == MDB_NOTFOUND && had_data) refuse("has records but no version record (not a " + opts_.program + " store?)");
  if (rc == 0 && mdb_view(v) != opts_.format)
    refuse("format '" + std::string(mdb_view(v)) + "', this " + opts_.program + " reads '" + opts_.format + "'");
  if (rc == MDB_NOTFOUND) {
    MDB_val fv = mdb_value(opts_.format);
    rc = mdb_put(txn, dbi_[0], &k, &fv, 0);
  }
  if (rc != 0) refuse(mdb_strerror(rc));
  if ((rc = mdb_txn_commit(txn)) != 0) fail(data_path + ": " + mdb_strerror(rc));
  if (!opts_.sync_each_commit && sync() != 0) fail(data_path + ": sync failed");
  release.armed = false;
}

lmdb_env::~lmdb_env() {
  if (env_) {
    if (!opts_.sync_each_commit) sync();
    mdb_env_close(env_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

lmdb_read::lmdb_read(const lmdb_env& env) {
  if (const int rc = mdb_txn_begin(env.env(), nullptr, MDB_RDONLY, &txn_); rc != 0) env.fail(mdb_strerror(rc));
}

void append_big_endian(std::string& out, std::uint64_t n) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
}

std::string big_endian(std::uint64_t n) {
  std::string k;
  k.reserve(8);
  append_big_endian(k, n);
  return k;
}

std::uint64_t read_big_endian(const void* p, std::size_t size) noexcept {
  std::uint64_t n = 0;
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < size && i < 8; ++i) n = (n << 8) | b[i];
  return n;
}

}  // namespace zmqkit::internal
