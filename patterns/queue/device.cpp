#include <fcntl.h>
#include <malloc.h>
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

#include "device_access.hpp"
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

namespace {

// A client's address stack: one frame (its ROUTER identity) unless it came
// through other ROUTERs, so kept inline rather than in an allocation of its own.
using route_frames = absl::InlinedVector<zmq::message_t, 2>;

namespace wp = internal::worker_protocol;
constexpr int batch_limit = 512;  // messages taken from one socket per loop turn
// Workers evicted for silence whose late replies are still accepted: at most
// this many, holding at most this many bytes of prefixes, for at most the
// delivery timeout (30 min when that is off).
constexpr std::size_t max_evicted_workers = 1024;
constexpr std::size_t max_evicted_bytes = 8 << 20;
constexpr std::chrono::minutes evicted_retention_when_unbounded{30};

std::string_view view(const zmq::message_t& m) noexcept {
  return {static_cast<const char*>(m.data()), m.size()};
}

// A worker's routing identity for logs: as text when it is printable ASCII (a
// ZMQ_ROUTING_ID the worker chose), else hex (libzmq's generated 5-byte ids).
std::string printable_identity(std::string_view id) {
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

zmq::message_t copy_of(const zmq::message_t& m) {
  zmq::message_t c;
  c.copy(const_cast<zmq::message_t&>(m));  // shares the buffer of large frames
  return c;
}

// Hashes the address stack frames[first, last) (a request's route, or a reply's
// echo of it) with the keyed hash: the frames are length-prefixed, so no two
// different stacks hash the same bytes, and peers cannot craft collisions.
std::size_t route_hash(std::span<const zmq::message_t> frames) {
  std::string stack;
  for (const zmq::message_t& frame : frames) {
    const auto size = static_cast<std::uint32_t>(frame.size());
    stack.append(reinterpret_cast<const char*>(&size), sizeof size);
    stack.append(view(frame));
  }
  return internal::keyed_hash_bytes(stack);
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

}  // namespace

struct device::impl {
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

  impl(zmq::context_t& ctx, device_options o)
      : opts(std::move(o)),
        clk(opts.clock ? *opts.clock : zmqkit::clock::real()),
        frontend(ctx, zmq::socket_type::router),
        backend(ctx, zmq::socket_type::router),
        cache(opts.reply_cache, opts.reply_cache_bytes),
        status(opts.status_interval, opts.max_status_workers, clk.now()) {
    // First, so that a store that fails its checks stops start-up before anything binds.
    if (!opts.store.empty())
      store = std::make_unique<detail::request_store>(detail::store_options{.dir = opts.store,
                                                                            .sync = opts.store_sync_policy,
                                                                            .max_bytes = opts.store_max_bytes,
                                                                            .max_replies = opts.reply_cache,
                                                                            .max_reply_bytes = opts.reply_cache_bytes});
    if (opts.frontend.empty() || opts.backend.empty())
      throw zmqkit::error(errc::bad_config, "endpoint", "queue device: frontend and backend are required");
    if (opts.heartbeat.count() <= 0 || opts.liveness < 1 || opts.max_requeue < 0 || opts.tick.count() <= 0 ||
        opts.delivery_timeout.count() < 0)
      throw zmqkit::error(errc::bad_config, "timing",
                          "queue device: heartbeat and tick must be > 0, liveness >= 1, max-requeue >= 0, "
                          "delivery timeout >= 0");
    limits.max_frame_bytes = opts.max_frame_bytes;
    zmqkit::socket_options so = opts.socket;
    so.max_message_bytes = static_cast<std::int64_t>(opts.max_frame_bytes);
    for (auto* s : {&frontend, &backend}) {
      zmqkit::socket_options side = so;
      const auto& security = s == &frontend ? opts.frontend_security : opts.backend_security;
      if (security) side.security = *security;
      apply(*s, side);
      s->set(zmq::sockopt::router_mandatory, true);
      // A CURVE side counts and logs its refused handshakes (attached before bind: none missed).
      if (std::holds_alternative<zmqkit::curve_server>(side.security))
        (s == &frontend ? frontend_refusals : backend_refusals).monitor.emplace(ctx, *s);
    }
    const zmqkit::security& front_security = opts.frontend_security ? *opts.frontend_security : so.security;
    frontend_curve = std::holds_alternative<zmqkit::curve_server>(front_security);
    bind(frontend, opts.frontend, "frontend");
    bind(backend, opts.backend, "backend");
    if (!opts.admin.empty()) {
      admin.emplace(ctx, zmq::socket_type::router);
      apply(*admin, so);
      admin->set(zmq::sockopt::router_mandatory, true);
      bind(*admin, opts.admin, "admin");
    }
    if (store) recover();
    next_heartbeat = clk.now() + opts.heartbeat;
    status.publish(clk.now(), snapshot(), workers, draining);
  }

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
  wake_pipe wake;
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
    std::vector<detail::held_request> held;
    steady_time evicted_at{};
    std::size_t bytes = 0;
  };
  internal::keyed_map<std::string, evicted_worker> evicted;
  std::deque<std::pair<steady_time, std::string>> evicted_order;  // oldest first
  std::size_t evicted_bytes = 0;

  mutable std::mutex mu;
  // Handles are the device's own numbers, not network data: Abseil's default hash.
  // No insertion happens while a request& is held (only on_frontend inserts).
  absl::flat_hash_map<handle, request> requests;
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
  std::vector<zmq::message_t> frames;  // reused receive buffer
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
  void log(log_level level, const std::string& text) const {
    if (opts.log) opts.log(level, text);
  }
  void drop(const char* reason, const std::string& detail = {}) {
    ++counters.dropped[reason];
    log(log_level::debug, std::string("dropped (") + reason + ")" + (detail.empty() ? "" : ": " + detail));
  }

  device_stats snapshot() const {
    device_stats s = counters;
    s.pending = pending.size();
    for (std::uint8_t p = 0; p < 10; ++p) s.pending_by_priority[p] = pending.size(p);
    s.pending_by_type = pending.size_by_type(opts.stats_top_types);
    s.in_flight = requests.size() - pending.size();
    s.workers_ready = workers.ready_count();
    s.workers_busy = workers.busy_count();
    s.worker_capacity = workers.slot_count();
    s.reply_cache_size = cache.size();
    for (auto [watch, out] : {std::pair{&frontend_refusals, &s.frontend_curve_refused},
                              std::pair{&backend_refusals, &s.backend_curve_refused}}) {
      if (!watch->monitor) continue;
      const auto c = watch->monitor->stats();
      *out = {{"unknown_key", c.refused_unknown_key},
              {"plaintext", c.refused_plaintext},
              {"bad_handshake", c.refused_bad_handshake}};
    }
    s.reply_cache_bytes = cache.bytes();
    s.pending_bytes = pending_bytes;
    if (store) {
      s.has_store = true;
      const auto& c = store->counters();
      s.store_syncs = c.syncs;
      s.store_sync_us = c.sync_us;
      s.store_last_sync_us = c.last_sync_us;
      s.store_errors = c.errors;
      s.store_bytes = store->bytes();
    }
    return s;
  }

  // Logs refused CURVE handshakes at most once per 10 s per side, with the
  // counts so far and the last peer refused.
  void report_refusals(steady_time now) {
    for (auto [watch, side] : {std::pair{&frontend_refusals, "frontend"}, std::pair{&backend_refusals, "backend"}}) {
      if (!watch->monitor || now < watch->next_log) continue;
      const auto c = watch->monitor->stats();
      const std::uint64_t total = c.refused_unknown_key + c.refused_plaintext + c.refused_bad_handshake;
      if (total == watch->logged) continue;
      const auto last = watch->monitor->last_failure();
      log(log_level::warn, std::string(side) + ": " + std::to_string(total - watch->logged) +
                               " CURVE handshake(s) refused (so far unknown_key=" +
                               std::to_string(c.refused_unknown_key) + " plaintext=" +
                               std::to_string(c.refused_plaintext) + " bad_handshake=" +
                               std::to_string(c.refused_bad_handshake) + ")" +
                               (last ? "; last: " + last->reason + " from " + last->peer + " (" + last->detail + ")"
                                     : ""));
      watch->logged = total;
      watch->next_log = now + std::chrono::seconds(10);
    }
  }

  // --- sending --------------------------------------------------------------
  // Sends [route..., empty, body] to a client, moving the route's frames out
  // (every caller is done with the route). Returns: false (counted) when the
  // client is gone or not reading.
  bool send_to_client(route_frames& route, zmq::message_t body) {
    try {
      for (auto& r : route)
        if (!frontend.send(std::move(r), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
          drop("client-not-reading");
          return false;
        }
      frontend.send(zmq::message_t{}, zmq::send_flags::sndmore);
      frontend.send(std::move(body), zmq::send_flags::none);
      return true;
    } catch (const zmq::error_t& e) {
      drop("client-unreachable", e.what());
      return false;
    }
  }

  void send_error(route_frames& route, std::optional<message_id> id, reply_error code,
                  std::string_view reason) {
    ++counters.rejected[std::string(to_string(code))];
    send_to_client(route, encode(make_error_reply(id, code, reason, clk)));
  }

  // Sends [worker, route..., empty, body]. Returns: false when the worker is gone.
  bool send_to_worker(const detail::worker& w, const request& r) {
    try {
      zmq::message_t to(w.identity.data(), w.identity.size());
      if (!backend.send(std::move(to), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
      for (const auto& f : r.route) backend.send(copy_of(f), zmq::send_flags::sndmore);
      backend.send(zmq::message_t{}, zmq::send_flags::sndmore);
      backend.send(copy_of(r.body), zmq::send_flags::none);
      return true;
    } catch (const zmq::error_t&) {
      return false;
    }
  }

  // --- request lifecycle ------------------------------------------------------
  // Ends a request: forgets it everywhere. A worker still holding it keeps the
  // slot (it is still busy with it) until it replies, late, or dies: a held
  // request whose handle is gone is one that was already answered.
  void forget(handle h) {
    const auto it = requests.find(h);
    if (it == requests.end()) return;
    request& r = it->second;
    if (r.pending) unqueue(r);
    if (r.delivery) withdraw(r);
    if (r.expires) ttl_index.erase({*r.expires, h});
    if (r.key) active_ids.erase(*r.key);
    requests.erase(it);
  }

  void unqueue(request& r) {
    pending.erase(r.priority, r.type, r.order);
    left_queue(r);
  }

  // Bookkeeping for a request just taken out of the pending queue. Its TTL timer
  // stays: TTL is enforced while it is at a worker too.
  void left_queue(request& r) {
    pending_bytes -= r.bytes;
    r.pending = false;
  }

  // Takes a request back from the worker holding it (that worker keeps the slot).
  void withdraw(request& r) {
    r.delivery = 0;
    --at_workers;
  }

  // Returns: whether `e` is still the delivery of a request at a worker.
  bool live(const delivery_deadline_entry& e) const {
    const auto it = requests.find(e.request);
    return it != requests.end() && it->second.delivery == e.delivery;
  }

  // Answers a request with an error and ends it.
  void fail(handle h, reply_error code, std::string_view reason) {
    request& r = requests.at(h);
    if (code == reply_error::expired) ++counters.expired;
    if (code == reply_error::dead_letter) {
      ++counters.dead_lettered;
      log(log_level::warn, "dead-letter: request " + (r.id ? r.id->to_string() : std::string("(plain)")) +
                               " of type '" + r.type + "' lost " + std::to_string(r.deliveries) + " workers");
      zmq::message_t reply = encode(make_error_reply(r.id, code, reason, clk));
      keep_reply(r, reply);
      ++counters.rejected[std::string(to_string(code))];
      send_durable(r.route, std::move(reply));
    } else {
      // Unavailable (the device stopping) is no completion: a stored request stays stored.
      if (r.stored && code != reply_error::unavailable) store->complete(r.stored, {}, nullptr);
      send_error(r.route, r.id, code, reason);
    }
    forget(h);
  }

  bool expired_now(const request& r) const { return r.expires && *r.expires <= clk.wall_now(); }

  void enqueue(handle h, request& r, bool at_head) {
    r.order = at_head ? pending.next_front_key() : pending.next_back_key();
    r.pending = true;
    pending_bytes += r.bytes;
    pending.insert(h, r.priority, r.type, r.order);
    // A stored-acknowledged request is the device's to keep: its producer has moved
    // on, so it waits for a worker (bounded by its TTL and the store), never no-service.
    if (r.wants_ack) return;
    if (no_service_deadlines.size() > 2 * pending.size() + 64)
      std::erase_if(no_service_deadlines, [this](const no_service_entry& e) { return !still_pending(e); });
    no_service_deadlines.push_back({clk.now() + opts.no_service, h, r.order});
  }

  // Returns: whether `e` is the queue entry of a request still waiting there.
  bool still_pending(const no_service_entry& e) const {
    const auto it = requests.find(e.request);
    return it != requests.end() && it->second.pending && it->second.order == e.order;
  }

  // Sends the request to `w` (which has a free slot) and records it there.
  // Returns: false if `w` turned out to be gone: the worker is then removed
  // (its other requests requeued); the caller places this one again.
  bool hand_over(detail::worker& w, handle h, request& r) {
    const steady_time sent_at = clk.now();  // before the worker can see it
    if (!send_to_worker(w, r)) {
      log(log_level::info, "worker " + printable_identity(w.identity) + " unreachable, removed");
      remove_worker(w);
      return false;
    }
    ++r.deliveries;
    ++counters.routed;
    if (r.stored) store->delivered(r.stored, static_cast<std::uint32_t>(r.deliveries));
    r.delivery = next_delivery++;
    ++at_workers;
    if (opts.delivery_timeout.count() > 0) {
      // Ended deliveries left behind are dropped once they outnumber the live ones.
      if (delivery_deadlines.size() > 2 * at_workers + 64)
        std::erase_if(delivery_deadlines, [this](const delivery_deadline_entry& e) { return !live(e); });
      delivery_deadlines.push_back({sent_at + opts.delivery_timeout, h, r.delivery});
    }
    // The route hash is only needed to match replies when a worker holds several.
    workers.use(w, {h, r.id, w.capacity > 1 ? route_hash(r.route) : 0, r.delivery});
    return true;
  }

  // Gives the request to `w`. Returns: false if `w` turned out to be gone
  // (the worker is then removed and the request placed again).
  bool deliver(detail::worker& w, handle h) {
    request& r = requests.at(h);
    if (expired_now(r)) {
      fail(h, reply_error::expired, "ttl passed before a worker took it");
      return true;
    }
    return hand_over(w, h, r);
  }

  // Returns: why a new request may not wait in the queue, or an empty string.
  std::string queue_full_for(const request& r) const {
    if (pending.size() >= opts.max_pending)
      return "more than " + std::to_string(opts.max_pending) + " requests waiting";
    if (pending.count(r.type) >= opts.max_pending_per_type)
      return "more than " + std::to_string(opts.max_pending_per_type) + " requests of this type waiting";
    if (pending_bytes + r.bytes > opts.max_pending_bytes)
      return "more than " + std::to_string(opts.max_pending_bytes) + " bytes of requests waiting";
    return {};
  }

  // Gives a request (not pending) to the LRU ready worker serving its type, or
  // queues it. A new request (`arriving`) that would wait past a backlog bound
  // is answered overloaded; the bounds are checked only when it must wait, so
  // a full queue never refuses work an idle worker could take. Then places
  // whatever a worker found gone on the way held (see place_taken_back).
  void place(handle h, bool at_head, bool arriving = false) {
    place_one(h, at_head, arriving);
    place_taken_back();
  }

  // Requests taken back from removed workers, waiting to be placed again at
  // the head of their priority. A work list, not recursion: placing one may
  // find its worker gone too, whose requests join the list, so a chain of
  // dead workers costs no stack (place -> hand_over -> remove_worker -> place
  // once nested as deep as the chain was long).
  std::vector<handle> taken_back;
  bool placing_taken_back = false;

  void place_taken_back() {
    if (placing_taken_back) return;  // an outer call is working through the list
    placing_taken_back = true;
    std::size_t done = 0;
    struct reset {  // even if placing one throws: the rest stay listed
      impl& self;
      std::size_t& done;
      ~reset() {
        self.taken_back.erase(self.taken_back.begin(),
                              self.taken_back.begin() + static_cast<std::ptrdiff_t>(done));
        self.placing_taken_back = false;
      }
    } guard{*this, done};
    while (done < taken_back.size()) {  // the list grows while it is worked through
      const handle h = taken_back[done++];
      const auto it = requests.find(h);
      if (it == requests.end() || it->second.pending || it->second.delivery) continue;  // answered meanwhile
      place_one(h, true);
    }
  }

  void place_one(handle h, bool at_head, bool arriving = false) {
    for (;;) {
      request& r = requests.at(h);
      if (draining) return fail(h, reply_error::unavailable, "shutting down");
      detail::worker* w = workers.lru_serving(r.type);
      if (!w) {
        if (arriving)
          if (const std::string full = queue_full_for(r); !full.empty())
            return fail(h, reply_error::overloaded, full);
        return enqueue(h, r, at_head);
      }
      if (deliver(*w, h)) return;
    }
  }

  // A worker has free slots (READY, or a reply freed one): fill them with the
  // best pending requests it serves. While any is left free it stays in the
  // LRU list (the registry keeps that invariant).
  void worker_ready(detail::worker& w) {
    while (!draining && !w.full()) {
      const auto h = pending.pop_best(w.prefixes);
      if (!h) return;
      request& r = requests.at(*h);
      left_queue(r);
      if (expired_now(r)) {
        fail(*h, reply_error::expired, "ttl passed before a worker took it");
        continue;
      }
      if (!hand_over(w, *h, r)) {  // w is gone
        place(*h, true);
        return;
      }
    }
  }

  // Removes a worker and places what it held again (remove_worker).
  void drop_worker(detail::worker& w, bool may_return = false) {
    remove_worker(w, may_return);
    place_taken_back();
  }

  // Removes a worker; every request it held is listed to be requeued at the
  // head of its priority (taken_back: the caller places them), or answered
  // dead-letter when it has used up its deliveries.
  // `may_return`: it was only silent, so remember it (see evicted_worker).
  void remove_worker(detail::worker& w, bool may_return = false) {
    const std::vector<detail::held_request> held = std::move(w.holding);
    w.holding.clear();
    if (may_return && !held.empty()) remember_evicted(w, held);
    workers.remove(w);
    // Newest first, each to the head of its priority: they keep their delivery order.
    for (auto it = held.rbegin(); it != held.rend(); ++it) {
      const handle h = it->request;
      const auto found = requests.find(h);
      // Already answered, or taken back from this worker earlier: nothing to requeue.
      if (found == requests.end() || found->second.delivery != it->delivery) continue;
      request& r = found->second;
      withdraw(r);
      if (draining) {
        fail(h, reply_error::unavailable, "shutting down; its worker died");
        continue;
      }
      if (r.deliveries > opts.max_requeue) {
        fail(h, reply_error::dead_letter,
             "delivered " + std::to_string(r.deliveries) + " times; every worker holding it died");
        continue;
      }
      ++counters.requeued;
      taken_back.push_back(h);
    }
  }

  void remember_evicted(const detail::worker& w, const std::vector<detail::held_request>& held) {
    forget_evicted(w.identity);
    evicted_worker e{w.prefixes, w.capacity, held, clk.now(), w.identity.size()};
    for (const auto& p : w.prefixes) e.bytes += p.size() + sizeof(std::string);
    e.bytes += held.size() * sizeof(detail::held_request) + sizeof(evicted_worker);
    evicted_bytes += e.bytes;
    evicted_order.emplace_back(e.evicted_at, w.identity);
    evicted.emplace(w.identity, std::move(e));
    while (!evicted_order.empty() && (evicted.size() > max_evicted_workers || evicted_bytes > max_evicted_bytes ||
                                      evicted_order.size() > 2 * max_evicted_workers))
      expire_oldest_evicted();
  }

  void forget_evicted(const std::string& identity) {
    const auto it = evicted.find(identity);
    if (it == evicted.end()) return;
    evicted_bytes -= it->second.bytes;
    evicted.erase(it);  // its entry in evicted_order is skipped when it comes up
  }

  void expire_oldest_evicted() {
    const auto [at, identity] = std::move(evicted_order.front());
    evicted_order.pop_front();
    if (const auto it = evicted.find(identity); it != evicted.end() && it->second.evicted_at == at)
      forget_evicted(identity);
  }

  // A reply from a worker evicted for silence: registers it again as it was
  // (prefixes, capacity), holding what it held, so the reply is matched as
  // from any worker. Returns: nullptr when it is not remembered.
  detail::worker* revive(const std::string& identity) {
    const auto it = evicted.find(identity);
    if (it == evicted.end()) return nullptr;
    evicted_worker e = std::move(it->second);
    forget_evicted(identity);
    detail::worker& w = workers.add(identity, std::move(e.prefixes), e.capacity, clk.now());
    for (auto& held : e.held) workers.use(w, std::move(held));
    ++counters.workers_returned;
    log(log_level::info, "worker evicted for silence replied: registered again, capacity " +
                             std::to_string(w.capacity));
    return &w;
  }

  // The client's identity as CURVE authenticated it: the ZAP handler's
  // User-Id (zmqkit::zap_authenticator: the key's Z85 text). Empty without one.
  static std::string_view client_key(const zmq::message_t& frame) {
    const char* user_id = zmq_msg_gets(frame.handle(), "User-Id");
    return user_id ? std::string_view(user_id) : std::string_view();
  }

  // Returns: `id` scoped by `owner`, so that a client that learns another's
  // request id can neither take over its reply (dedup) nor read it from the
  // cache. A 128-bit keyed hash (two SipHash-2-4 under the per-process key).
  static message_id scoped_key(const message_id& id, std::string_view owner) {
    if (owner.empty()) return id;
    std::string input(id.as_bytes());
    input += owner;
    const std::uint64_t high = internal::keyed_hash_bytes(input);
    input += '\x01';
    const std::uint64_t low = internal::keyed_hash_bytes(input);
    message_id key;
    std::memcpy(key.bytes.data(), &high, 8);
    std::memcpy(key.bytes.data() + 8, &low, 8);
    return key;
  }

  // --- frontend ---------------------------------------------------------------
  void on_frontend() {
    const std::optional<std::size_t> stack = internal::route_length(frames);  // route empty body
    if (!stack) return drop("frontend-frames", std::to_string(frames.size()) + " frames");
    const std::size_t delimiter = *stack;
    ++counters.received;
    std::size_t route_bytes = 0;
    for (std::size_t i = 0; i < delimiter; ++i) route_bytes += frames[i].size();
    // The route is kept with the request and copied to the worker: bounded.
    if (delimiter > opts.max_route_frames || route_bytes > opts.max_route_bytes)
      return drop("address-stack", std::to_string(delimiter) + " frames, " + std::to_string(route_bytes) + " bytes");
    route_frames route;
    for (std::size_t i = 0; i < delimiter; ++i) route.push_back(std::move(frames[i]));
    zmq::message_t& body = frames.back();

    request r;
    std::optional<envelope_view> env;
    try {
      env = decode_if_envelope(view(body), limits);
    } catch (const zmqkit::error& e) {
      log(log_level::debug, std::string("bad request: ") + e.what());
      return send_error(route, request_id_of(view(body)), reply_error::bad_request, e.what());
    }
    if (env) {
      r.id = env->id;
      r.key = frontend_curve ? scoped_key(env->id, client_key(body)) : env->id;
      r.type.assign(env->type);
      r.priority = env->priority;
      r.expires = env->expires_at();
      if (store) r.wants_ack = env->header(header::ack) == "stored";
      if (const zmq::message_t* cached = cache.find(*r.key)) {
        ++counters.answered_from_cache;
        send_durable(route, copy_of(*cached));
        return;
      }
      if (const auto it = active_ids.find(*r.key); it != active_ids.end()) {
        // A retry: the reply goes to whoever asked last.
        ++counters.duplicates_suppressed;
        if (r.wants_ack) send_ack(route, r);  // it is stored already
        requests.at(it->second).route = std::move(route);
        return;
      }
    }
    if (draining) return send_error(route, r.id, reply_error::unavailable, "shutting down");
    if (expired_now(r)) {
      ++counters.expired;
      return send_error(route, r.id, reply_error::expired, "ttl passed before it reached the device");
    }
    r.bytes = body.size() + route_bytes;
    r.route = std::move(route);
    r.body = std::move(body);
    if (store && !accept_stored(r)) return;
    const handle h = next_handle++;
    if (r.key) active_ids.emplace(*r.key, h);
    if (r.expires) ttl_index.emplace(*r.expires, h);
    requests.emplace(h, std::move(r));
    place(h, false, true);
  }

  // --- backend ----------------------------------------------------------------
  void on_backend() {
    if (frames.size() < 2) return drop("backend-frames", "1 frame");
    const std::string identity(view(frames[0]));
    detail::worker* w = workers.find(identity);
    const std::string_view first = view(frames[1]);
    const bool control = (frames.size() == 2 || frames.size() == 3) && first.size() == 1 &&
                         first[0] >= wp::ready && first[0] <= wp::disconnect;
    if (control) {
      if (first[0] == wp::ready) return on_ready(identity, w);
      if (frames.size() != 2) return drop("backend-frames", "control frame with extra frames");
      if (!w) {
        if (first[0] == wp::disconnect) forget_evicted(identity);
        return drop("unknown-worker", first[0] == wp::heartbeat ? "heartbeat" : "disconnect");
      }
      w->last_seen = clk.now();
      if (first[0] == wp::disconnect) {
        log(log_level::info, "worker disconnected");
        drop_worker(*w);
      }
      return;
    }
    // A reply: [worker, route..., empty, body]. The route is the device's own
    // record of the request, not what the worker echoes.
    if (frames.size() < 4 || frames[frames.size() - 2].size() != 0)
      return drop("backend-frames", std::to_string(frames.size()) + " frames");
    if (!w) w = revive(identity);  // a slow worker's reply counts as READY
    if (!w) return drop("unknown-worker", "reply");
    w->last_seen = clk.now();
    if (w->holding.empty()) return drop("unknown-reply", "worker holds no request");
    const auto index = match_reply(*w);
    if (!index) return drop("unknown-reply", "reply matches no request the worker holds");
    const handle h = w->holding[*index].request;
    workers.release(*w, *index);  // a reply counts as READY for its slot
    if (requests.contains(h))
      answer(h, frames.back());
    else
      drop("late-reply", "its request was already answered (expired, or another worker's reply won)");
    worker_ready(*w);
  }

  // Forwards a worker's reply and ends the request. The first reply wins: a
  // request taken back from a worker (delivery timeout) and queued again, or
  // held by another worker, is answered by whichever worker replies first.
  void answer(handle h, zmq::message_t& reply) {
    request& r = requests.at(h);
    keep_reply(r, reply);
    ++counters.replied;
    send_durable(r.route, std::move(reply));
    forget(h);
  }

  // Returns: the index in w.holding of the request the reply in `frames`
  // answers; nullopt when it answers nothing the worker holds (a duplicate, or
  // a stranger's id). A ZMK/1 reply names its request by correlation_id, and is
  // matched by that alone. A reply without one (a plain Paranoid Pirate body,
  // or not an envelope at all) is matched, at a worker of capacity 1, to the one
  // request it holds; at a worker holding several, by the address stack it
  // echoes, oldest first.
  std::optional<std::size_t> match_reply(const detail::worker& w) {
    // The body itself is the worker's business (the client decodes it): only its
    // correlation_id is read here.
    if (const std::optional<message_id> correlation_id = correlation_id_of(view(frames.back()))) {
      for (std::size_t i = 0; i < w.holding.size(); ++i)
        if (w.holding[i].id == correlation_id) return i;
      return std::nullopt;
    }
    if (w.capacity == 1) return w.holding.empty() ? std::nullopt : std::optional<std::size_t>(0);
    const std::size_t echoed = route_hash(std::span(frames).subspan(1, frames.size() - 3));
    for (std::size_t i = 0; i < w.holding.size(); ++i)
      if (w.holding[i].route_hash == echoed) return i;
    return std::nullopt;
  }

  // READY: [0x01] (capacity 1, every type), [0x01, prefix array] or
  // [0x01, {"prefixes": [...], "capacity": n}]. A malformed announcement is
  // counted and dropped: the worker is not registered (nor changed).
  void on_ready(const std::string& identity, detail::worker* w) {
    wp::announcement announced;
    if (frames.size() == 3) {
      auto parsed = wp::parse_ready(view(frames[2]), opts.max_prefixes_per_worker, opts.max_worker_capacity);
      if (auto* bad = std::get_if<std::string>(&parsed)) return refuse_ready("backend-frames", *bad);
      announced = std::move(std::get<wp::announcement>(parsed));
    }
    forget_evicted(identity);  // READY again: whatever it held before is lost
    if (w && !w->holding.empty()) {
      log(log_level::info, "worker sent READY while holding requests: it restarted");
      drop_worker(*w);
      w = nullptr;
    }
    if (!w && workers.size() >= opts.max_workers)
      return refuse_ready("worker-refused", "already " + std::to_string(opts.max_workers) + " workers (max-workers)");
    if (!w) {
      w = &workers.add(identity, std::move(announced.prefixes), announced.capacity, clk.now());
      workers_peak = std::max(workers_peak, workers.size());
      log(log_level::info, "worker " + printable_identity(identity) + " connected, capacity " +
                               std::to_string(announced.capacity) + " (" +
                               std::to_string(workers.size()) + " now)");
    } else {
      // Prefixes or capacity may have changed: re-rank it as idle.
      w->last_seen = clk.now();
      workers.reconfigure(*w, std::move(announced.prefixes), announced.capacity);
    }
    worker_ready(*w);
  }

  // A READY the device does not accept: the worker is not registered (nor
  // changed); counted, and logged at most once a second (a flood of them must
  // not flood the log).
  void refuse_ready(const char* reason, const std::string& why) {
    ++counters.dropped[reason];
    const steady_time now = clk.now();
    if (now < next_refusal_log) {
      ++refusals_not_logged;
      return;
    }
    next_refusal_log = now + std::chrono::seconds(1);
    log(log_level::warn, "worker READY refused: " + why +
                             (refusals_not_logged ? " (" + std::to_string(std::exchange(refusals_not_logged, 0)) +
                                                        " more refused since the last report)"
                                                  : std::string()));
  }

  // Once most workers have left (a registration flood, or a fleet scaled down),
  // hands the freed heap back to the system a second later (libzmq frees their
  // connections meanwhile): glibc keeps it otherwise, and the device would stay
  // at its peak size for ever.
  void give_back_memory(steady_time now) {
    if (trim_at && now >= *trim_at) {
      ::malloc_trim(0);
      trim_at.reset();
    }
    if (workers.size() * 2 < workers_peak) {
      trim_at = now + std::chrono::seconds(1);
      workers_peak = workers.size();
    }
  }

  // --- admin ------------------------------------------------------------------
  void on_admin() {
    if (frames.size() != 3 || frames[1].size() != 0 || view(frames[2]) != "stats")
      return drop("admin-frames");
    const std::string packed = encode_stats(snapshot());
    try {
      admin->send(std::move(frames[0]), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      admin->send(zmq::message_t{}, zmq::send_flags::sndmore);
      admin->send(zmq::message_t(packed.data(), packed.size()), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      drop("admin-unreachable", e.what());
    }
  }

  // --- durability (opts.store; the storage itself is store.cpp) ---------------
  // Keeps a reply for retries of its request; with a store, durably, in the
  // write that records the request's completion.
  void keep_reply(const request& r, const zmq::message_t& reply) {
    if (r.key) cache.put(*r.key, reply);
    if (!r.stored) return;
    const std::string_view bytes = view(reply);
    store->complete(r.stored, r.id ? r.id->as_bytes() : std::string_view(), r.id ? &bytes : nullptr);
  }

  // Stores a new request (and acknowledges it when asked). Returns: false when
  // the store refused it: it is answered overloaded and not accepted.
  bool accept_stored(request& r) {
    std::vector<std::string_view> route;
    route.reserve(r.route.size());
    for (const auto& f : r.route) route.push_back(view(f));
    std::string why;
    // The client's CURVE key goes with it, to scope its id again after a restart.
    r.stored = store->put_request(route, view(r.body), client_key(r.body), why);
    if (!r.stored) {
      send_error(r.route, r.id, reply_error::overloaded, why);
      return false;
    }
    ++counters.stored;
    if (r.wants_ack) send_ack(r.route, r);
    return true;
  }

  // The stored-acknowledgement (docs/protocol.md 7.9): sent, under batch and none, only
  // after the commit that covers the request (send_durable holds it till then).
  void send_ack(const route_frames& route, const request& r) {
    envelope ack = make_envelope(std::string(stored_type), clk);
    ack.priority = r.priority;
    ack.correlation_id = r.id;
    ack.headers.emplace(header::ack, "stored");
    ++counters.acked;
    route_frames copy;  // the request keeps its route, for the reply
    for (const auto& f : route) copy.push_back(copy_of(f));
    send_durable(copy, encode(ack));
  }

  // Sends what announces a store write (a stored-ack, a reply, a cached reply);
  // under batch and none it waits for the turn's commit. Errors are sent at once.
  // Like send_to_client, it moves the route's frames out.
  void send_durable(route_frames& route, zmq::message_t&& body) {
    if (store && store->uncommitted()) {
      held_sends.emplace_back(std::move(route), std::move(body));
      return;
    }
    send_to_client(route, std::move(body));
  }

  // End of a loop turn: commits (batch: and syncs) what it wrote, then sends what
  // waited for that. A failed commit is retried next turn; the messages wait.
  void flush_store() {
    if (!store->flush()) {
      if (const steady_time now = clk.now(); now >= next_store_log) {
        next_store_log = now + std::chrono::seconds(1);
        log(log_level::error, "store " + store->dir() + ": commit failed (" + store->failure() +
                                  "); retrying each turn, new requests answered overloaded, " +
                                  std::to_string(held_sends.size()) + " replies waiting");
      }
      return;
    }
    for (auto& [route, body] : std::exchange(held_sends, {})) send_to_client(route, std::move(body));
  }

  // Start-up: the stored requests queued again (in the order stored, with their
  // priority, expiry and delivery count; one delivered before is marked
  // zmk.redelivered), and the stored replies back in the reply cache.
  void recover() {
    store->load(
        [this](detail::stored_request&& s) {
          request r;
          for (const auto& f : s.route) r.route.emplace_back(f.data(), f.size());
          r.stored = s.seq;
          r.deliveries = static_cast<int>(s.deliveries);
          std::string body = std::move(s.body);
          std::optional<envelope_view> env;
          try {
            env = decode_if_envelope(body, limits);  // it passed when stored: only lowered limits fail it
          } catch (const zmqkit::error& e) {
            throw zmqkit::error(errc::bad_config, "store",
                                "store " + opts.store + ": a stored request no longer decodes: " + e.what());
          }
          if (env) {
            r.id = env->id;
            r.key = scoped_key(env->id, s.owner);
            r.type.assign(env->type);
            r.priority = env->priority;
            r.expires = env->expires_at();
            r.wants_ack = env->header(header::ack) == "stored";
            if (s.deliveries > 0) {
              envelope marked = env->to_envelope();
              marked.headers.insert_or_assign(std::string(header::redelivered), std::to_string(s.deliveries));
              const zmq::message_t frame = encode(marked);
              body.assign(static_cast<const char*>(frame.data()), frame.size());
            }
          }
          r.bytes = body.size();
          for (const auto& f : r.route) r.bytes += f.size();
          r.body = zmq::message_t(body.data(), body.size());
          const handle h = next_handle++;
          if (r.key) active_ids.emplace(*r.key, h);
          if (r.expires) ttl_index.emplace(*r.expires, h);
          enqueue(h, requests.emplace(h, std::move(r)).first->second, false);
          ++counters.recovered;
        },
        [this](detail::stored_reply&& s) {
          if (const auto id = message_id::from_bytes(s.id))
            cache.put(scoped_key(*id, s.owner), zmq::message_t(s.reply.data(), s.reply.size()));
        });
    if (counters.recovered > 0)
      log(log_level::info, "store " + opts.store + ": " + std::to_string(counters.recovered) +
                               " requests queued again, " + std::to_string(cache.size()) + " replies cached");
  }

  // --- timers -----------------------------------------------------------------
  void on_timers() {
    const steady_time now = clk.now();
    const wall_time wall = clk.wall_now();
    // TTL, queued or at a worker (whose late reply is then dropped).
    while (!ttl_index.empty() && ttl_index.begin()->first <= wall) {
      const handle h = ttl_index.begin()->second;
      fail(h, reply_error::expired, requests.at(h).pending ? "ttl passed while queued" : "ttl passed at a worker");
    }
    // Delivery timeout: a worker held the request too long; queue it again.
    while (!delivery_deadlines.empty() && delivery_deadlines.front().deadline <= now) {
      const delivery_deadline_entry due = delivery_deadlines.front();
      delivery_deadlines.pop_front();
      if (!live(due)) continue;
      const handle h = due.request;
      request& r = requests.at(h);
      withdraw(r);
      ++counters.delivery_timeouts;
      log(log_level::warn, "request " + (r.id ? r.id->to_string() : std::string("(plain)")) +
                               " held by a worker for longer than the delivery timeout: taken back");
      if (r.deliveries > opts.max_requeue) {
        fail(h, reply_error::dead_letter,
             "delivered " + std::to_string(r.deliveries) + " times; no worker answered in time");
        continue;
      }
      ++counters.requeued;
      place(h, true);
    }
    // Sweeps once per tick, not on every message.
    if (now >= next_sweep) {
      next_sweep = now + opts.tick;
      sweep(now);
    }
    // Heartbeats to every live worker.
    if (now >= next_heartbeat) heartbeat(now);
  }

  void sweep(steady_time now) {
    report_refusals(now);
    give_back_memory(now);
    // Dead workers.
    const auto silence = opts.heartbeat * opts.liveness;
    // By identity: removing one worker may remove others (a failed send while requeueing).
    for (const std::string& id : workers.silent_since(now - silence))
      if (detail::worker* w = workers.find(id)) {
        log(log_level::info, "worker silent for " + std::to_string(silence.count()) + " ms, removed");
        drop_worker(*w, true);
      }
    // Evicted workers whose late replies are no longer waited for.
    const auto retention = opts.delivery_timeout.count() > 0
                               ? opts.delivery_timeout
                               : std::chrono::duration_cast<std::chrono::milliseconds>(evicted_retention_when_unbounded);
    while (!evicted_order.empty() && evicted_order.front().first + retention <= now) expire_oldest_evicted();
    // No worker serves the type: wait up to no_service. A request whose type is
    // served (its workers are busy) waits on, and is looked at again one
    // no-service time later: if its workers have gone by then, it is answered.
    while (!no_service_deadlines.empty() && no_service_deadlines.front().deadline <= now) {
      const no_service_entry due = no_service_deadlines.front();
      no_service_deadlines.pop_front();
      if (!still_pending(due)) continue;
      if (workers.any_serves(requests.at(due.request).type)) {
        no_service_deadlines.push_back({now + opts.no_service, due.request, due.order});
        continue;
      }
      fail(due.request, reply_error::no_service,
           "no worker serving this type connected within the no-service time");
    }
  }

  void heartbeat(steady_time now) {
    next_heartbeat = now + opts.heartbeat;
    std::vector<std::string> gone;
    workers.for_each([&](detail::worker& w) {
      try {
        if (!backend.send(zmq::message_t(w.identity.data(), w.identity.size()),
                          zmq::send_flags::sndmore | zmq::send_flags::dontwait))
          return;  // its pipe is full: silence will decide
        backend.send(zmq::message_t(&wp::heartbeat, 1), zmq::send_flags::none);
      } catch (const zmq::error_t&) {
        gone.push_back(w.identity);
      }
    });
    for (const std::string& id : gone)
      if (detail::worker* w = workers.find(id)) {
        log(log_level::info, "worker " + printable_identity(id) + " unreachable, removed");
        drop_worker(*w);
      }
  }

  void begin_drain() {
    draining = true;
    drain_deadline = clk.now() + opts.heartbeat * opts.liveness;
    log(log_level::info, "stopping: answering " + std::to_string(pending.size()) +
                             " queued requests 'unavailable', waiting for " +
                             std::to_string(requests.size() - pending.size()) + " at workers");
    while (const auto h = pending.pop_best({})) {
      request& r = requests.at(*h);
      left_queue(r);
      fail(*h, reply_error::unavailable, "shutting down");
    }
  }

  // The most frames a message may have: a reply is [worker, route..., empty, body].
  std::size_t max_frames() const { return opts.max_route_frames + 3; }

  // Receives one message into `frames`, keeping at most max_frames() of its
  // frames (the rest are received and freed one by one, so a message of a
  // million frames costs no memory). Returns: nullopt when none is waiting,
  // else whether it fitted.
  std::optional<bool> receive_bounded(zmq::socket_t& s) {
    zmq::message_t part;
    if (!s.recv(part, zmq::recv_flags::dontwait)) return std::nullopt;
    bool fits = true;
    for (;;) {
      const bool more = part.more();
      if (fits && frames.size() < max_frames())
        frames.push_back(std::move(part));
      else
        fits = false;
      if (!more) break;
      part.rebuild();
      (void)s.recv(part, zmq::recv_flags::none);  // a message's parts arrive together
    }
    if (!fits) frames.clear();
    return fits;
  }

  // Receives up to batch_limit messages from `s` into `frames`, calling handler for each.
  template <class Handler>
  void drain_socket(zmq::socket_t& s, Handler&& handler) {
    for (int i = 0; i < batch_limit; ++i) {
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
  void watch() {
    driven.watch(backend, [this] { serve(backend, &impl::on_backend); });
    driven.watch(frontend, [this] { serve(frontend, &impl::on_frontend); });
    if (admin) driven.watch(*admin, [this] { serve(*admin, &impl::on_admin); });
    driven.watch_fd(wake.fds[0], [this] {
      std::lock_guard lock(mu);
      wake.drain();
      end_batch();
    });
    arm_timer();
  }

  void attach(zmqkit::loop& l) {
    driven.attach(l, "queue device");
    watch();
  }

  void run() {
    {
      std::lock_guard lock(mu);
      if (finished) return;
    }
    if (driven.attach_own(clk, "queue device")) watch();
    zmqkit::loop& l = driven.loop();
    l.run();
    l.restart();
  }

  void serve(zmq::socket_t& s, void (impl::*handler)()) {
    std::lock_guard lock(mu);
    drain_socket(s, [this, handler] { (this->*handler)(); });
    end_batch();
  }

  // After each batch: stop() noticed, the store's group commit (nothing it
  // covers leaves before it), and the end of a drain.
  void end_batch() {
    if (stop_requested.load(std::memory_order_relaxed) && !draining) begin_drain();
    if (store) flush_store();
    if (draining) finish_if_drained();
  }

  // The device's one timer, on its clock: the next sweep (every tick: TTL,
  // no-service, silent workers), heartbeat, delivery deadline or drain deadline.
  void arm_timer() {
    if (finished) return;
    steady_time at = std::min(next_sweep, next_heartbeat);
    if (!delivery_deadlines.empty()) at = std::min(at, delivery_deadlines.front().deadline);
    if (draining) at = std::min(at, drain_deadline);
    driven.set_timer(at, clk, [this] { on_timer(); });
  }

  void on_timer() {
    std::lock_guard lock(mu);
    try {
      on_timers();
    } catch (const std::exception& e) {  // never let one timer stop the device
      drop("internal-error", e.what());
    }
    if (const steady_time t = clk.now(); status.due(t)) status.publish(t, snapshot(), workers, draining);
    end_batch();
    arm_timer();
  }

  // Drained (nothing left, or the drain deadline passed): answers what is
  // left 'unavailable' and leaves the loop; run() returns.
  void finish_if_drained() {
    if (finished || (!requests.empty() && clk.now() < drain_deadline)) return;
    if (!requests.empty()) {
      log(log_level::warn, "stopping: " + std::to_string(requests.size()) +
                               " requests still at workers answered 'unavailable'");
      std::vector<handle> left;
      for (const auto& [h, r] : requests) left.push_back(h);
      for (handle h : left) fail(h, reply_error::unavailable, "shutting down; its worker did not answer in time");
    }
    if (store) flush_store();
    finished = true;
    status.publish(clk.now(), snapshot(), workers, draining);
    if (driven.on_callers_loop())
      driven.detach();  // the caller's loop goes on with its other roles
    else
      driven.loop().stop();
  }
};

// --- device -------------------------------------------------------------------

void device_access::feed(device& d, side s, std::vector<zmq::message_t> frames) {
  device::impl& m = *d.impl_;
  std::lock_guard lock(m.mu);
  m.frames = std::move(frames);
  switch (s) {
    case side::frontend: m.on_frontend(); break;
    case side::backend: m.on_backend(); break;
    case side::admin:
      if (m.admin) m.on_admin();
      break;
  }
  if (m.store) m.flush_store();
}

void device_access::timers(device& d) {
  std::lock_guard lock(d.impl_->mu);
  d.impl_->on_timers();
  if (d.impl_->store) d.impl_->flush_store();
}

device::device(zmq::context_t& ctx, device_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}
device::~device() = default;
device::device(device&&) noexcept = default;
device& device::operator=(device&&) noexcept = default;

void device::run() { impl_->run(); }

void device::attach(zmqkit::loop& loop) {
  std::lock_guard lock(impl_->mu);
  impl_->attach(loop);
}

void device::stop() noexcept {
  impl_->stop_requested.store(true);
  const char b = 1;
  [[maybe_unused]] auto n = ::write(impl_->wake.fds[1], &b, 1);
}

device_stats device::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->snapshot();
}

std::shared_ptr<const device_status> device::status() const { return impl_->status.current(); }

std::string device::frontend_endpoint() const { return impl_->frontend.get(zmq::sockopt::last_endpoint); }
std::string device::backend_endpoint() const { return impl_->backend.get(zmq::sockopt::last_endpoint); }
std::string device::admin_endpoint() const {
  return impl_->admin ? impl_->admin->get(zmq::sockopt::last_endpoint) : std::string();
}

std::string encode_stats(const device_stats& s) {
  // The fields are packed first and the map header written last, so that adding a
  // field can never leave the header's count out of step with the entries.
  msgpack::sbuffer fields;
  msgpack::packer<msgpack::sbuffer> pk(fields);
  std::uint32_t entries = 0;
  auto key = [&](std::string_view name) {
    ++entries;
    pk.pack(name);
  };
  auto counter_map = [&](std::string_view name, const auto& m) {
    key(name);
    pk.pack_map(static_cast<std::uint32_t>(m.size()));
    for (const auto& [k, v] : m) {
      pk.pack(k);
      pk.pack(static_cast<std::uint64_t>(v));
    }
  };
  auto num = [&](std::string_view name, std::uint64_t v) {
    key(name);
    pk.pack(v);
  };
  num("received", s.received);
  num("routed", s.routed);
  num("replied", s.replied);
  num("expired", s.expired);
  num("requeued", s.requeued);
  num("dead_lettered", s.dead_lettered);
  num("duplicates_suppressed", s.duplicates_suppressed);
  num("answered_from_cache", s.answered_from_cache);
  num("delivery_timeouts", s.delivery_timeouts);
  num("workers_returned", s.workers_returned);
  counter_map("rejected", s.rejected);
  counter_map("dropped", s.dropped);
  num("pending", s.pending);
  std::map<std::string, std::size_t> by_priority;
  for (std::size_t p = 0; p < s.pending_by_priority.size(); ++p)
    by_priority[std::to_string(p)] = s.pending_by_priority[p];
  counter_map("pending_by_priority", by_priority);
  counter_map("pending_by_type", s.pending_by_type);
  num("in_flight", s.in_flight);
  num("workers_ready", s.workers_ready);
  num("workers_busy", s.workers_busy);
  num("worker_capacity", s.worker_capacity);
  num("reply_cache_size", s.reply_cache_size);
  counter_map("frontend_curve_refused", s.frontend_curve_refused);
  counter_map("backend_curve_refused", s.backend_curve_refused);
  num("reply_cache_bytes", s.reply_cache_bytes);
  num("pending_bytes", s.pending_bytes);
  num("stored", s.stored);
  num("acked", s.acked);
  num("recovered", s.recovered);
  num("store_syncs", s.store_syncs);
  num("store_sync_us", s.store_sync_us);
  num("store_errors", s.store_errors);
  num("store_bytes", s.store_bytes);
  num("store_last_sync_us", s.store_last_sync_us);
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer>(out).pack_map(entries);
  out.write(fields.data(), fields.size());
  return std::string(out.data(), out.size());
}

}  // namespace zmqkit::queue
