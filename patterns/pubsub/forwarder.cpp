#include <algorithm>
#include <atomic>
#include <charconv>
#include <deque>
#include <list>
#include <optional>
#include <thread>
#include <unordered_map>
#include <zmq_addon.hpp>
#include <zmqkit/poll.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/pubsub/forwarder.hpp>

#include "snapshot_protocol.hpp"

namespace zmqkit::pubsub {

namespace {

// Messages moved per wake-up before polling again: amortises the poll.
constexpr int batch = 256;

// A map that forgets its least recently updated entry beyond a capacity.
template <class Value>
class lru_map {
 public:
  explicit lru_map(std::size_t capacity) : capacity_(capacity) {}

  Value& update(std::string_view key) {
    auto it = map_.find(key);
    if (it == map_.end()) {
      if (map_.size() >= capacity_) {
        map_.erase(map_.find(*order_.back()));
        order_.pop_back();
      }
      it = map_.emplace(std::string(key), entry{}).first;
      order_.push_front(&it->first);
      it->second.position = order_.begin();
    } else if (it->second.position != order_.begin()) {
      order_.splice(order_.begin(), order_, it->second.position);
    }
    return it->second.value;
  }

  std::size_t size() const noexcept { return map_.size(); }

  template <class F>
  void for_each(F&& f) const {
    for (const auto& [key, e] : map_) f(key, e.value);
  }

 private:
  struct entry {
    Value value{};
    std::list<const std::string*>::iterator position;
  };
  std::size_t capacity_;
  std::unordered_map<std::string, entry, detail::string_hash, std::equal_to<>> map_;
  std::list<const std::string*> order_;  // most recently updated first
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
      bad_requests{0};
  // Loop thread only.
  lru_map<last_value> values;                           // type -> last envelope
  lru_map<std::pair<std::uint64_t, std::size_t>> seqs;  // publisher '\0' type -> (seq, type length)
  std::vector<zmq::message_t> frames;
  // Live status: topics subscribed now (bounded by max_types), published for status().
  internal::keyed_set<std::string> topics;
  std::atomic<std::shared_ptr<const forwarder_status>> published;
  steady_time started{}, next_status{};
  std::deque<std::pair<steady_time, std::uint64_t>> rate_points;  // (when, messages)
  std::thread thread;

  impl(zmq::context_t& ctx, forwarder_options o)
      : opts(std::move(o)),
        xsub(ctx, zmq::socket_type::xsub),
        xpub(ctx, zmq::socket_type::xpub),
        values(opts.max_types),
        seqs(opts.max_types) {
    if (opts.frontend.empty())
      throw error(errc::bad_config, "frontend", "forwarder: frontend endpoint missing");
    if (opts.backend.empty()) throw error(errc::bad_config, "backend", "forwarder: backend endpoint missing");
    if (opts.max_types == 0) throw error(errc::bad_config, "max_types", "must be at least 1");
    if (opts.clock == nullptr) throw error(errc::bad_config, "clock", "forwarder clock is null");
    apply(xsub, opts.socket);
    apply(xpub, opts.socket);
    xsub.bind(opts.frontend);
    frontend = xsub.get(zmq::sockopt::last_endpoint);
    xpub.bind(opts.backend);
    backend = xpub.get(zmq::sockopt::last_endpoint);
    if (!opts.snapshot_endpoint.empty()) {
      router = zmq::socket_t(ctx, zmq::socket_type::router);
      apply(router, opts.socket);
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
      if (items[1].revents & ZMQ_POLLIN) move(xpub, xsub, subscriptions, false);
      if (items[0].revents & ZMQ_POLLIN) move(xsub, xpub, messages, caching());
      if (caching() && (items[3].revents & ZMQ_POLLIN)) answer();
      if (const steady_time now = opts.clock->now(); now >= next_status) publish_status(now);
    }
  }

  // Moves up to `batch` whole messages, counting each before it is sent (so
  // whoever receives it also sees it counted) and caching it if asked.
  void move(zmq::socket_t& from, zmq::socket_t& to, std::atomic<std::uint64_t>& counter, bool cache) {
    for (int i = 0; i < batch; ++i) {
      frames.clear();
      if (!zmq::recv_multipart(from, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      counter.fetch_add(1, std::memory_order_relaxed);
      if (cache) remember();
      if (&from == &xpub) track_subscription();
      // XPUB and XSUB drop rather than block when a peer is full.
      (void)zmq::send_multipart(to, frames, zmq::send_flags::dontwait);
    }
  }

  // A subscription message is [\x01 topic] (subscribe) or [\x00 topic] (unsubscribe).
  void track_subscription() {
    if (frames.empty() || frames[0].size() == 0) return;
    const auto* data = static_cast<const char*>(frames[0].data());
    const std::string_view topic(data + 1, frames[0].size() - 1);
    if (data[0] == 1 && topics.size() < opts.max_types)
      topics.emplace(topic);
    else if (data[0] == 0)
      topics.erase(topic);
  }

  void publish_status(steady_time now) {
    auto st = std::make_shared<forwarder_status>();
    st->stats = {.messages = messages.load(),
                 .subscriptions = subscriptions.load(),
                 .uncacheable = uncacheable.load(),
                 .snapshots_served = snapshots_served.load(),
                 .bad_snapshot_requests = bad_requests.load()};
    st->caching = caching();
    st->streams = seqs.size();
    st->types_cached = values.size();
    st->topics_total = topics.size();
    st->topics.assign(topics.begin(), topics.end());
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
      if (v.type != detail::frame_view(frames[0]) || !pub || pub->empty() || !seq_text ||
          std::from_chars(seq_text->data(), seq_text->data() + seq_text->size(), seq).ptr !=
              seq_text->data() + seq_text->size() ||
          seq == 0) {
        ++uncacheable;
        return;
      }
      last_value& last = values.update(v.type);
      last.frame.copy(frames[1]);
      last.expires_at = v.expires_at();
      std::string key;
      key.reserve(pub->size() + 1 + v.type.size());
      key.append(*pub).push_back('\0');
      key.append(v.type);
      seqs.update(key) = {seq, v.type.size()};
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
      reply.emplace_back().copy(const_cast<zmq::message_t&>(v.frame));
    });
    (void)zmq::send_multipart(router, reply, zmq::send_flags::dontwait);
    ++snapshots_served;
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

forwarder_stats forwarder::stats() const {
  return {.messages = impl_->messages.load(),
          .subscriptions = impl_->subscriptions.load(),
          .uncacheable = impl_->uncacheable.load(),
          .snapshots_served = impl_->snapshots_served.load(),
          .bad_snapshot_requests = impl_->bad_requests.load()};
}

}  // namespace zmqkit::pubsub
