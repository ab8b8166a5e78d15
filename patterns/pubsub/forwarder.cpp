#include <algorithm>
#include <atomic>
#include <charconv>
#include <limits>
#include <deque>
#include <list>
#include <optional>
#include <thread>
#include <zmq_addon.hpp>
#include <zmqkit/poll.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/pubsub/forwarder.hpp>

#include "snapshot_protocol.hpp"

namespace zmqkit::pubsub {

namespace {

// Messages moved per wake-up before polling again: amortises the poll.
constexpr int batch = 256;

// A map that forgets its least recently updated entries beyond a count and a
// byte budget (each entry's bytes given by the caller: its key plus its value).
// Keys come from the network, so the index is keyed (hash flooding); the keys
// live in the recency list, whose nodes never move, and the index views them.
template <class Value>
class lru_map {
 public:
  lru_map(std::size_t capacity, std::size_t max_bytes) : capacity_(capacity), max_bytes_(max_bytes) {}

  // Returns: the entry for `key` (created if new), now the most recent, charged
  // `bytes`; older entries are forgotten until both bounds hold again.
  Value& update(std::string_view key, std::size_t bytes) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      order_.push_front(node{std::string(key), Value{}, 0});
      it = index_.emplace(std::string_view(order_.front().key), order_.begin()).first;
    } else if (it->second != order_.begin()) {
      order_.splice(order_.begin(), order_, it->second);
    }
    node& n = *it->second;
    bytes_ = bytes_ - n.bytes + bytes;
    n.bytes = bytes;
    while (order_.size() > 1 && (order_.size() > capacity_ || bytes_ > max_bytes_)) forget_oldest();
    return n.value;
  }

  template <class F>
  void for_each(F&& f) const {
    for (const auto& n : order_) f(n.key, n.value);
  }

  std::size_t size() const noexcept { return order_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }
  std::uint64_t evicted() const noexcept { return evicted_; }

 private:
  struct node {
    std::string key;
    Value value;
    std::size_t bytes;
  };

  void forget_oldest() {
    index_.erase(std::string_view(order_.back().key));
    bytes_ -= order_.back().bytes;
    order_.pop_back();
    ++evicted_;
  }

  std::size_t capacity_, max_bytes_, bytes_ = 0;
  std::uint64_t evicted_ = 0;
  std::list<node> order_;  // most recently updated first
  internal::keyed_map<std::string_view, typename std::list<node>::iterator> index_;
};

}  // namespace

struct forwarder::impl {
  struct last_value {
    zmq::message_t frame;
    std::optional<wall_time> expires_at;
  };

  forwarder_options opts;
  zmq::socket_t xsub, xpub, router, control, control_peer;
  std::string frontend, backend, snapshot;
  std::atomic<std::uint64_t> messages{0}, subscriptions{0}, uncacheable{0}, snapshots_served{0},
      bad_requests{0}, oversize_subscriptions{0}, refused_subscriptions{0}, bad_subscriptions{0},
      snapshots_dropped{0}, evicted_values{0}, cached_values{0}, cached_bytes{0}, subscriptions_held{0},
      subscription_bytes_held{0};
  // Loop thread only.
  lru_map<last_value> values;                           // type -> last envelope
  lru_map<std::pair<std::uint64_t, std::size_t>> seqs;  // publisher '\0' type -> (seq, type length)
  // The distinct prefixes forwarded upstream (what the publishers hold for us).
  internal::keyed_set<std::string> forwarded;
  std::size_t forwarded_bytes = 0;
  std::vector<zmq::message_t> frames;
  // CURVE only: one per socket, declared after the sockets (detached before they close).
  std::vector<std::unique_ptr<handshake_monitor>> monitors;
  // Live status, published for status() (the topics are `forwarded`).
  std::atomic<std::shared_ptr<const forwarder_status>> published;
  steady_time started{}, next_status{};
  std::deque<std::pair<steady_time, std::uint64_t>> rate_points;  // (when, messages)
  std::thread thread;

