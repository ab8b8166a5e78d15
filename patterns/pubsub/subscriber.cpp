#include <algorithm>
#include <charconv>
#include <deque>
#include <span>
#include <tuple>
#include <zmq_addon.hpp>
#include <zmqkit/pubsub/publisher.hpp>  // snapshot_command
#include <zmqkit/poll.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include <zmqkit/internal/keyed_hash.hpp>

namespace zmqkit::pubsub {

namespace {

using steady = std::chrono::steady_clock;

// A stream is what one publisher sends of one type: the unit of numbering.
struct stream_view {
  std::string_view publisher, type;
};

// The stream table's key: the publisher id's length (4 bytes, big endian),
// the id, then the type — unambiguous whatever bytes either holds.
void stream_key(stream_view k, std::string& out) {
  const auto n = static_cast<std::uint32_t>(k.publisher.size());
  out.clear();
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(k.publisher).append(k.type);
}

std::string_view view(const zmq::message_t& m) { return {static_cast<const char*>(m.data()), m.size()}; }

// Reads a msgpack str at p (already validated by decode_view) and advances p.
std::string_view read_validated_str(const std::uint8_t*& p) {
  std::size_t n;
  const std::uint8_t b = *p++;
  if ((b & 0xe0) == 0xa0) {
    n = b & 0x1f;
  } else if (b == 0xd9) {
    n = *p++;
  } else if (b == 0xda) {
    n = (std::size_t{p[0]} << 8) | p[1];
    p += 2;
  } else {  // 0xdb
    n = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | p[3];
    p += 4;
  }
  const std::string_view s(reinterpret_cast<const char*>(p), n);
  p += n;
  return s;
}

// Returns: zmk.pub and zmk.seq in one pass over the (validated) header map.
std::pair<std::optional<std::string_view>, std::optional<std::string_view>> stamp_headers(
    const envelope_view& v) {
  std::pair<std::optional<std::string_view>, std::optional<std::string_view>> found;
  const auto* p = reinterpret_cast<const std::uint8_t*>(v.headers_raw.data());
  const std::uint8_t b = *p++;
  if (b == 0xde)
    p += 2;  // map16 (a fixmap has its count in b)
  else if (b == 0xdf)
    p += 4;  // map32
  for (std::size_t i = 0; i < v.header_count; ++i) {
    const std::string_view key = read_validated_str(p);
    const std::string_view value = read_validated_str(p);
    if (key == header::publisher)
      found.first = value;
    else if (key == header::sequence)
      found.second = value;
  }
  return found;
}

std::optional<std::uint64_t> parse_seq(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value == 0) return std::nullopt;
  return value;
}

}  // namespace

struct subscriber::impl {
  struct stream_state {
    std::uint64_t expected = 0;  // next sequence number; 0 = no baseline yet
    std::uint64_t covered = 0;   // snapshot sequence; live messages <= it are stale
    std::uint64_t last_heard = 0;
  };

  zmq::context_t* ctx;
  subscriber_options opts;
  zmq::socket_t sub;
  std::vector<std::string> endpoints;
  std::vector<std::string> prefixes;
  std::deque<std::pair<zmq::message_t, std::uint64_t>> pending;  // snapshot values not yet delivered
  zmq::message_t current;               // the frame the last notification_view points into
  stream_state* last_stream = nullptr;  // the previous message's stream: usually the next one's too
  std::string last_publisher, last_type;
  // Keyed by peers' ids and types: a keyed hash (hash flooding).
  internal::keyed_map<std::string, stream_state> streams;
  std::string key_scratch;  // reused for lookups, so a hit allocates nothing
  std::uint64_t heard = 0;  // message ordinal, orders streams by recency
  subscriber_stats st;
  bool lagging = false;
  zmq::message_t topic, body;
  int receive_timeout_ms = -1;  // the SUB socket's current ZMQ_RCVTIMEO
  // attach(): the loop, the SUB socket's watch, a one-shot that delivers queued snapshot values.
  zmqkit::loop* attached = nullptr;
  zmqkit::loop::id socket_watch = 0, kick = 0;
  message_handler on_message;

  impl(zmq::context_t& c, subscriber_options o) : ctx(&c), opts(std::move(o)) {
    if (opts.clock == nullptr) throw error(errc::bad_config, "clock", "subscriber clock is null");
    if (opts.max_streams == 0) throw error(errc::bad_config, "max_streams", "must be at least 1");
    open();
  }

