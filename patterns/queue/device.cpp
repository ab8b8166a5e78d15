#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <set>
#include <span>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/queue/device.hpp>

#include "pending_queue.hpp"
#include "reply_cache.hpp"
#include "status_publisher.hpp"
#include "worker_registry.hpp"

namespace zmqkit::queue {

namespace {

constexpr char ready_byte = 0x01;
constexpr char heartbeat_byte = 0x02;
constexpr char disconnect_byte = 0x03;
constexpr int batch_limit = 512;  // messages taken from one socket per loop turn
constexpr std::size_t max_prefixes = 256;
constexpr std::uint64_t max_worker_capacity = 1024;  // READY map's "capacity"

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

// What a worker announced in READY: the type prefixes it serves (empty: all)
// and how many requests it may hold at once.
struct ready_announcement {
  std::vector<std::string> prefixes;
  std::size_t capacity = 1;
};

constexpr std::size_t max_ready_keys = 16;  // unknown keys are ignored, within reason

// Reads a msgpack array of str (or bin) into `out`. Returns: false if it is not one.
bool read_prefixes(const msgpack::object& o, std::vector<std::string>& out) {
  if (o.type != msgpack::type::ARRAY) return false;
  for (const auto& p : std::span(o.via.array.ptr, o.via.array.size)) {
    if (p.type == msgpack::type::STR)
      out.emplace_back(p.via.str.ptr, p.via.str.size);
    else if (p.type == msgpack::type::BIN)
      out.emplace_back(p.via.bin.ptr, p.via.bin.size);
    else
      return false;
  }
  return true;
}

// Parses READY's optional frame: either a msgpack array of type prefixes (the
// original form) or a map {"prefixes": [str...], "capacity": uint} (both keys
// optional; unknown keys ignored). Returns: an error text when malformed.
std::variant<ready_announcement, std::string> parse_ready(std::string_view frame) {
  ready_announcement out;
  try {
    std::size_t offset = 0;
    const msgpack::unpack_limit limit(max_prefixes, max_ready_keys, max_prefixes, frame.size(), 1, 3);
    msgpack::object_handle h = msgpack::unpack(frame.data(), frame.size(), offset, nullptr, nullptr, limit);
    if (offset != frame.size()) return std::string("READY frame has trailing bytes");
    const msgpack::object& o = h.get();
    if (o.type == msgpack::type::ARRAY) {
      if (!read_prefixes(o, out.prefixes)) return std::string("READY prefixes are not all strings");
      return out;
    }
    if (o.type != msgpack::type::MAP) return std::string("READY frame is neither a prefix array nor a map");
    bool seen_prefixes = false, seen_capacity = false;
    for (const auto& kv : std::span(o.via.map.ptr, o.via.map.size)) {
      if (kv.key.type != msgpack::type::STR) return std::string("READY map key is not a string");
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (key == "prefixes") {
        if (std::exchange(seen_prefixes, true)) return std::string("READY map repeats 'prefixes'");
        if (!read_prefixes(kv.val, out.prefixes))
          return std::string("READY 'prefixes' is not an array of strings");
      } else if (key == "capacity") {
        if (std::exchange(seen_capacity, true)) return std::string("READY map repeats 'capacity'");
        if (kv.val.type != msgpack::type::POSITIVE_INTEGER || kv.val.via.u64 < 1 ||
            kv.val.via.u64 > max_worker_capacity)
          return "READY 'capacity' is not an integer in 1.." + std::to_string(max_worker_capacity);
        out.capacity = static_cast<std::size_t>(kv.val.via.u64);
      }
    }
    return out;
  } catch (const std::exception& e) {
    return std::string("READY frame is not msgpack: ") + e.what();
  }
}

// Hashes the address stack frames[first, last) (a request's route, or a reply's echo of it).
std::size_t route_hash(const std::vector<zmq::message_t>& frames, std::size_t first, std::size_t last) {
  std::size_t h = 0;
  for (std::size_t i = first; i < last; ++i)
    h = h * 1000003u ^ std::hash<std::string_view>{}(view(frames[i]));
  return h;
}

// Self-pipe: stop() writes a byte (async-signal-safe), run()'s poll wakes.
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
    std::vector<zmq::message_t> route;  // the client's address stack
    zmq::message_t body;
    std::optional<message_id> id;
    std::string type;  // empty for a plain body
    std::uint8_t priority = default_priority;
    std::optional<wall_time> expires;
    steady_time waiting_since{};
    int deliveries = 0;
    std::int64_t order = 0;  // key in the pending queue while pending
    bool pending = false;
  };

