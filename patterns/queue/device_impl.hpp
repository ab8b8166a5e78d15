// The queue device's state, shared by the files its work is split into
// (private to patterns/queue):
//   device.cpp       construction, the loop (watches, the one timer, drain), receiving
//   dispatch.cpp     requests in: intake, placing them on workers, the queue, answers
//   worker_side.cpp  the backend: READY/HEARTBEAT/DISCONNECT (the lib's worker_protocol
//                    codec), replies, dead and evicted workers, heartbeats
//   admin.cpp        stats snapshots, the admin endpoint, encode_stats
//   durability.cpp   the glue to the LMDB store (store.cpp): accept, ack, commit, recover
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <span>
#include <utility>
#include <variant>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/queue/device.hpp>

#include "pending_queue.hpp"
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/internal/loop_attachment.hpp>
#include <zmqkit/internal/routed.hpp>
#include <zmqkit/internal/worker_protocol.hpp>
#include "reply_cache.hpp"
#include "status_publisher.hpp"
#include "store.hpp"
#include "worker_registry.hpp"

namespace zmqkit::queue {

namespace detail {

// A client's address stack: one frame (its ROUTER identity) unless it came
// through other ROUTERs, so kept inline rather than in an allocation of its own.
using route_frames = absl::InlinedVector<zmq::message_t, 2>;

namespace wp = internal::worker_protocol;
inline constexpr int batch_limit = 512;  // messages taken from one socket per loop turn
// Workers evicted for silence whose late replies are still accepted: at most
// this many, holding at most this many bytes of prefixes, for at most the
// delivery timeout (30 min when that is off).
inline constexpr std::size_t max_evicted_workers = 1024;
inline constexpr std::size_t max_evicted_bytes = 8 << 20;
inline constexpr std::chrono::minutes evicted_retention_when_unbounded{30};

inline std::string_view view(const zmq::message_t& m) noexcept {
  return {static_cast<const char*>(m.data()), m.size()};
}

// A worker's routing identity for logs: as text when it is printable ASCII (a
// ZMQ_ROUTING_ID the worker chose), else hex (libzmq's generated 5-byte ids).
inline std::string printable_identity(std::string_view id) {
  const bool text = !id.empty() && std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  if (text) return std::string(id);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "0x";
  for (const unsigned char c : id) {
    out += hex[c >> 4];
    out += hex[c & 0xf];
  }
  return out;
}

// The frames of the message being handled. The message objects stay from one
// message to the next: libzmq releases what a message held when it receives
// into it, so no message is created and closed again per frame. A handler
// moves out what it keeps; release() frees the rest once a batch is done (a
// large frame nobody took is held no longer than that).
class frame_buffer {
 public:
  std::size_t size() const noexcept { return count_; }
  zmq::message_t& operator[](std::size_t i) noexcept { return parts_[i]; }
  const zmq::message_t& operator[](std::size_t i) const noexcept { return parts_[i]; }
  zmq::message_t& back() noexcept { return parts_[count_ - 1]; }
  zmq::message_t* begin() noexcept { return parts_.data(); }
  zmq::message_t* end() noexcept { return parts_.data() + count_; }
  const zmq::message_t* begin() const noexcept { return parts_.data(); }
  const zmq::message_t* end() const noexcept { return parts_.data() + count_; }

  // Returns: the message the next frame is received into.
  zmq::message_t& next() {
    if (count_ == parts_.size()) parts_.emplace_back();
    return parts_[count_++];
  }
  void drop_last() noexcept { --count_; }
  void clear() noexcept { count_ = 0; }
  void release() noexcept {
    for (zmq::message_t& part : parts_) part.rebuild();
    count_ = 0;
  }
  void assign(std::vector<zmq::message_t> frames) noexcept {
    parts_ = std::move(frames);
    count_ = parts_.size();
  }