  impl(zmq::context_t& ctx, forwarder_options o)
      : opts(std::move(o)),
        xsub(ctx, zmq::socket_type::xsub),
        xpub(ctx, zmq::socket_type::xpub),
        values(opts.max_types, opts.max_cache_bytes),
        seqs(opts.max_types, std::numeric_limits<std::size_t>::max()) {  // bounded by count x key size
    if (opts.frontend.empty())
      throw error(errc::bad_config, "frontend", "forwarder: frontend endpoint missing");
    if (opts.backend.empty()) throw error(errc::bad_config, "backend", "forwarder: backend endpoint missing");
    if (opts.max_types == 0) throw error(errc::bad_config, "max_types", "must be at least 1");
    if (opts.max_cache_bytes == 0) throw error(errc::bad_config, "max_cache_bytes", "must be at least 1");
    if (opts.snapshot_queue <= 0) throw error(errc::bad_config, "snapshot_queue", "must be at least 1");
    if (opts.clock == nullptr) throw error(errc::bad_config, "clock", "forwarder clock is null");
    apply(xsub, opts.socket);
    apply(xpub, opts.socket);
    const bool curve = std::holds_alternative<curve_server>(opts.socket.security);
    if (curve) {  // before bind: no handshake missed
      monitors.push_back(std::make_unique<handshake_monitor>(ctx, xsub));
      monitors.push_back(std::make_unique<handshake_monitor>(ctx, xpub));
    }
    // Subscribers only ever send subscriptions: nothing longer reaches libzmq's trie.
    detail::limit_to_subscription_frames(xpub, opts.socket.max_message_bytes);
    xsub.bind(opts.frontend);
    frontend = xsub.get(zmq::sockopt::last_endpoint);
    xpub.bind(opts.backend);
    backend = xpub.get(zmq::sockopt::last_endpoint);
    if (!opts.snapshot_endpoint.empty()) {
      router = zmq::socket_t(ctx, zmq::socket_type::router);
      apply(router, opts.socket);
      detail::limit_to_subscription_frames(router, opts.socket.max_message_bytes);
      // A requester that never reads holds at most snapshot_queue replies; the
      // rest are dropped (counted), and a gone requester's are refused at once.
      router.set(zmq::sockopt::sndhwm, opts.snapshot_queue);
      router.set(zmq::sockopt::router_mandatory, 1);
      if (curve) monitors.push_back(std::make_unique<handshake_monitor>(ctx, router));
      router.bind(opts.snapshot_endpoint);
      snapshot = router.get(zmq::sockopt::last_endpoint);
      // See every type, to cache it: an XSUB subscribes by sending \x01 + prefix.
      const char everything = 1;
      xsub.send(zmq::const_buffer(&everything, 1), zmq::send_flags::none);
    }
    detail::open_control_pipe(ctx, control, control_peer);
    started = opts.clock->now();
    publish_status(started);
    thread = std::thread([this] { run(); });
  }

  ~impl() {
    control.send(zmq::str_buffer("stop"), zmq::send_flags::none);
    thread.join();
    monitors.clear();  // the sockets are this thread's again: detach before they close
  }

  bool caching() const { return router.handle() != nullptr; }

  void run() {
    for (;;) {
      zmq::pollitem_t items[] = {{xsub.handle(), 0, ZMQ_POLLIN, 0},
                                 {xpub.handle(), 0, ZMQ_POLLIN, 0},
                                 {control_peer.handle(), 0, ZMQ_POLLIN, 0},
                                 {router.handle(), 0, ZMQ_POLLIN, 0}};
      // Woken at least every status_interval to refresh status().
      zmqkit::poll(items, caching() ? 4 : 3, opts.status_interval);
      if (items[2].revents & ZMQ_POLLIN) return;
      if (items[1].revents & ZMQ_POLLIN) pass_subscriptions();
      if (items[0].revents & ZMQ_POLLIN) pass_messages();
      if (caching() && (items[3].revents & ZMQ_POLLIN)) answer();
      if (const steady_time now = opts.clock->now(); now >= next_status) publish_status(now);
    }
  }