  impl(zmq::context_t& ctx, device_options o)
      : opts(std::move(o)),
        clk(*opts.clock),
        frontend(ctx, zmq::socket_type::router),
        backend(ctx, zmq::socket_type::router),
        cache(opts.reply_cache),
        status(opts.status_interval, opts.max_status_workers, clk.now()) {
    if (opts.frontend.empty() || opts.backend.empty())
      throw zmqkit::error(errc::bad_config, "endpoint", "queue device: frontend and backend are required");
    if (opts.heartbeat.count() <= 0 || opts.liveness < 1 || opts.max_requeue < 0 || opts.tick.count() <= 0)
      throw zmqkit::error(errc::bad_config, "timing",
                          "queue device: heartbeat and tick must be > 0, liveness >= 1, max-requeue >= 0");
    limits.max_frame_bytes = opts.max_frame_bytes;
    zmqkit::socket_options so = opts.socket;
    so.max_message_bytes = static_cast<std::int64_t>(opts.max_frame_bytes);
    for (auto* s : {&frontend, &backend}) {
      zmqkit::socket_options side = so;
      const auto& security = s == &frontend ? opts.frontend_security : opts.backend_security;
      if (security) side.security = *security;
      apply(*s, side);
      s->set(zmq::sockopt::router_mandatory, true);
    }
    bind(frontend, opts.frontend, "frontend");
    bind(backend, opts.backend, "backend");
    if (!opts.admin.empty()) {
      admin.emplace(ctx, zmq::socket_type::router);
      apply(*admin, so);
      admin->set(zmq::sockopt::router_mandatory, true);
      bind(*admin, opts.admin, "admin");
    }
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
  decode_limits limits;
  wake_pipe wake;
  std::atomic<bool> stop_requested{false};

  mutable std::mutex mu;
  std::unordered_map<handle, request> requests;
  std::unordered_map<message_id, handle> active_ids;  // pending or in flight
  std::set<std::pair<wall_time, handle>> ttl_index;   // pending requests with a TTL
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
  detail::status_publisher status;     // device_status for readers on other threads

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
    s.pending_by_type = pending.size_by_type();
    s.in_flight = requests.size() - pending.size();
    s.workers_ready = workers.ready_count();
    s.workers_busy = workers.busy_count();
    s.worker_capacity = workers.slot_count();
    s.reply_cache_size = cache.size();
    return s;
  }