  ~impl() { detach(); }

  void open() {
    unwatch();  // before the old socket closes
    sub = zmq::socket_t(*ctx, zmq::socket_type::sub);
    receive_timeout_ms = -1;
    apply(sub, opts.socket);
    for (const auto& p : prefixes) sub.set(zmq::sockopt::subscribe, p);
    for (const auto& e : endpoints) sub.connect(e);
    watch();
  }

  // --- on a loop ---
  void attach(zmqkit::loop& l, message_handler handler) {
    if (attached) throw error(errc::bad_config, "loop", "the subscriber is attached to a loop already");
    if (!handler) throw error(errc::bad_config, "on_message", "attach needs a message handler");
    attached = &l;
    on_message = std::move(handler);
    watch();
    deliver_queued();
  }

  void detach() noexcept {
    if (!attached) return;
    unwatch();
    attached->cancel(kick);
    kick = 0;
    attached = nullptr;  // on_message stays: detach() may be called from inside it
  }

  void watch() {
    if (attached) socket_watch = attached->add(sub, [this] { deliver(); });
  }
  void unwatch() noexcept {
    if (attached && socket_watch) attached->cancel(socket_watch);
    socket_watch = 0;
  }

  // A bounded batch per call: the loop comes back while the socket is readable.
  void deliver() {
    for (int i = 0; i < 256 && attached; ++i) {
      auto n = receive_view(std::chrono::milliseconds(0));
      if (!n) return;
      on_message(*n);
    }
    deliver_queued();  // snapshot values left over: the socket need not turn readable for them
  }

  // Snapshot values wait in `pending`, not in the socket: ask the loop to come back for them.
  void deliver_queued() {
    if (!attached || pending.empty() || kick) return;
    kick = attached->after(std::chrono::nanoseconds(0), [this] {
      kick = 0;
      deliver();
    });
  }

  stream_state& state(stream_view key) {
    if (last_stream != nullptr && key.publisher == last_publisher && key.type == last_type) {
      last_stream->last_heard = ++heard;
      return *last_stream;
    }
    stream_key(key, key_scratch);
    auto it = streams.find(key_scratch);
    if (it == streams.end()) {
      if (streams.size() >= opts.max_streams) {
        auto oldest = std::min_element(streams.begin(), streams.end(), [](const auto& a, const auto& b) {
          return a.second.last_heard < b.second.last_heard;
        });
        streams.erase(oldest);
        last_stream = nullptr;
      }
      it = streams.emplace(key_scratch, stream_state{}).first;
    }
    it->second.last_heard = ++heard;
    last_stream = &it->second;
    last_publisher.assign(key.publisher);
    last_type.assign(key.type);
    return it->second;
  }

  // Returns: whether a live message numbered `seq` in stream `key` is to be delivered.
  bool track(stream_view key, std::uint64_t seq) {
    stream_state& p = state(key);
    if (p.covered != 0) {
      if (seq <= p.covered) {
        ++st.stale;
        return false;
      }
      p.covered = 0;  // a stream arrives in order: nothing older can follow
    }
    if (p.expected != 0 && seq > p.expected) {
      const gap g{std::string(key.publisher), std::string(key.type), p.expected, seq - p.expected};
      ++st.gaps;
      st.missed += g.count;
      if (opts.on_gap) opts.on_gap(g);
    } else if (p.expected != 0 && seq < p.expected) {
      ++st.restarts;  // numbering restarted: a new incarnation, or the publisher forgot the type
    }
    p.expected = seq + 1;
    return true;
  }

  bool subscribed(std::string_view type) const {
    return std::any_of(prefixes.begin(), prefixes.end(),
                       [&](const std::string& p) { return type.starts_with(p); });
  }