 private:
  std::vector<zmq::message_t> parts_;
  std::size_t count_ = 0;  // parts_[0, count_) are the message's frames
};

inline zmq::message_t copy_of(const zmq::message_t& m) {
  zmq::message_t c;
  c.copy(const_cast<zmq::message_t&>(m));  // shares the buffer of large frames
  return c;
}

// Self-pipe: stop() writes a byte (async-signal-safe: zmqkit::loop::stop() would
// stop a loop the device may share, and post() takes a mutex); the loop watches
// the read end.
struct wake_pipe {
  int fds[2] = {-1, -1};
  wake_pipe() {
    if (::pipe(fds) != 0) throw zmqkit::error(errc::bad_config, "pipe", "cannot create the stop pipe");
    for (int fd : fds) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  ~wake_pipe() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
  void drain() const {
    char buf[64];
    while (::read(fds[0], buf, sizeof buf) > 0) {
    }
  }
};

}  // namespace detail

struct device::impl {
  using route_frames = detail::route_frames;
  using handle = std::uint64_t;

  struct request {
    route_frames route;  // the client's address stack
    zmq::message_t body;
    std::optional<message_id> id;
    // The id as dedup and the reply cache know it: with CURVE on the frontend,
    // scoped by the client's authenticated key (see scoped_key); else the id.
    std::optional<internal::hashed_id> key;
    std::string type;  // empty for a plain body
    std::uint8_t priority = default_priority;
    std::optional<wall_time> expires;
    std::size_t bytes = 0;  // body and route: what it costs while it waits
    int deliveries = 0;
    std::int64_t order = 0;  // key in the pending queue while pending
    bool pending = false;
    // While at a worker: the number of this delivery (the worker's held_request
    // carries it too; a held request with another number was taken back from
    // that worker). 0: not at a worker.
    std::uint64_t delivery = 0;
    // With a store: its record (0: none), and whether it asked for a stored-ack.
    std::uint64_t stored = 0;
    bool wants_ack = false;
  };

  impl(zmq::context_t& ctx, device_options o);

  static void bind(zmq::socket_t& s, const std::string& endpoint, const char* role) {
    try {
      s.bind(endpoint);
    } catch (const zmq::error_t& e) {
      throw zmqkit::error(errc::bad_config, role,
                          std::string("cannot bind ") + role + " '" + endpoint + "': " + e.what());
    }
  }

  // --- configuration and state (guarded by mu while run() processes) ------
  device_options opts;
  const zmqkit::clock& clk;
  zmq::socket_t frontend;
  zmq::socket_t backend;
  std::optional<zmq::socket_t> admin;
  // Per CURVE side: its handshake monitor (declared after the sockets, so
  // destroyed before them) and what was last logged, for rate-limited logs.
  struct refusal_watch {
    std::optional<zmqkit::handshake_monitor> monitor;
    std::uint64_t logged = 0;
    steady_time next_log{};
  };
  refusal_watch frontend_refusals, backend_refusals;
  decode_limits limits;
  detail::wake_pipe wake;
  std::atomic<bool> stop_requested{false};
  // The loop driving the device: its own for run(), or the caller's (attach).
  // After the sockets and the pipe, so its watches are cancelled before they close.
  internal::loop_attachment driven;
  bool finished = false;  // drained: run() returns, the device left its loop
  bool frontend_curve = false;  // clients authenticate: dedup and cache are per client key

  // A worker removed for silence may only be slow (a ZeroMQ guide worker sends
  // nothing while it works): what it held and announced is kept, so that its
  // late reply still answers a request nobody has answered, and registers it again.
  struct evicted_worker {
    std::vector<std::string> prefixes;
    std::size_t capacity = 1;
    detail::held_list held;
    steady_time evicted_at{};
    std::size_t bytes = 0;
  };
  internal::keyed_map<std::string, evicted_worker> evicted;
  std::deque<std::pair<steady_time, std::string>> evicted_order;  // oldest first
  std::size_t evicted_bytes = 0;