  // --- sending --------------------------------------------------------------
  // Sends [route..., empty, body] to a client. Returns: false (counted) when the
  // client is gone or not reading.
  bool send_to_client(const std::vector<zmq::message_t>& route, zmq::message_t body) {
    try {
      for (const auto& r : route)
        if (!frontend.send(copy_of(r), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
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

  void send_error(const std::vector<zmq::message_t>& route, std::optional<message_id> id, reply_error code,
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
  // Ends a request: forgets it everywhere (it must no longer be pending).
  void forget(handle h) {
    const auto it = requests.find(h);
    if (it == requests.end()) return;
    if (it->second.id) active_ids.erase(*it->second.id);
    requests.erase(it);
  }

  void unqueue(handle h, request& r) {
    pending.erase(r.priority, r.type, r.order);
    if (r.expires) ttl_index.erase({*r.expires, h});
    r.pending = false;
  }

  // Answers a request with an error and ends it.
  void fail(handle h, reply_error code, std::string_view reason) {
    request& r = requests.at(h);
    if (r.pending) unqueue(h, r);
    if (code == reply_error::expired) ++counters.expired;
    if (code == reply_error::dead_letter) {
      ++counters.dead_lettered;
      log(log_level::warn, "dead-letter: request " + (r.id ? r.id->to_string() : std::string("(plain)")) +
                               " of type '" + r.type + "' lost " + std::to_string(r.deliveries) + " workers");
      zmq::message_t reply = encode(make_error_reply(r.id, code, reason, clk));
      if (r.id) cache.put(*r.id, reply);
      ++counters.rejected[std::string(to_string(code))];
      send_to_client(r.route, std::move(reply));
    } else {
      send_error(r.route, r.id, code, reason);
    }
    forget(h);
  }

  bool expired_now(const request& r) const { return r.expires && *r.expires <= clk.wall_now(); }

  void enqueue(handle h, request& r, bool at_head) {
    r.order = at_head ? pending.next_front_key() : pending.next_back_key();
    r.waiting_since = clk.now();
    r.pending = true;
    pending.insert(h, r.priority, r.type, r.order);
    if (r.expires) ttl_index.emplace(*r.expires, h);
  }

  // Sends the request to `w` (which has a free slot) and records it there.
  // Returns: false if `w` turned out to be gone: the worker is then removed
  // (its other requests requeued); the caller places this one again.
  bool hand_over(detail::worker& w, handle h, request& r) {
    if (!send_to_worker(w, r)) {
      log(log_level::info, "worker " + printable_identity(w.identity) + " unreachable, removed");
      remove_worker(w);
      return false;
    }
    ++r.deliveries;
    ++counters.routed;
    // The route hash is only needed to match replies when a worker holds several.
    workers.use(w, h, w.capacity > 1 ? route_hash(r.route, 0, r.route.size()) : 0);
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

  // Gives a request (not pending) to the LRU ready worker serving its type, or queues it.
  void place(handle h, bool at_head) {
    for (;;) {
      request& r = requests.at(h);
      if (draining) return fail(h, reply_error::unavailable, "shutting down");
      detail::worker* w = workers.lru_serving(r.type);
      if (!w) return enqueue(h, r, at_head);
      if (deliver(*w, h)) return;
    }
  }

  // A worker has free slots (READY, or a reply freed one): fill them with the
  // best pending requests it serves. While any is left free it stays in the
  // LRU list (the registry keeps that invariant).
  void worker_ready(detail::worker& w) {
    while (!draining && !w.full()) {
      const auto h = pending.pop_best([&](std::string_view type) { return w.serves(type); });
      if (!h) return;
      request& r = requests.at(*h);
      r.pending = false;
      if (r.expires) ttl_index.erase({*r.expires, *h});
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

  // Removes a worker; every request it held is requeued at the head of its
  // priority, or answered dead-letter when it has used up its deliveries.
  void remove_worker(detail::worker& w) {
    const std::vector<detail::held_request> held = std::move(w.holding);
    w.holding.clear();
    workers.remove(w);
    // Newest first, each to the head of its priority: they keep their delivery order.
    for (auto it = held.rbegin(); it != held.rend(); ++it) {
      const handle h = it->request;
      request& r = requests.at(h);
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
      place(h, true);
    }
  }

  // --- frontend ---------------------------------------------------------------
  void on_frontend() {
    // [route..., empty, body]: the route ends at the first empty frame.
    std::size_t delimiter = 0;
    while (delimiter < frames.size() && frames[delimiter].size() != 0) ++delimiter;
    if (delimiter == 0 || delimiter + 2 != frames.size())
      return drop("frontend-frames", std::to_string(frames.size()) + " frames");
    ++counters.received;
    std::vector<zmq::message_t> route;
    route.reserve(delimiter);
    for (std::size_t i = 0; i < delimiter; ++i) route.push_back(std::move(frames[i]));
    zmq::message_t& body = frames.back();

    request r;
    if (looks_like_envelope(view(body))) {
      envelope_view env;
      try {
        env = decode_view(view(body), limits);
      } catch (const zmqkit::error& e) {
        log(log_level::debug, std::string("bad request: ") + e.what());
        return send_error(route, std::nullopt, reply_error::bad_request, e.what());
      }
      r.id = env.id;
      r.type.assign(env.type);
      r.priority = env.priority;
      r.expires = env.expires_at();
      if (const zmq::message_t* cached = cache.find(env.id)) {
        ++counters.answered_from_cache;
        send_to_client(route, copy_of(*cached));
        return;
      }
      if (const auto it = active_ids.find(env.id); it != active_ids.end()) {
        // A retry: the reply goes to whoever asked last.
        ++counters.duplicates_suppressed;
        requests.at(it->second).route = std::move(route);
        return;
      }
    }
    if (draining) return send_error(route, r.id, reply_error::unavailable, "shutting down");
    if (expired_now(r)) {
      ++counters.expired;
      return send_error(route, r.id, reply_error::expired, "ttl passed before it reached the device");
    }
    if (pending.size() >= opts.max_pending)
      return send_error(route, r.id, reply_error::overloaded,
                        "more than " + std::to_string(opts.max_pending) + " requests waiting");
    r.route = std::move(route);
    r.body = std::move(body);
    const handle h = next_handle++;
    if (r.id) active_ids.emplace(*r.id, h);
    requests.emplace(h, std::move(r));
    place(h, false);
  }

  // --- backend ----------------------------------------------------------------
  void on_backend() {
    if (frames.size() < 2) return drop("backend-frames", "1 frame");
    const std::string identity(view(frames[0]));
    detail::worker* w = workers.find(identity);
    const std::string_view first = view(frames[1]);
    const bool control = (frames.size() == 2 || frames.size() == 3) && first.size() == 1 &&
                         first[0] >= ready_byte && first[0] <= disconnect_byte;
    if (control) {
      if (first[0] == ready_byte) return on_ready(identity, w);
      if (frames.size() != 2) return drop("backend-frames", "control frame with extra frames");
      if (!w) return drop("unknown-worker", first[0] == heartbeat_byte ? "heartbeat" : "disconnect");
      w->last_seen = clk.now();
      if (first[0] == disconnect_byte) {
        log(log_level::info, "worker disconnected");
        remove_worker(*w);
      }
      return;
    }
    // A reply: [worker, route..., empty, body]. The route is the device's own
    // record of the request, not what the worker echoes.
    if (frames.size() < 4 || frames[frames.size() - 2].size() != 0)
      return drop("backend-frames", std::to_string(frames.size()) + " frames");
    if (!w) return drop("unknown-worker", "reply");
    w->last_seen = clk.now();
    if (w->holding.empty()) return drop("unknown-reply", "worker holds no request");
    const auto index = match_reply(*w);
    if (!index) return drop("unknown-reply", "reply matches no request the worker holds");
    const handle h = w->holding[*index].request;
    request& r = requests.at(h);
    zmq::message_t& reply = frames.back();
    if (r.id) cache.put(*r.id, reply);
    ++counters.replied;
    send_to_client(r.route, std::move(reply));
    forget(h);
    workers.release(*w, *index);  // a reply counts as READY for its slot
    worker_ready(*w);
  }

  // Returns: the index in w.holding of the request the reply in `frames`
  // answers. A worker of capacity 1 holds one: it is that one (Paranoid Pirate
  // workers may answer with anything). A worker holding several is matched by
  // the reply's correlation id, else (plain or id-less replies) by the address
  // stack it echoes, oldest first; nullopt when nothing matches.
  std::optional<std::size_t> match_reply(const detail::worker& w) {
    if (w.capacity == 1) return 0;
    const std::string_view body = view(frames.back());
    if (looks_like_envelope(body)) {
      try {
        const envelope_view env = decode_view(body, limits);
        if (env.correlation_id) {
          const auto it = active_ids.find(*env.correlation_id);
          if (it == active_ids.end()) return std::nullopt;
          for (std::size_t i = 0; i < w.holding.size(); ++i)
            if (w.holding[i].request == it->second) return i;
          return std::nullopt;
        }
      } catch (const zmqkit::error&) {
        // Not a valid envelope: the body is the worker's business; match by route.
      }
    }
    const std::size_t echoed = route_hash(frames, 1, frames.size() - 2);
    for (std::size_t i = 0; i < w.holding.size(); ++i)
      if (w.holding[i].route_hash == echoed) return i;
    return std::nullopt;
  }

  // READY: [0x01] (capacity 1, every type), [0x01, prefix array] or
  // [0x01, {"prefixes": [...], "capacity": n}]. A malformed announcement is
  // counted and dropped: the worker is not registered (nor changed).
  void on_ready(const std::string& identity, detail::worker* w) {
    ready_announcement announced;
    if (frames.size() == 3) {
      auto parsed = parse_ready(view(frames[2]));
      if (auto* bad = std::get_if<std::string>(&parsed)) return drop("backend-frames", *bad);
      announced = std::move(std::get<ready_announcement>(parsed));
    }
    if (w && !w->holding.empty()) {
      log(log_level::info, "worker sent READY while holding requests: it restarted");
      remove_worker(*w);
      w = nullptr;
    }
    if (!w) {
      w = &workers.add(identity, std::move(announced.prefixes), announced.capacity, clk.now());
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

  // --- timers -----------------------------------------------------------------
  void on_timers() {
    const steady_time now = clk.now();
    const wall_time wall = clk.wall_now();
    // TTL while queued.
    while (!ttl_index.empty() && ttl_index.begin()->first <= wall)
      fail(ttl_index.begin()->second, reply_error::expired, "ttl passed while queued");
    // Sweeps once per tick, not on every message.
    if (now >= next_sweep) {
      next_sweep = now + opts.tick;
      sweep(now);
    }
    // Heartbeats to every live worker.
    if (now >= next_heartbeat) heartbeat(now);
  }

  void sweep(steady_time now) {
    // Dead workers.
    const auto silence = opts.heartbeat * opts.liveness;
    // By identity: removing one worker may remove others (a failed send while requeueing).
    for (const std::string& id : workers.silent_since(now - silence))
      if (detail::worker* w = workers.find(id)) {
        log(log_level::info, "worker silent for " + std::to_string(silence.count()) + " ms, removed");
        remove_worker(*w);
      }
    // No worker serves the type: wait up to no_service.
    if (pending.size() > 0) {
      std::vector<handle> unserved;
      pending.for_each_group([&](std::uint8_t, std::string_view type, const detail::pending_queue::group& g) {
        if (workers.any_serves(type)) return;
        for (const auto& [order, h] : g) {
          const request& r = requests.at(h);
          if (r.waiting_since + opts.no_service <= now)
            unserved.push_back(h);
          else if (order > 0)
            break;  // appended in arrival order: the rest waited less
        }
      });
      for (handle h : unserved)
        fail(h, reply_error::no_service, "no worker serving this type connected within the no-service time");
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
        backend.send(zmq::message_t(&heartbeat_byte, 1), zmq::send_flags::none);
      } catch (const zmq::error_t&) {
        gone.push_back(w.identity);
      }
    });
    for (const std::string& id : gone)
      if (detail::worker* w = workers.find(id)) {
        log(log_level::info, "worker " + printable_identity(id) + " unreachable, removed");
        remove_worker(*w);
      }
  }

  void begin_drain() {
    draining = true;
    drain_deadline = clk.now() + opts.heartbeat * opts.liveness;
    log(log_level::info, "stopping: answering " + std::to_string(pending.size()) +
                             " queued requests 'unavailable', waiting for " +
                             std::to_string(requests.size() - pending.size()) + " at workers");
    while (const auto h = pending.pop_best([](std::string_view) { return true; })) {
      request& r = requests.at(*h);
      r.pending = false;
      if (r.expires) ttl_index.erase({*r.expires, *h});
      fail(*h, reply_error::unavailable, "shutting down");
    }
  }

  // Receives up to batch_limit messages from `s` into `frames`, calling handler for each.
  template <class Handler>
  void drain_socket(zmq::socket_t& s, Handler&& handler) {
    for (int i = 0; i < batch_limit; ++i) {
      frames.clear();
      std::optional<std::size_t> got;
      try {
        got = zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait);
      } catch (const zmq::error_t& e) {
        log(log_level::warn, std::string("receive failed: ") + e.what());
        return;
      }
      if (!got) return;
      try {
        handler();
      } catch (const std::exception& e) {  // never let one message stop the device
        drop("internal-error", e.what());
      }
    }
  }

  void run() {
    for (;;) {
      const steady_time now = clk.now();
      auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(next_heartbeat - now);
      timeout = std::clamp(timeout, std::chrono::milliseconds(0), opts.tick);
      zmq::pollitem_t items[] = {{frontend.handle(), 0, ZMQ_POLLIN, 0},
                                 {backend.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, wake.fds[0], ZMQ_POLLIN, 0},
                                 {admin ? admin->handle() : nullptr, admin ? 0 : -1, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, admin ? 4 : 3, timeout);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;  // a signal (stop()) interrupted the wait
      }

      std::lock_guard lock(mu);
      if (items[2].revents & ZMQ_POLLIN) wake.drain();
      if (stop_requested.load() && !draining) begin_drain();
      // Backend first: replies free workers for the requests that follow.
      if (items[1].revents & ZMQ_POLLIN) drain_socket(backend, [this] { on_backend(); });
      if (items[0].revents & ZMQ_POLLIN) drain_socket(frontend, [this] { on_frontend(); });
      if (admin && (items[3].revents & ZMQ_POLLIN)) drain_socket(*admin, [this] { on_admin(); });
      on_timers();
      if (const steady_time t = clk.now(); status.due(t)) status.publish(t, snapshot(), workers, draining);
      if (draining && (requests.empty() || clk.now() >= drain_deadline)) {
        if (!requests.empty())
          log(log_level::warn,
              "stopped with " + std::to_string(requests.size()) + " requests still at workers");
        return;
      }
    }
  }
};

// --- device -------------------------------------------------------------------

device::device(zmq::context_t& ctx, device_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}
device::~device() = default;
device::device(device&&) noexcept = default;
device& device::operator=(device&&) noexcept = default;

void device::run() { impl_->run(); }

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
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  auto counter_map = [&](const auto& m) {
    pk.pack_map(static_cast<std::uint32_t>(m.size()));
    for (const auto& [k, v] : m) {
      pk.pack(k);
      pk.pack(static_cast<std::uint64_t>(v));
    }
  };
  pk.pack_map(18);
  auto num = [&](const char* name, std::uint64_t v) {
    pk.pack(std::string_view(name));
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
  pk.pack(std::string_view("rejected"));
  counter_map(s.rejected);
  pk.pack(std::string_view("dropped"));
  counter_map(s.dropped);
  num("pending", s.pending);
  pk.pack(std::string_view("pending_by_priority"));
  std::map<std::string, std::size_t> by_priority;
  for (std::size_t p = 0; p < s.pending_by_priority.size(); ++p)
    by_priority[std::to_string(p)] = s.pending_by_priority[p];
  counter_map(by_priority);
  pk.pack(std::string_view("pending_by_type"));
  counter_map(s.pending_by_type);
  num("in_flight", s.in_flight);
  num("workers_ready", s.workers_ready);
  num("workers_busy", s.workers_busy);
  num("worker_capacity", s.worker_capacity);
  num("reply_cache_size", s.reply_cache_size);
  return std::string(buf.data(), buf.size());
}

}  // namespace zmqkit::queue