  // Reads one snapshot reply ["zmk.snapshot", {publisher: {type: seq}}, envelope...].
  // Returns: whether it was well-formed (its values are then queued).
  bool take_snapshot(std::vector<zmq::message_t>& reply, std::size_t& values) {
    if (reply.size() < 2 || view(reply[0]) != snapshot_command) return false;
    std::vector<std::tuple<std::string, std::string, std::uint64_t>> seqs;
    try {
      const std::string_view raw = view(reply[1]);
      std::size_t offset = 0;
      const auto handle = msgpack::unpack(raw.data(), raw.size(), offset, nullptr, nullptr,
                                          msgpack::unpack_limit(0, 1 << 20, 1 << 20, 0, 0, 3));
      if (offset != raw.size()) return false;
      const msgpack::object& map = handle.get();
      if (map.type != msgpack::type::MAP) return false;
      for (const auto& pub : std::span(map.via.map.ptr, map.via.map.size)) {
        if (pub.key.type != msgpack::type::STR || pub.val.type != msgpack::type::MAP) return false;
        for (const auto& kv : std::span(pub.val.via.map.ptr, pub.val.via.map.size)) {
          if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::POSITIVE_INTEGER)
            return false;
          seqs.emplace_back(pub.key.as<std::string>(), kv.key.as<std::string>(), kv.val.as<std::uint64_t>());
        }
      }
    } catch (const std::exception&) {
      return false;
    }
    for (std::size_t i = 2; i < reply.size(); ++i) {
      try {
        const envelope_view v = decode_view(reply[i], opts.limits);
        const auto seq = v.header(header::sequence);
        const auto parsed = seq ? parse_seq(*seq) : std::nullopt;
        if (!parsed || !v.header(header::publisher) || !subscribed(v.type)) {
          ++st.bad_frames;
          continue;
        }
        pending.emplace_back(std::move(reply[i]), *parsed);
        ++values;
      } catch (const zmqkit::error&) {
        ++st.bad_frames;
      }
    }
    for (const auto& [pub, type, seq] : seqs) {
      if (!subscribed(type)) continue;
      stream_state& p = state(stream_view{pub, type});
      p.expected = std::max(p.expected, seq + 1);
      p.covered = seq;
    }
    ++st.snapshots;
    return true;
  }

  std::optional<std::size_t> request_snapshot(std::chrono::milliseconds timeout) {
    if (opts.snapshot_endpoints.empty() || prefixes.empty()) return 0;
    // A fresh DEALER per request: a late answer to an earlier, timed-out
    // request can never be mistaken for this one.
    std::vector<zmq::socket_t> dealers;
    for (const auto& e : opts.snapshot_endpoints) {
      auto& d = dealers.emplace_back(*ctx, zmq::socket_type::dealer);
      apply(d, opts.socket);
      d.set(zmq::sockopt::linger, 0);  // an unanswered request is worthless after we return
      d.connect(e);
      std::vector<zmq::const_buffer> request{zmq::buffer(snapshot_command)};
      for (const auto& p : prefixes) request.push_back(zmq::buffer(p));
      zmq::send_multipart(d, request, zmq::send_flags::dontwait);
    }
    std::size_t values = 0;
    std::size_t open_requests = dealers.size();
    std::vector<bool> answered(dealers.size(), false);
    const auto deadline = steady::now() + timeout;
    while (open_requests > 0) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
      if (left.count() <= 0) break;
      std::vector<zmq::pollitem_t> items;
      for (auto& d : dealers) items.push_back({d.handle(), 0, ZMQ_POLLIN, 0});
      zmqkit::poll(items.data(), items.size(), left);
      for (std::size_t i = 0; i < dealers.size(); ++i) {
        if (answered[i] || !(items[i].revents & ZMQ_POLLIN)) continue;
        std::vector<zmq::message_t> reply;
        if (!zmq::recv_multipart(dealers[i], std::back_inserter(reply), zmq::recv_flags::dontwait)) continue;
        if (take_snapshot(reply, values)) {
          answered[i] = true;
          --open_requests;
        } else {
          ++st.bad_frames;
        }
      }
    }
    deliver_queued();
    if (open_requests > 0) return std::nullopt;
    return values;
  }

  std::optional<std::size_t> resync(std::chrono::milliseconds timeout) {
    open();  // closing the old socket discards everything it had queued
    pending.clear();
    streams.clear();
    last_stream = nullptr;
    lagging = false;
    ++st.resyncs;
    return request_snapshot(timeout);
  }

  enum class frames { none, two, bad };

  // Reads one message into topic/body. Returns: none on timeout, bad unless exactly two frames.
  frames receive_frames(std::optional<steady::time_point>& deadline, std::chrono::milliseconds timeout) {
    // Try first: the clock is read only when there is something to wait for.
    while (!sub.recv(topic, zmq::recv_flags::dontwait)) {
      if (!deadline) deadline = steady::now() + timeout;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - steady::now());
      if (left.count() <= 0) return frames::none;
      // A blocking receive with a timeout wakes up cheaper than zmq::poll.
      const int ms = to_zmq_ms(left);
      if (ms != receive_timeout_ms) sub.set(zmq::sockopt::rcvtimeo, receive_timeout_ms = ms);
      if (zmqkit::recv(sub, topic)) break;
    }
    if (!topic.more()) return frames::bad;
    (void)sub.recv(body, zmq::recv_flags::dontwait);  // the rest of a multipart message is already here
    if (!body.more()) return frames::two;
    while (body.more()) (void)sub.recv(body, zmq::recv_flags::dontwait);
    return frames::bad;
  }

  std::optional<notification_view> receive_view(std::chrono::milliseconds timeout) {
    std::optional<steady::time_point> deadline;
    for (;;) {
      if (!pending.empty()) {
        current = std::move(pending.front().first);
        const std::uint64_t seq = pending.front().second;
        pending.pop_front();
        ++st.from_snapshot;
        return notification_view{decode_view(current, opts.limits), seq, true};  // validated on arrival
      }
      const frames got = receive_frames(deadline, timeout);
      if (got == frames::none) return std::nullopt;
      if (got == frames::bad) {
        ++st.bad_frames;
        continue;
      }
      // The view points into `current` from here on (a small frame keeps its
      // bytes inside the message object, so decode only after the swap).
      current.swap(body);
      envelope_view v;
      try {
        v = decode_view(current, opts.limits);
      } catch (const zmqkit::error&) {
        ++st.bad_frames;
        continue;
      }
      if (v.type != view(topic)) {  // the topic must be the type, or prefix filtering lies
        ++st.bad_frames;
        continue;
      }
      const auto [pub, seq_text] = stamp_headers(v);
      if (!pub && !seq_text) {
        ++st.untracked;
        ++st.received;
        return notification_view{v, 0, false};
      }
      const auto seq = seq_text ? parse_seq(*seq_text) : std::nullopt;
      if (!pub || pub->empty() || !seq) {
        ++st.bad_frames;
        continue;
      }
      if (opts.max_lag.count() > 0) {
        const auto behind = opts.clock->wall_now() - v.timestamp;
        if (behind > opts.max_lag) {
          if (!lagging) {
            lagging = true;
            ++st.lag_reports;
            const lag_action action =
                opts.on_lag ? opts.on_lag(lag{std::string(*pub), *seq, behind}) : lag_action::keep_going;
            if (action == lag_action::resync) {
              resync(opts.resync_timeout);
              continue;
            }
          }
        } else {
          lagging = false;
        }
      }
      if (!track(stream_view{*pub, v.type}, *seq)) continue;
      ++st.received;
      return notification_view{v, *seq, false};
    }
  }
};