  mutable std::mutex mu;
  // Handles are the device's own numbers, not network data: Abseil's default hash.
  // No insertion happens while a request& is held (only on_frontend inserts).
  using request_table = absl::flat_hash_map<handle, request>;
  request_table requests;
  internal::keyed_map<internal::hashed_id, handle> active_ids;  // pending or in flight; keyed: ids come from the network
  // Requests with a TTL, pending or at a worker: a timer, not a scan per message.
  std::set<std::pair<wall_time, handle>> ttl_index;
  // Deliveries by when the delivery timeout takes them back. The timeout is one
  // constant, so deadlines arrive in order: a FIFO, not a tree. A delivery that
  // ended earlier stays until it reaches the front or a compaction (its
  // request's delivery number no longer matches): O(1) per request, no node.
  struct delivery_deadline_entry {
    steady_time deadline;
    handle request;
    std::uint64_t delivery;
  };
  std::deque<delivery_deadline_entry> delivery_deadlines;
  std::size_t at_workers = 0;  // requests with a live delivery
  // Pending requests by when their no-service time ends, in enqueue order (so
  // in deadline order: a FIFO again). Only the due ones are looked at, so a
  // backlog of many types costs nothing per tick. An entry whose request left
  // the queue (its order key no longer matches) is skipped or compacted away.
  struct no_service_entry {
    steady_time deadline;
    handle request;
    std::int64_t order;
  };
  std::deque<no_service_entry> no_service_deadlines;
  std::uint64_t next_delivery = 1;
  std::size_t pending_bytes = 0;  // sum of the pending requests' bytes
  detail::pending_queue pending;
  detail::worker_registry workers;
  detail::reply_cache cache;
  handle next_handle = 1;
  steady_time next_heartbeat{};
  steady_time next_sweep{};
  bool draining = false;
  steady_time drain_deadline{};
  detail::frame_buffer frames;  // the message being handled
  device_stats counters;               // counters only; gauges filled by snapshot()
  steady_time next_refusal_log{};      // READY refusals are logged at most once a second
  std::uint64_t refusals_not_logged = 0;
  std::size_t workers_peak = 0;        // most workers connected since memory was last given back
  std::optional<steady_time> trim_at;  // when to give freed memory back
  detail::status_publisher status;     // device_status for readers on other threads
  // Durability (opts.store): the store, and under batch and none the client
  // messages waiting for the commit that covers what they announce.
  std::unique_ptr<detail::request_store> store;
  std::vector<std::pair<route_frames, zmq::message_t>> held_sends;
  steady_time next_store_log{};  // a failing commit is logged at most once a second

  // --- logging and counting -----------------------------------------------
  void log(log_level level, const std::string& text) const;
  void drop(const char* reason, const std::string& detail = {});

  device_stats snapshot() const;

  // Logs refused CURVE handshakes at most once per 10 s per side, with the
  // counts so far and the last peer refused.
  void report_refusals(steady_time now);

  // --- sending --------------------------------------------------------------
  // Sends [route..., empty, body] to a client, moving the route's frames out
  // (every caller is done with the route). Returns: false (counted) when the
  // client is gone or not reading.
  bool send_to_client(route_frames& route, zmq::message_t body);

  void send_error(route_frames& route, std::optional<message_id> id, reply_error code,
                  std::string_view reason);

  // Sends [worker, route..., empty, body]. Returns: false when the worker is gone.
  bool send_to_worker(const detail::worker& w, const request& r);

  // --- request lifecycle ------------------------------------------------------
  // Ends a request: forgets it everywhere. A worker still holding it keeps the
  // slot (it is still busy with it) until it replies, late, or dies: a held
  // request whose handle is gone is one that was already answered.
  void forget(handle h);
  void forget(request_table::iterator it);

  void unqueue(request& r);

  // Bookkeeping for a request just taken out of the pending queue. Its TTL timer
  // stays: TTL is enforced while it is at a worker too.
  void left_queue(request& r);

  // Takes a request back from the worker holding it (that worker keeps the slot).
  void withdraw(request& r);

  // Returns: whether `e` is still the delivery of a request at a worker.
  bool live(const delivery_deadline_entry& e) const;

  // Answers a request with an error and ends it.
  void fail(handle h, reply_error code, std::string_view reason);

  bool expired_now(const request& r) const { return r.expires && *r.expires <= clk.wall_now(); }

  void enqueue(handle h, request& r, bool at_head);

  // Returns: whether `e` is the queue entry of a request still waiting there.
  bool still_pending(const no_service_entry& e) const;

