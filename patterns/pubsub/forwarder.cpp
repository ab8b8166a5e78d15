#include <algorithm>
#include <atomic>
#include <deque>
#include <limits>
#include <map>
#include <msgpack.hpp>
#include <optional>
#include <zmq_addon.hpp>
#include <zmqkit/actor.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/internal/lru_map.hpp>
#include <zmqkit/pubsub/forwarder.hpp>

#include "replay_protocol.hpp"
#include "snapshot_protocol.hpp"
#include "stream_store.hpp"

namespace zmqkit::pubsub {

namespace {

// Messages moved per wake-up before polling again: amortises the poll.
constexpr int batch = 256;

}  // namespace

struct forwarder::impl {
  struct last_value {
    zmq::message_t frame;
    std::optional<wall_time> expires_at;
  };

  forwarder_options opts;
  const zmqkit::clock& clock;
  zmq::socket_t xsub, xpub, router;
  std::string frontend, backend, snapshot;
  std::atomic<std::uint64_t> messages{0}, subscriptions{0}, uncacheable{0}, snapshots_served{0},
      bad_requests{0}, oversize_subscriptions{0}, refused_subscriptions{0}, bad_subscriptions{0},
      snapshots_dropped{0}, evicted_values{0}, cached_values{0}, cached_bytes{0}, subscriptions_held{0},
      subscription_bytes_held{0}, replays_served{0}, replayed_messages{0}, listings_served{0}, acks{0},
      bad_replay_requests{0};
  // Loop thread only.
  internal::lru_map<last_value> values;                           // type -> last envelope
  internal::lru_map<std::pair<std::uint64_t, std::size_t>> seqs;  // publisher '\0' type -> (seq, type length)
  std::optional<detail::stream_store> store;                      // with store_dir
  std::atomic<std::uint64_t> stored{0}, store_refused{0}, store_errors{0}, dropped_by_retention{0},
      stream_restarts{0}, store_messages{0}, store_bytes{0}, store_streams{0}, cursors{0};
  // The distinct prefixes forwarded upstream (what the publishers hold for us).
  internal::keyed_set<std::string> forwarded;
  std::size_t forwarded_bytes = 0;
  std::vector<zmq::message_t> frames;
  // CURVE only: one per socket, declared after the sockets (detached before they close).
  std::vector<std::unique_ptr<handshake_monitor>> monitors;
  // Live status, published for status() (the topics are `forwarded`).
  std::atomic<std::shared_ptr<const forwarder_status>> published;
  steady_time started{};
  std::deque<std::pair<steady_time, std::uint64_t>> rate_points;  // (when, messages)
  std::optional<zmqkit::actor> proxy;  // last: stopped before anything it uses goes

  impl(zmq::context_t& ctx, forwarder_options o)
      : opts(std::move(o)),
        clock(opts.clock ? *opts.clock : zmqkit::clock::real()),
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
    if (!opts.store_dir.empty()) {
      if (opts.snapshot_endpoint.empty())
        throw error(errc::bad_config, "store_dir", "a store needs a snapshot endpoint (replay requests come there)");
      if (opts.retain.messages == 0 || opts.retain.bytes == 0 || opts.retain.max_bytes == 0)
        throw error(errc::bad_config, "retain", "retention bounds must be at least 1");
      store.emplace(detail::stream_store_options{.dir = opts.store_dir,
                                                 .retain_messages = opts.retain.messages,
                                                 .retain_bytes = opts.retain.bytes,
                                                 .retain_age = opts.retain.age,
                                                 .max_bytes = opts.retain.max_bytes,
                                                 .max_streams = opts.max_streams,
                                                 .max_cursors = opts.max_cursors,
                                                 .sync = opts.store_sync});
      store_counters();
    }
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
    started = clock.now();
    publish_status(started);
    proxy.emplace(
        ctx,
        [this](zmqkit::loop& loop, zmq::socket_t&) {
          loop.add(xpub, [this] { pass_subscriptions(); });
          loop.add(xsub, [this] { pass_messages(); });
          if (caching()) loop.add(router, [this] { answer(); });
          loop.every(opts.status_interval, [this] {
            if (store) {
              store->expire(clock.wall_now());
              store->commit();
            }
            publish_status(clock.now());
          });
        },
        clock);
  }

