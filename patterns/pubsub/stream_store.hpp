// The forwarder's retained streams (zmqkit-forwarder --store DIR): every
// stamped message it forwards, per stream (publisher, type), within retention
// bounds, and the cursors of durable subscribers, in LMDB. Private to
// patterns/pubsub; the forwarder calls it from its loop's thread only.
// Wire format of the exchange it serves: docs/protocol.md 8.6.
#pragma once

#include <absl/container/btree_set.h>
#include <absl/container/flat_hash_map.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include <zmqkit/clock.hpp>
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/internal/lmdb_env.hpp>

namespace zmqkit::pubsub::detail {

struct stream_store_options {
  std::string dir;
  std::uint64_t retain_messages = 1'000'000;               // per stream
  std::uint64_t retain_bytes = std::uint64_t{256} << 20;   // per stream (envelope bytes)
  std::chrono::seconds retain_age{24 * 3600};              // by the forwarder's receive time; 0 = no limit
  std::uint64_t max_bytes = std::uint64_t{1} << 30;        // every stream together: oldest dropped first
  std::size_t max_streams = 65536;                         // past it, a new stream is not stored
  std::size_t max_cursors = 100000;                        // durable (name, stream) positions
  bool sync = false;                                       // fsync after each commit (else the page cache)
};

struct stream_store_counters {
  std::uint64_t stored = 0;
  std::uint64_t dropped_by_retention = 0;  // messages removed by count, bytes, age or max_bytes
  std::uint64_t restarts = 0;              // a stream's numbering went back: its old messages dropped
  std::uint64_t refused = 0;               // not stored: max_streams, or LMDB refused (map/disk full)
  std::uint64_t errors = 0;                // commits LMDB refused
};

// One stored message of a replay.
struct stored_message {
  std::uint64_t seq = 0;
  std::string envelope;
};

struct replay_batch {
  std::vector<stored_message> messages;                          // in sequence order
  std::vector<std::pair<std::uint64_t, std::uint64_t>> lost;     // [first, last] not held, within the span read
  std::uint64_t next = 0;                                        // where the next request starts
  std::uint64_t head = 0;                                        // the stream's last stored sequence (0: none)
  bool end = false;                                              // nothing stored beyond, up to `to`
};

class stream_store {
 public:
  // Opens and checks the store (internal/lmdb_env.hpp), reads back every stream and cursor.
  // Throws: zmqkit::error{bad_config} naming the path and the problem.
  explicit stream_store(stream_store_options opts);
  ~stream_store();  // commits the open write transaction; not copyable (it owns the environment)

  // Stores one message of stream (pub, type), received at `now`. A sequence at
  // or below the stream's last means its numbering restarted: the stream's old
  // messages are dropped first. Written with the next commit().
  void append(std::string_view pub, std::string_view type, std::uint64_t seq, std::string_view envelope,
              wall_time now);
  // Commits what append()/set_cursor() wrote since the last commit (and syncs when asked).
  void commit();
  // Drops messages older than retain_age.
  void expire(wall_time now);

  // Reads stream (pub, type) from `from` (or, with `since`, from the first
  // message received at or after it) up to `to` (0 = the head), at most
  // `max_messages` / `max_bytes`. Commits first.
  replay_batch read(std::string_view pub, std::string_view type, std::uint64_t from,
                    std::optional<wall_time> since, std::uint64_t to, std::size_t max_messages,
                    std::size_t max_bytes);

  struct stream_range {
    std::string pub, type;
    std::uint64_t first = 0, last = 0;  // retained sequence numbers (first 0: none retained)
  };
  // Every stream whose type starts with one of `prefixes`.
  std::vector<stream_range> streams(const std::vector<std::string_view>& prefixes) const;

  // Durable subscribers: the last sequence `name` acknowledged per stream.
  std::vector<std::pair<stream_range, std::uint64_t>> cursors(std::string_view name) const;
  // Moves the cursor forward (never back). Returns: false past max_cursors (not kept).
  bool set_cursor(std::string_view name, std::string_view pub, std::string_view type, std::uint64_t seq);

  std::size_t stream_count() const noexcept { return streams_.size(); }
  std::uint64_t bytes() const noexcept { return bytes_; }
  std::uint64_t messages() const noexcept { return messages_; }
  std::size_t cursor_count() const noexcept { return cursor_count_; }
  const stream_store_counters& counters() const noexcept { return counters_; }

 private:
  struct stream {
    std::uint64_t id = 0;
    std::string pub, type;
    std::uint64_t first = 0, last = 0, count = 0, bytes = 0;
    std::uint64_t first_time = 0;  // receive time (ns) of the first retained message
  };
  stream* find(std::string_view pub, std::string_view type);
  stream* create(std::string_view pub, std::string_view type);
  bool write();  // opens the write transaction if none; false when LMDB refuses
  void drop_first(stream& s);
  void drop_all(stream& s);
  void retain(stream& s);
  void load();

  stream_store_options opts_;
  std::unique_ptr<internal::lmdb_env> db_;
  MDB_txn* txn_ = nullptr;
  internal::keyed_map<std::string, stream> streams_;         // stream key -> stream
  absl::flat_hash_map<std::uint64_t, std::string> by_id_;    // stream id (ours) -> stream key
  absl::btree_set<std::pair<std::uint64_t, std::uint64_t>> oldest_;  // (first_time, id) of streams holding messages
  internal::keyed_map<std::string, internal::keyed_map<std::string, std::uint64_t>> cursors_;  // name -> key -> seq
  std::size_t cursor_count_ = 0;
  std::uint64_t next_id_ = 1, bytes_ = 0, messages_ = 0;
  stream_store_counters counters_;
};

// The table key of stream (pub, type): pub's length byte, pub, type.
std::string stream_key(std::string_view pub, std::string_view type);

}  // namespace zmqkit::pubsub::detail