  // Sends the request to `w` (which has a free slot) and records it there.
  // Returns: false if `w` turned out to be gone: the worker is then removed
  // (its other requests requeued); the caller places this one again.
  bool hand_over(detail::worker& w, handle h, request& r);

  // Gives the request to `w`. Returns: false if `w` turned out to be gone
  // (the worker is then removed and the request placed again).
  bool deliver(detail::worker& w, handle h, request& r);

  // Returns: why a new request may not wait in the queue, or an empty string.
  std::string queue_full_for(const request& r) const;

  // Gives a request (not pending) to the LRU ready worker serving its type, or
  // queues it. A new request (`arriving`) that would wait past a backlog bound
  // is answered overloaded; the bounds are checked only when it must wait, so
  // a full queue never refuses work an idle worker could take. Then places
  // whatever a worker found gone on the way held (see place_taken_back).
  void place(handle h, bool at_head, bool arriving = false);

  // Requests taken back from removed workers, waiting to be placed again at
  // the head of their priority. A work list, not recursion: placing one may
  // find its worker gone too, whose requests join the list, so a chain of
  // dead workers costs no stack (place -> hand_over -> remove_worker -> place
  // once nested as deep as the chain was long).
  std::vector<handle> taken_back;
  bool placing_taken_back = false;

  void place_taken_back();

  void place_one(handle h, bool at_head, bool arriving = false);

  // A worker has free slots (READY, or a reply freed one): fill them with the
  // best pending requests it serves. While any is left free it stays in the
  // LRU list (the registry keeps that invariant).
  void worker_ready(detail::worker& w);

  // Removes a worker and places what it held again (remove_worker).
  void drop_worker(detail::worker& w, bool may_return = false);

  // Removes a worker; every request it held is listed to be requeued at the
  // head of its priority (taken_back: the caller places them), or answered
  // dead-letter when it has used up its deliveries.
  // `may_return`: it was only silent, so remember it (see evicted_worker).
  void remove_worker(detail::worker& w, bool may_return = false);

  void remember_evicted(const detail::worker& w, const detail::held_list& held);

  void forget_evicted(std::string_view identity);

  void expire_oldest_evicted();

  // A reply from a worker evicted for silence: registers it again as it was
  // (prefixes, capacity), holding what it held, so the reply is matched as
  // from any worker. Returns: nullptr when it is not remembered.
  detail::worker* revive(std::string_view identity);

  // The client's identity as CURVE authenticated it: the ZAP handler's
  // User-Id (zmqkit::zap_authenticator: the key's Z85 text). Empty without one.
  static std::string_view client_key(const zmq::message_t& frame);

  // Returns: `id` scoped by `owner`, so that a client that learns another's
  // request id can neither take over its reply (dedup) nor read it from the
  // cache. A 128-bit keyed hash (two SipHash-2-4 under the per-process key).
  static message_id scoped_key(const message_id& id, std::string_view owner);

  // --- frontend ---------------------------------------------------------------
  void on_frontend();

  // --- backend ----------------------------------------------------------------
  void on_backend();

  // Forwards a worker's reply and ends the request. The first reply wins: a
  // request taken back from a worker (delivery timeout) and queued again, or
  // held by another worker, is answered by whichever worker replies first.
  void answer(request_table::iterator it, zmq::message_t& reply);

  // Returns: the index in w.holding of the request the reply in `frames`
  // answers; nullopt when it answers nothing the worker holds (a duplicate, or
  // a stranger's id). A ZMK/1 reply names its request by correlation_id, and is
  // matched by that alone. A reply without one (a plain Paranoid Pirate body,
  // or not an envelope at all) is matched, at a worker of capacity 1, to the one
  // request it holds; at a worker holding several, by the address stack it
  // echoes, oldest first.
  std::optional<std::size_t> match_reply(const detail::worker& w);

  // READY: [0x01] (capacity 1, every type), [0x01, prefix array] or
  // [0x01, {"prefixes": [...], "capacity": n}]. A malformed announcement is
  // counted and dropped: the worker is not registered (nor changed).
  void on_ready(std::string_view identity, detail::worker* w);