subscriber::subscriber(zmq::context_t& ctx, subscriber_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}
subscriber::~subscriber() = default;
subscriber::subscriber(subscriber&&) noexcept = default;
subscriber& subscriber::operator=(subscriber&&) noexcept = default;

void subscriber::connect(const std::string& endpoint) {
  impl_->sub.connect(endpoint);
  impl_->endpoints.push_back(endpoint);
}

void subscriber::subscribe(const std::string& prefix) {
  impl_->sub.set(zmq::sockopt::subscribe, prefix);
  impl_->prefixes.push_back(prefix);
}

void subscriber::unsubscribe(const std::string& prefix) {
  impl_->sub.set(zmq::sockopt::unsubscribe, prefix);
  auto& p = impl_->prefixes;
  if (auto it = std::find(p.begin(), p.end(), prefix); it != p.end()) p.erase(it);
}

std::optional<std::size_t> subscriber::request_snapshot(std::chrono::milliseconds timeout) {
  return impl_->request_snapshot(timeout);
}

std::optional<std::size_t> subscriber::resync(std::chrono::milliseconds timeout) {
  return impl_->resync(timeout);
}

std::optional<notification> subscriber::receive(std::chrono::milliseconds timeout) {
  auto v = impl_->receive_view(timeout);
  if (!v) return std::nullopt;
  return notification{v->env.to_envelope(), v->sequence, v->from_snapshot};
}

std::optional<notification_view> subscriber::receive_view(std::chrono::milliseconds timeout) {
  return impl_->receive_view(timeout);
}

void subscriber::attach(zmqkit::loop& loop, message_handler on_message) {
  impl_->attach(loop, std::move(on_message));
}
void subscriber::detach() noexcept { impl_->detach(); }

const subscriber_stats& subscriber::stats() const noexcept { return impl_->st; }

}  // namespace zmqkit::pubsub
