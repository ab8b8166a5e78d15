// The queue device's durable store (zmqkit-queue --store DIR): accepted requests
// until their completion, and the replies the reply cache holds, in LMDB, so a
// restarted device (clean stop or SIGKILL) queues the first again and answers
// retries from the second. Private to patterns/queue; the device calls it from
// run()'s thread only. What each sync policy may lose: patterns/queue/README.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>
#include <zmqkit/queue/device.hpp>

namespace zmqkit::queue::detail {

struct store_options {
  std::string dir;
  store_sync sync = store_sync::batch;
  std::size_t max_bytes = std::size_t{1} << 30;  // request records: past it put_request refuses
  std::size_t max_replies = 10000;               // reply records kept (the reply cache's bounds)
  std::size_t max_reply_bytes = std::size_t{256} << 20;
  // LMDB's map; 0 = derived from the bounds above, with room for LMDB's own pages.
  std::size_t map_bytes = 0;
};

// A request as stored: enough to queue it again (the body is the envelope, so
// id, type, priority and expiry come from it) and to scope its id (owner: the
// client's CURVE key text, empty without CURVE).
struct stored_request {
  std::uint64_t seq = 0;
  std::vector<std::string> route;
  std::string body;
  std::string owner;
  std::uint32_t deliveries = 0;
};

struct stored_reply {
  std::string id;  // the request id's 16 bytes
  std::string owner;
  std::string reply;
};

struct store_counters {
  std::uint64_t syncs = 0;
  std::uint64_t sync_us = 0;       // total time in fsync (commit with sync), microseconds
  std::uint64_t last_sync_us = 0;
  std::uint64_t errors = 0;        // writes LMDB refused (map full, disk full, I/O)
};

class request_store {
 public:
  // Opens (creating when absent) the store in `dir` and checks it: the version
  // record, the data file's length, no other process using it.
  // Throws: zmqkit::error{bad_config} naming the path and the problem.
  explicit request_store(store_options opts);
  ~request_store();  // flushes; not copyable (it owns the environment)

  // Reads everything back, in the order it was stored (once, before serving).
  // Throws: zmqkit::error{bad_config} when a record does not decode.
  void load(const std::function<void(stored_request&&)>& on_request,
            const std::function<void(stored_reply&&)>& on_reply);

  // Stores an accepted request. Returns: its sequence number, or 0 when it does
  // not fit (max_bytes, LMDB's map or the disk full): `why` says which.
  std::uint64_t put_request(const std::vector<std::string_view>& route, std::string_view body,
                            std::string_view owner, std::string& why);
  // Records that a stored request was delivered once more (written with the next commit).
  void delivered(std::uint64_t seq, std::uint32_t deliveries);
  // Records a request's completion; with a reply, keeps that for retries of `id`
  // under the request's owner (oldest reply records dropped past the reply bounds).
  void complete(std::uint64_t seq, std::string_view id, const std::string_view* reply);

  // batch, none: true while writes wait for the turn's commit (messages that
  // depend on them are held until flush()).
  bool uncommitted() const noexcept;
  // Commits (and under batch syncs) what this loop turn wrote. Returns: false
  // when that failed: the writes stay pending and are tried again next time.
  bool flush();

  // Returns: why the last commit failed, while commits fail; else empty.
  const std::string& failure() const noexcept { return failing_; }
  std::size_t bytes() const noexcept { return bytes_; }
  const store_counters& counters() const noexcept { return counters_; }
  const std::string& dir() const noexcept { return opts_.dir; }

 private:
  struct lmdb;
  struct op {  // a write of this loop turn, replayed if LMDB aborts the transaction
    enum kind { put, del } what;
    unsigned dbi;
    std::string key, value;
  };
  bool stage(op o);
  bool apply(const op& o);  // to the open transaction; on failure aborts it
  bool settle();
  bool begin();
  bool commit();
  void evict_replies();
  [[noreturn]] void fail(const std::string& problem) const;

  store_options opts_;
  std::unique_ptr<lmdb> db_;
  std::vector<op> turn_;  // writes since the last commit
  std::size_t bytes_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t next_reply_ = 1;
  struct record {
    std::size_t bytes = 0;
    std::string owner;
  };
  std::unordered_map<std::uint64_t, record> requests_;  // stored seq -> its size and owner
  std::deque<std::pair<std::uint64_t, std::size_t>> replies_;     // reply record key, size; oldest first
  std::size_t reply_bytes_ = 0;
  std::string failing_;  // why the last commit failed; empty once one succeeds
  store_counters counters_;
};

}  // namespace zmqkit::queue::detail