  // A READY the device does not accept: the worker is not registered (nor
  // changed); counted, and logged at most once a second (a flood of them must
  // not flood the log).
  void refuse_ready(const char* reason, const std::string& why);

  // Once most workers have left (a registration flood, or a fleet scaled down),
  // hands the freed heap back to the system a second later (libzmq frees their
  // connections meanwhile): glibc keeps it otherwise, and the device would stay
  // at its peak size for ever.
  void give_back_memory(steady_time now);

  // --- admin ------------------------------------------------------------------
  void on_admin();

  // --- durability (opts.store; the storage itself is store.cpp) ---------------
  // Keeps a reply for retries of its request; with a store, durably, in the
  // write that records the request's completion.
  void keep_reply(const request& r, const zmq::message_t& reply);

  // Stores a new request (and acknowledges it when asked). Returns: false when
  // the store refused it: it is answered overloaded and not accepted.
  bool accept_stored(request& r);

  // The stored-acknowledgement (docs/protocol.md 7.9): sent, under batch and none, only
  // after the commit that covers the request (send_durable holds it till then).
  void send_ack(const route_frames& route, const std::optional<message_id>& id, std::uint8_t priority);

  // Sends what announces a store write (a stored-ack, a reply, a cached reply);
  // under batch and none it waits for the turn's commit. Errors are sent at once.
  // Like send_to_client, it moves the route's frames out.
  void send_durable(route_frames& route, zmq::message_t&& body);

  // End of a loop turn: commits (batch: and syncs) what it wrote, then sends what
  // waited for that. A failed commit is retried next turn; the messages wait.
  void flush_store();

  // Start-up: the stored requests queued again (in the order stored, with their
  // priority, expiry and delivery count; one delivered before is marked
  // zmk.redelivered), and the stored replies back in the reply cache.
  void recover();

  // --- timers -----------------------------------------------------------------
  void on_timers();

  void sweep(steady_time now);

  void heartbeat(steady_time now);

  void begin_drain();

  // The most frames a message may have: a reply is [worker, route..., empty, body].
  std::size_t max_frames() const { return opts.max_route_frames + 3; }

  // Receives one message into `frames`, keeping at most max_frames() of its
  // frames (the rest are received and freed one by one, so a message of a
  // million frames costs no memory). Returns: nullopt when none is waiting,
  // else whether it fitted.
  std::optional<bool> receive_bounded(zmq::socket_t& s);

  // Receives up to batch_limit messages from `s` into `frames`, calling handler for each.
  template <class Handler>
  void drain_socket(zmq::socket_t& s, Handler&& handler) {
    struct release_frames {
      detail::frame_buffer& frames;
      ~release_frames() { frames.release(); }
    } at_end{frames};
    for (int i = 0; i < detail::batch_limit; ++i) {
      frames.clear();
      std::optional<bool> fits;
      try {
        fits = receive_bounded(s);
      } catch (const zmq::error_t& e) {
        log(log_level::warn, std::string("receive failed: ") + e.what());
        return;
      }
      if (!fits) return;
      if (!*fits) {
        drop("too-many-frames", "more than " + std::to_string(max_frames()) + " frames");
        continue;
      }
      try {
        handler();
      } catch (const std::exception& e) {  // never let one message stop the device
        drop("internal-error", e.what());
      }
    }
  }

  // --- the loop ---------------------------------------------------------------
  // Handlers: each takes the lock once for its batch (stats() reads under it).
  // Backend first: replies free workers for the requests that follow.
  void watch();

  void attach(zmqkit::loop& l);

  void run();

  void serve(zmq::socket_t& s, void (impl::*handler)());

  // After each batch: stop() noticed, the store's group commit (nothing it
  // covers leaves before it), and the end of a drain.
  void end_batch(bool commit = true);

  // The device's one timer, on its clock: the next sweep (every tick: TTL,
  // no-service, silent workers), heartbeat, delivery deadline or drain deadline.
  void arm_timer();

  void on_timer();

  // Drained (nothing left, or the drain deadline passed): answers what is
  // left 'unavailable' and leaves the loop; run() returns.
  void finish_if_drained();
};

}  // namespace zmqkit::queue