  ~impl() {
    proxy.reset();     // stops and joins the loop
    monitors.clear();  // the sockets are this thread's again: detach before they close
  }

  bool caching() const { return router.handle() != nullptr; }

  // Moves up to `batch` whole messages downstream, counting each before it is
  // sent (so whoever receives it also sees it counted) and caching (and
  // storing) it if asked: stored before forwarded, so what a subscriber
  // receives can be replayed.
  void pass_messages() {
    const wall_time now = store ? clock.wall_now() : wall_time{};
    for (int i = 0; i < batch; ++i) {
      frames.clear();
      if (!zmq::recv_multipart(xsub, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      messages.fetch_add(1, std::memory_order_relaxed);
      if (caching()) remember(now);
      // XPUB drops rather than blocks when a subscriber is full.
      (void)zmq::send_multipart(xpub, frames, zmq::send_flags::dontwait);
    }
    if (store) {
      store->commit();
      store_counters();
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

  void store_counters() {
    const auto& c = store->counters();
    stored = c.stored;
    store_refused = c.refused;
    store_errors = c.errors;
    dropped_by_retention = c.dropped_by_retention;
    stream_restarts = c.restarts;
    store_messages = store->messages();
    store_bytes = store->bytes();
    store_streams = store->stream_count();
    cursors = store->cursor_count();
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
                       .subscription_bytes_held = subscription_bytes_held.load(),
                       .stored = stored.load(),
                       .store_refused = store_refused.load(),
                       .store_errors = store_errors.load(),
                       .dropped_by_retention = dropped_by_retention.load(),
                       .stream_restarts = stream_restarts.load(),
                       .replays_served = replays_served.load(),
                       .replayed_messages = replayed_messages.load(),
                       .listings_served = listings_served.load(),
                       .acks = acks.load(),
                       .bad_replay_requests = bad_replay_requests.load(),
                       .store_messages = store_messages.load(),
                       .store_bytes = store_bytes.load(),
                       .store_streams = store_streams.load(),
                       .cursors = cursors.load()};
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
      }

  // Caches the last value of a stamped [topic, envelope] message (and stores it).
  void remember(wall_time now) {
    if (frames.size() != 2) {
      ++uncacheable;
      return;
    }
    try {
      const envelope_view v = decode_view(frames[1], opts.limits);
      const auto pub = v.header(header::publisher);
      const auto seq_text = v.header(header::sequence);
      const std::uint64_t seq = seq_text ? detail::parse_seq(*seq_text).value_or(0) : 0;  // 0: invalid
      // A publisher id is at most 255 bytes (publisher_options::id), so a stream
      // key is at most 511: the sequence table is bounded by max_types x 511 bytes.
      if (v.type != detail::frame_view(frames[0]) || !pub || pub->empty() || pub->size() > max_type_bytes ||
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
      if (store) store->append(*pub, v.type, seq, detail::frame_view(frames[1]), now);
    } catch (const zmqkit::error&) {
      ++uncacheable;
    }
  }

  // Answers one request on the snapshot endpoint: a snapshot (8.4) or, with a
  // store, the retention exchange (8.6).
  void answer() {
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(router, std::back_inserter(request), zmq::recv_flags::dontwait)) return;
    const std::string_view command = request.size() >= 2 ? detail::frame_view(request[1]) : std::string_view();
    if (!store || command == snapshot_command) return answer_snapshot(request);
    std::optional<std::string> problem;
    if (command == detail::streams_command) problem = answer_streams(request);
    else if (command == detail::replay_command) problem = answer_replay(request);
    else if (command == detail::cursor_command) problem = answer_cursor(request);
    else if (command == detail::ack_command) {
      if (!take_acks(request)) ++bad_replay_requests;  // fire and forget: no answer
      return;
    } else {
      return answer_snapshot(request);  // counted there as a bad request
    }
    if (!problem) return;
    ++bad_replay_requests;
    std::vector<zmq::message_t> reply;
    reply.push_back(std::move(request[0]));
    reply.emplace_back(detail::error_command.data(), detail::error_command.size());
    reply.emplace_back(command.data(), command.size());
    reply.emplace_back(problem->data(), problem->size());
    send_reply(reply);
  }

  // Full (a requester that does not read) or gone: dropped, never queued without bound.
  bool send_reply(std::vector<zmq::message_t>& reply) {
    try {
      if (zmq::send_multipart(router, reply, zmq::send_flags::dontwait)) return true;
    } catch (const zmq::error_t&) {  // EHOSTUNREACH: the requester left
    }
    ++snapshots_dropped;
    return false;
  }

  void answer_snapshot(std::vector<zmq::message_t>& request) {
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
    const wall_time now = clock.wall_now();
    values.for_each([&](const std::string& type, const last_value& v) {
      if (!detail::matches_any(type, *prefixes)) return;
      if (v.expires_at && now >= *v.expires_at) return;
      reply.emplace_back().copy(const_cast<zmq::message_t&>(v.frame));  // shares the bytes
    });
    if (send_reply(reply)) ++snapshots_served;
  }

  static zmq::message_t packed(const msgpack::sbuffer& b) { return zmq::message_t(b.data(), b.size()); }

  // [id, "zmk.streams", prefix...] -> [id, "zmk.streams", {pub: {type: [first, last]}}]
  std::optional<std::string> answer_streams(std::vector<zmq::message_t>& request) {
    if (request.size() - 2 > detail::max_snapshot_prefixes) return "more than 256 prefixes";
    std::vector<std::string_view> prefixes;
    for (std::size_t i = 2; i < request.size(); ++i) prefixes.push_back(detail::frame_view(request[i]));
    if (prefixes.empty()) prefixes.emplace_back();
    std::map<std::string, std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>> table;
    for (auto& r : store->streams(prefixes)) table[std::move(r.pub)][std::move(r.type)] = {r.first, r.last};
    msgpack::sbuffer buf;
    msgpack::pack(buf, table);  // maps stay maps, each range a [first, last] array
    std::vector<zmq::message_t> reply;
    reply.push_back(std::move(request[0]));
    reply.emplace_back(detail::streams_command.data(), detail::streams_command.size());
    reply.push_back(packed(buf));
    if (send_reply(reply)) ++listings_served;
    return std::nullopt;
  }

  // [id, "zmk.replay", pub, type, start, to, max] -> [id, "zmk.replay", pub, type, head, envelope...]
  std::optional<std::string> answer_replay(std::vector<zmq::message_t>& request) {
    if (request.size() != 7) return "expected pub, type, start, to, max";
    const std::string_view pub = detail::frame_view(request[2]), type = detail::frame_view(request[3]);
    if (pub.empty() || pub.size() > max_type_bytes || type.empty() || type.size() > max_type_bytes)
      return "pub and type must be 1 to 255 bytes";
    const auto start = detail::parse_replay_start(detail::frame_view(request[4]));
    const auto to = detail::parse_decimal(detail::frame_view(request[5]));
    const auto max = detail::parse_decimal(detail::frame_view(request[6]));
    if (!start || !to || !max) return "start, to or max is not a decimal number";
    if (*to != 0 && start->seq > *to) return "start after to";
    const std::size_t limit = *max == 0 ? detail::max_replay_messages
                                        : static_cast<std::size_t>(std::min<std::uint64_t>(*max, detail::max_replay_messages));
    std::optional<wall_time> since;
    if (start->since_ns) since = wall_time(std::chrono::nanoseconds(static_cast<std::int64_t>(
                             std::min<std::uint64_t>(*start->since_ns, std::numeric_limits<std::int64_t>::max()))));
    auto batch_read = store->read(pub, type, start->seq, since, *to, limit, detail::max_replay_bytes);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(4);
    pk.pack(std::string_view("next"));
    pk.pack(batch_read.next);
    pk.pack(std::string_view("head"));
    pk.pack(batch_read.head);
    pk.pack(std::string_view("end"));
    pk.pack(batch_read.end);
    pk.pack(std::string_view("lost"));
    pk.pack_array(static_cast<std::uint32_t>(batch_read.lost.size()));
    for (const auto& [first, last] : batch_read.lost) {
      pk.pack_array(2);
      pk.pack(first);
      pk.pack(last);
    }
    std::vector<zmq::message_t> reply;
    reply.push_back(std::move(request[0]));
    reply.emplace_back(detail::replay_command.data(), detail::replay_command.size());
    reply.push_back(std::move(request[2]));
    reply.push_back(std::move(request[3]));
    reply.push_back(packed(buf));
    for (const auto& m : batch_read.messages) reply.emplace_back(m.envelope.data(), m.envelope.size());
    if (send_reply(reply)) {
      ++replays_served;
      replayed_messages += batch_read.messages.size();
    }
    return std::nullopt;
  }

  // [id, "zmk.cursor", name] -> [id, "zmk.cursor", name, {pub: {type: seq}}]
  std::optional<std::string> answer_cursor(std::vector<zmq::message_t>& request) {
    if (request.size() != 3) return "expected a name";
    const std::string_view name = detail::frame_view(request[2]);
    if (name.empty() || name.size() > detail::max_name_bytes) return "a name must be 1 to 255 bytes";
    std::map<std::string, std::map<std::string, std::uint64_t>> table;
    for (auto& [r, seq] : store->cursors(name)) table[std::move(r.pub)][std::move(r.type)] = seq;
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack(table);
    std::vector<zmq::message_t> reply;
    reply.push_back(std::move(request[0]));
    reply.emplace_back(detail::cursor_command.data(), detail::cursor_command.size());
    reply.push_back(std::move(request[2]));
    reply.push_back(packed(buf));
    if (send_reply(reply)) ++listings_served;
    return std::nullopt;
  }

  // [id, "zmk.ack", name, (pub, type, seq)...]: moves the cursors; no answer.
  // Returns: false when malformed or past max_cursors (the valid part is applied).
  bool take_acks(const std::vector<zmq::message_t>& request) {
    if (request.size() < 6 || (request.size() - 3) % 3 != 0 || (request.size() - 3) / 3 > detail::max_acks_per_message)
      return false;
    const std::string_view name = detail::frame_view(request[2]);
    if (name.empty() || name.size() > detail::max_name_bytes) return false;
    bool ok = true;
    for (std::size_t i = 3; i + 2 < request.size(); i += 3) {
      const std::string_view pub = detail::frame_view(request[i]), type = detail::frame_view(request[i + 1]);
      const auto seq = detail::parse_seq(detail::frame_view(request[i + 2]));
      if (pub.empty() || pub.size() > max_type_bytes || type.empty() || type.size() > max_type_bytes || !seq ||
          !store->set_cursor(name, pub, type, *seq)) {
        ok = false;
        continue;
      }
      ++acks;
    }
    store->commit();
    store_counters();
    return ok;
  }
};

forwarder::forwarder(zmq::context_t& ctx, forwarder_options options)
    : impl_(make_pimpl<impl>(ctx, std::move(options))) {}

const std::string& forwarder::frontend_endpoint() const noexcept { return impl_->frontend; }
const std::string& forwarder::backend_endpoint() const noexcept { return impl_->backend; }
const std::string& forwarder::snapshot_endpoint() const noexcept { return impl_->snapshot; }

std::shared_ptr<const forwarder_status> forwarder::status() const { return impl_->published.load(); }

forwarder_stats forwarder::stats() const { return impl_->stats(); }

}  // namespace zmqkit::pubsub