  // Moves up to `batch` whole messages downstream, counting each before it is
  // sent (so whoever receives it also sees it counted) and caching it if asked.
  void pass_messages() {
    for (int i = 0; i < batch; ++i) {
      frames.clear();
      if (!zmq::recv_multipart(xsub, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      messages.fetch_add(1, std::memory_order_relaxed);
      if (caching()) remember();
      // XPUB drops rather than blocks when a subscriber is full.
      (void)zmq::send_multipart(xpub, frames, zmq::send_flags::dontwait);
    }
  }

  // Moves up to `batch` (un)subscriptions upstream. libzmq's XPUB reports the
  // first subscription to a prefix and the last cancellation of it, so
  // `forwarded` mirrors what upstream holds for us. Only single-frame
  // subscriptions of a prefix that could match a topic pass, within the count
  // and byte bounds: anything else would reach the publishers' tries (and
  // libzmq 4.3.4's XSUB trie, which overflows the stack on a long one).
  void pass_subscriptions() {
    for (int i = 0; i < batch; ++i) {
      frames.clear();
      if (!zmq::recv_multipart(xpub, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      const std::string_view f = frames.size() == 1 ? detail::frame_view(frames[0]) : std::string_view();
      if (f.empty() || (f[0] != 0 && f[0] != 1)) {
        ++bad_subscriptions;  // not a subscription: a raw XSUB peer's message, never passed upstream
        continue;
      }
      const bool subscribe = f[0] == 1;
      const std::string_view prefix = f.substr(1);
      if (prefix.size() > max_type_bytes) {
        if (subscribe) ++oversize_subscriptions;
        continue;
      }
      if (subscribe) {
        if (forwarded.contains(prefix)) continue;
        if (forwarded.size() >= opts.max_subscriptions ||
            forwarded_bytes + prefix.size() > opts.max_subscription_bytes) {
          ++refused_subscriptions;
          continue;
        }
        forwarded.emplace(prefix);
        forwarded_bytes += prefix.size();
      } else {
        const auto it = forwarded.find(prefix);
        if (it == forwarded.end()) continue;  // refused or oversize: upstream never saw it
        forwarded.erase(it);
        forwarded_bytes -= prefix.size();
      }
      subscriptions_held = forwarded.size();
      subscription_bytes_held = forwarded_bytes;
      subscriptions.fetch_add(1, std::memory_order_relaxed);
      (void)xsub.send(frames[0], zmq::send_flags::dontwait);
    }
    // Give the table's memory back once a flood has gone.
    if (forwarded.empty() && forwarded.capacity() > 1024) forwarded = {};
  }

  forwarder_stats stats() const {
    forwarder_stats st{.messages = messages.load(),
            .subscriptions = subscriptions.load(),
            .uncacheable = uncacheable.load(),
            .snapshots_served = snapshots_served.load(),
            .bad_snapshot_requests = bad_requests.load(),
            .oversize_subscriptions = oversize_subscriptions.load(),
            .refused_subscriptions = refused_subscriptions.load(),
            .bad_subscriptions = bad_subscriptions.load(),
            .snapshots_dropped = snapshots_dropped.load(),
            .evicted_values = evicted_values.load(),
            .cached_values = cached_values.load(),
            .cached_bytes = cached_bytes.load(),
            .subscriptions_held = subscriptions_held.load(),
            .subscription_bytes_held = subscription_bytes_held.load()};
    for (const auto& m : monitors) {
      const auto c = m->stats();
      st.curve_refused_unknown_key += c.refused_unknown_key;
      st.curve_refused_plaintext += c.refused_plaintext;
      st.curve_refused_bad_handshake += c.refused_bad_handshake;
    }
    return st;
  }

  void publish_status(steady_time now) {
    auto st = std::make_shared<forwarder_status>();
    st->stats = stats();
    st->caching = caching();
    st->streams = seqs.size();
    st->types_cached = values.size();
    st->topics_total = forwarded.size();
    st->topics.assign(forwarded.begin(), forwarded.end());
    std::sort(st->topics.begin(), st->topics.end());
    if (st->topics.size() > opts.max_status_topics) st->topics.resize(opts.max_status_topics);
    rate_points.emplace_back(now, st->stats.messages);
    while (rate_points.size() > 2 && now - rate_points[1].first >= std::chrono::seconds(1)) rate_points.pop_front();
    const double seconds = std::chrono::duration<double>(now - rate_points.front().first).count();
    if (seconds > 0)
      st->messages_per_second = static_cast<double>(st->stats.messages - rate_points.front().second) / seconds;
    st->uptime = std::chrono::duration_cast<std::chrono::milliseconds>(now - started);
    published.store(std::move(st));
    next_status = now + opts.status_interval;
  }

  void remember() {
    if (frames.size() != 2) {
      ++uncacheable;
      return;
    }
    try {
      const envelope_view v = decode_view(frames[1], opts.limits);
      const auto pub = v.header(header::publisher);
      const auto seq_text = v.header(header::sequence);
      std::uint64_t seq = 0;
      // A publisher id is at most 255 bytes (publisher_options::id), so a stream
      // key is at most 511: the sequence table is bounded by max_types x 511 bytes.
      if (v.type != detail::frame_view(frames[0]) || !pub || pub->empty() || pub->size() > max_type_bytes ||
          !seq_text ||
          std::from_chars(seq_text->data(), seq_text->data() + seq_text->size(), seq).ptr !=
              seq_text->data() + seq_text->size() ||
          seq == 0 || frames[1].size() + v.type.size() > opts.max_cache_bytes) {
        ++uncacheable;
        return;
      }
      last_value& last = values.update(v.type, v.type.size() + frames[1].size());
      last.frame.copy(frames[1]);
      last.expires_at = v.expires_at();
      std::string key;
      key.reserve(pub->size() + 1 + v.type.size());
      key.append(*pub).push_back('\0');
      key.append(v.type);
      seqs.update(key, key.size()) = {seq, v.type.size()};
      evicted_values = values.evicted();
      cached_values = values.size();
      cached_bytes = values.bytes();
    } catch (const zmqkit::error&) {
      ++uncacheable;
    }
  }

  void answer() {
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(router, std::back_inserter(request), zmq::recv_flags::dontwait)) return;
    const auto prefixes = detail::parse_snapshot_request(request);
    if (!prefixes) {
      ++bad_requests;
      return;
    }
    detail::sequence_table table;
    seqs.for_each([&](const std::string& key, const std::pair<std::uint64_t, std::size_t>& s) {
      const std::string_view k(key);
      const std::string_view type = k.substr(k.size() - s.second);
      if (!detail::matches_any(type, *prefixes)) return;
      auto& per_publisher = table[std::string(k.substr(0, k.size() - s.second - 1))];
      per_publisher.emplace(type, s.first);
    });
    auto reply = detail::snapshot_reply_head(std::move(request[0]), table);
    const wall_time now = opts.clock->wall_now();
    values.for_each([&](const std::string& type, const last_value& v) {
      if (!detail::matches_any(type, *prefixes)) return;
      if (v.expires_at && now >= *v.expires_at) return;
      reply.emplace_back().copy(const_cast<zmq::message_t&>(v.frame));  // shares the bytes
    });
    // Full (a requester that does not read) or gone: dropped, never queued without bound.
    bool sent = false;
    try {
      sent = zmq::send_multipart(router, reply, zmq::send_flags::dontwait).has_value();
    } catch (const zmq::error_t&) {  // EHOSTUNREACH: the requester left
    }
    ++(sent ? snapshots_served : snapshots_dropped);
  }
};

forwarder::forwarder(zmq::context_t& ctx, forwarder_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}
forwarder::~forwarder() = default;
forwarder::forwarder(forwarder&&) noexcept = default;
forwarder& forwarder::operator=(forwarder&&) noexcept = default;

const std::string& forwarder::frontend_endpoint() const noexcept { return impl_->frontend; }
const std::string& forwarder::backend_endpoint() const noexcept { return impl_->backend; }
const std::string& forwarder::snapshot_endpoint() const noexcept { return impl_->snapshot; }

std::shared_ptr<const forwarder_status> forwarder::status() const { return impl_->published.load(); }

forwarder_stats forwarder::stats() const { return impl_->stats(); }

}  // namespace zmqkit::pubsub
