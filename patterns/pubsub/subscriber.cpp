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

#include "replay_protocol.hpp"

namespace zmqkit::pubsub {

namespace {

using detail::parse_seq;

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

}  // namespace

struct subscriber::impl {
  struct stream_state {
    std::uint64_t expected = 0;  // next sequence number; 0 = no baseline yet
    std::uint64_t covered = 0;   // snapshot sequence; live messages <= it are stale
    std::uint64_t last_heard = 0;
  };

  // A message waiting to be delivered before anything live is read.
  struct queued {
    enum source { snapshot, replay, held } from;  // held: the live message that showed a repaired gap
    zmq::message_t frame;
    std::uint64_t seq;
  };
  // A range to fetch from the forwarder's store, a batch per request.
  struct replay_job {
    std::string pub, type;
    detail::replay_start start;
    std::uint64_t to = 0;              // the last missing number (a repair), or 0: up to the head (a replay)
    std::optional<queued> after;       // delivered once the range is in
  };

  zmq::context_t* ctx;
  subscriber_options opts;
  const zmqkit::clock& clock;
  zmq::socket_t sub;
  std::vector<std::string> endpoints;
  std::vector<std::string> prefixes;
  std::deque<queued> pending;  // snapshot values and replayed messages not yet delivered
  // Replay (with a replay endpoint): the jobs, their DEALER (fresh after a
  // timeout, so a late answer is never taken for the next one), and whether the
  // start-up listing (and the durable cursors) is done.
  std::deque<replay_job> jobs;
  zmq::socket_t replay_socket, ack_socket;
  bool begun = false;
  internal::keyed_map<std::string, std::uint64_t> cursor_of;  // durable: stream key -> acknowledged seq
  // Durable: the message delivered last (acknowledged when the next receive
  // starts: its handler is done) and the acknowledgements not yet sent.
  std::optional<std::tuple<std::string, std::string, std::uint64_t>> delivered;
  std::size_t acks_waiting = 0;
  internal::keyed_map<std::string, std::tuple<std::string, std::string, std::uint64_t>> unsent_acks;
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

  impl(zmq::context_t& c, subscriber_options o)
      : ctx(&c), opts(std::move(o)), clock(opts.clock ? *opts.clock : zmqkit::clock::real()) {
    if (opts.max_streams == 0) throw error(errc::bad_config, "max_streams", "must be at least 1");
    if (opts.replay_endpoint.empty() && (!opts.start.live() || !opts.durable_name.empty()))
      throw error(errc::bad_config, "replay_endpoint", "start and durable_name replay from a replay_endpoint");
    if (opts.durable_name.size() > detail::max_name_bytes)
      throw error(errc::bad_config, "durable_name", "at most 255 bytes");
    if (opts.ack_every == 0) throw error(errc::bad_config, "ack_every", "must be at least 1");
    begun = opts.start.live() && opts.durable_name.empty();  // nothing to list at start-up
    open();
  }

  ~impl() {
    detach();
    acknowledge();
    send_acks();  // the ack socket lingers to deliver them
  }

  bool durable() const { return !opts.durable_name.empty(); }

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
    deliver_queued();
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
    if (!attached || (pending.empty() && jobs.empty() && begun) || kick) return;
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

  enum class verdict { deliver, drop, held };

  // Decides what happens to a live message numbered `seq` of stream `key`:
  // delivered now, dropped (stale), or held behind a repair of the numbers
  // before it (with a replay endpoint; then `current` is moved into the job).
  verdict track(stream_view key, std::uint64_t seq) {
    stream_state& p = state(key);
    if (p.covered != 0) {
      if (seq <= p.covered) {
        ++st.stale;
        return verdict::drop;
      }
      p.covered = 0;  // a stream arrives in order: nothing older can follow
    }
    std::optional<detail::replay_start> missing;  // where the numbers before `seq` begin, to repair
    if (p.expected == 0 && !opts.replay_endpoint.empty()) {
      const detail::replay_start from = begin_of(key);
      if (!from.since_ns && from.seq == 0) {
        // live: this first message is the stream's start
      } else if (!from.since_ns && seq < from.seq) {
        p.expected = from.seq;  // before where this subscriber starts
        p.covered = from.seq - 1;
        ++st.stale;
        return verdict::drop;
      } else if (from.since_ns || seq > from.seq) {
        missing = from;
      }
    } else if (p.expected != 0 && seq > p.expected) {
      if (opts.replay_endpoint.empty()) {
        report_gap(key.publisher, key.type, p.expected, seq - 1);
      } else {
        missing = detail::replay_start{p.expected, std::nullopt};
      }
    } else if (p.expected != 0 && seq < p.expected) {
      ++st.restarts;  // numbering restarted: a new incarnation, or the publisher forgot the type
    }
    p.expected = seq + 1;
    if (!missing) return verdict::deliver;
    jobs.push_back(replay_job{std::string(key.publisher), std::string(key.type), *missing, seq - 1,
                              queued{queued::held, std::move(current), seq}});
    return verdict::held;
  }

  void report_gap(std::string_view pub, std::string_view type, std::uint64_t first, std::uint64_t last) {
    const gap g{std::string(pub), std::string(type), first, last - first + 1};
    ++st.gaps;
    st.missed += g.count;
    if (opts.on_gap) opts.on_gap(g);
  }

  // Where stream `key` begins for this subscriber: after its durable cursor, or at `start`.
  detail::replay_start begin_of(stream_view key) const {
    if (durable()) {
      std::string k;
      stream_key(key, k);
      if (const auto it = cursor_of.find(k); it != cursor_of.end()) return {it->second + 1, std::nullopt};
    }
    if (opts.start.sequence != 0) return {opts.start.sequence, std::nullopt};
    if (opts.start.time)
      return {0, static_cast<std::uint64_t>(std::max<std::int64_t>(0, opts.start.time->time_since_epoch().count()))};
    return {};
  }

  // --- replay (docs/protocol.md 8.6) ---
  zmq::socket_t& replay_dealer() {
    if (!replay_socket) {
      replay_socket = zmq::socket_t(*ctx, zmq::socket_type::dealer);
      apply(replay_socket, opts.socket);
      replay_socket.set(zmq::sockopt::linger, 0);  // an unanswered request is worthless once given up
      replay_socket.connect(opts.replay_endpoint);
    }
    return replay_socket;
  }

  // Sends `request` and waits up to replay_timeout for its answer.
  // Returns: the answer ([command, ...]), or nullopt when there was none in time
  // or the forwarder refused the request (zmk.error).
  std::optional<std::vector<zmq::message_t>> ask(const std::vector<std::string_view>& request) {
    zmq::socket_t& d = replay_dealer();
    std::vector<zmq::const_buffer> frames;
    for (const auto f : request) frames.push_back(zmq::buffer(f));
    ++st.replay_requests;
    const auto deadline = steady::now() + opts.replay_timeout;
    if (zmq::send_multipart(d, frames, zmq::send_flags::dontwait)) {
      for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
        if (left.count() <= 0) break;
        zmq::pollitem_t item{d.handle(), 0, ZMQ_POLLIN, 0};
        zmqkit::poll(&item, 1, left);
        std::vector<zmq::message_t> reply;
        if (!(item.revents & ZMQ_POLLIN) || !zmq::recv_multipart(d, std::back_inserter(reply), zmq::recv_flags::dontwait))
          continue;
        if (!reply.empty() && view(reply[0]) == request[0]) return reply;
        ++st.bad_frames;
        if (!reply.empty() && view(reply[0]) == detail::error_command) return std::nullopt;
      }
    }
    ++st.replay_timeouts;
    replay_socket = zmq::socket_t();  // a late answer goes with it
    return std::nullopt;
  }

  static const msgpack::object* field(const msgpack::object& map, std::string_view key) {
    for (const auto& kv : std::span(map.via.map.ptr, map.via.map.size))
      if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key)
        return &kv.val;
    return nullptr;
  }

  static std::optional<msgpack::object_handle> unpack_map(const zmq::message_t& frame) {
    try {
      const std::string_view raw = view(frame);
      std::size_t offset = 0;
      auto h = msgpack::unpack(raw.data(), raw.size(), offset, nullptr, nullptr,
                               msgpack::unpack_limit(1 << 20, 1 << 20, 1 << 20, 0, 0, 4));
      if (offset != raw.size() || h.get().type != msgpack::type::MAP) return std::nullopt;
      return h;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }

  // At the first receive: the durable cursors, then the stored streams of the
  // subscribed types, each replayed from where this subscriber begins.
  void begin() {
    if (durable()) {
      const auto reply = ask({detail::cursor_command, opts.durable_name});
      const auto table = reply && reply->size() == 3 ? unpack_map((*reply)[2]) : std::nullopt;
      if (!table) return;  // asked again next time: a durable subscriber does not guess where it was
      for (const auto& pub : std::span(table->get().via.map.ptr, table->get().via.map.size)) {
        if (pub.key.type != msgpack::type::STR || pub.val.type != msgpack::type::MAP) continue;
        for (const auto& t : std::span(pub.val.via.map.ptr, pub.val.via.map.size)) {
          if (t.key.type != msgpack::type::STR || t.val.type != msgpack::type::POSITIVE_INTEGER) continue;
          std::string key;
          stream_key({pub.key.as<std::string_view>(), t.key.as<std::string_view>()}, key);
          cursor_of[key] = t.val.as<std::uint64_t>();
        }
      }
    }
    std::vector<std::string_view> request{detail::streams_command};
    for (const auto& p : prefixes) request.push_back(p);
    const auto reply = ask(request);
    const auto table = reply && reply->size() == 2 ? unpack_map((*reply)[1]) : std::nullopt;
    if (!table && durable()) return;
    begun = true;  // without a listing, each stream begins when first heard
    if (!table) return;
    for (const auto& pub : std::span(table->get().via.map.ptr, table->get().via.map.size)) {
      if (pub.key.type != msgpack::type::STR || pub.val.type != msgpack::type::MAP) continue;
      for (const auto& t : std::span(pub.val.via.map.ptr, pub.val.via.map.size)) {
        if (t.key.type != msgpack::type::STR || t.val.type != msgpack::type::ARRAY || t.val.via.array.size != 2 ||
            t.val.via.array.ptr[1].type != msgpack::type::POSITIVE_INTEGER)
          continue;
        const stream_view key{pub.key.as<std::string_view>(), t.key.as<std::string_view>()};
        const std::uint64_t last = t.val.via.array.ptr[1].as<std::uint64_t>();
        const detail::replay_start from = begin_of(key);
        if (!subscribed(key.type) || (!from.since_ns && from.seq == 0)) continue;  // live: nothing to replay
        stream_state& p = state(key);
        if (!from.since_ns && from.seq > last) {  // nothing stored past where it begins: live from there
          p.expected = from.seq;
          p.covered = from.seq - 1;
          continue;
        }
        jobs.push_back(replay_job{std::string(key.publisher), std::string(key.type), from, 0, std::nullopt});
      }
    }
  }

  // Fetches one batch of the first job into `pending`; finishes the job at its end.
  void fetch(replay_job& job) {
    const std::string start = detail::format_replay_start(job.start), to = std::to_string(job.to);
    auto reply = ask({detail::replay_command, job.pub, job.type, start, to, "0"});
    const auto step = reply ? take_replay(*reply, job) : std::nullopt;
    if (!step) {  // unanswered or refused: what it asked for is lost to this subscriber
      if (job.to != 0 && !job.start.since_ns && job.start.seq <= job.to)
        report_gap(job.pub, job.type, job.start.seq, job.to);
      return finish(job, job.to + 1);
    }
    if (step->end) return finish(job, step->next);
    job.start = detail::replay_start{step->next, std::nullopt};
  }

  struct replay_step {
    std::uint64_t next;  // the number to ask for next (at the end: where the stream continues)
    bool end;
  };

  // Reads a replay reply [replay, pub, type, {next, head, end, lost}, envelope...]:
  // queues its messages, reports its lost ranges.
  // Returns: where it got to; nullopt if malformed.
  std::optional<replay_step> take_replay(std::vector<zmq::message_t>& reply, replay_job& job) {
    if (reply.size() < 4 || view(reply[1]) != job.pub || view(reply[2]) != job.type) return bad_reply();
    const auto head = unpack_map(reply[3]);
    if (!head) return bad_reply();
    const msgpack::object *next = field(head->get(), "next"), *end = field(head->get(), "end"),
                          *lost = field(head->get(), "lost");
    if (!next || next->type != msgpack::type::POSITIVE_INTEGER || !end || end->type != msgpack::type::BOOLEAN ||
        !lost || lost->type != msgpack::type::ARRAY)
      return bad_reply();
    const std::uint64_t next_seq = next->as<std::uint64_t>();
    for (const auto& range : std::span(lost->via.array.ptr, lost->via.array.size)) {
      if (range.type != msgpack::type::ARRAY || range.via.array.size != 2 ||
          range.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER ||
          range.via.array.ptr[1].type != msgpack::type::POSITIVE_INTEGER)
        continue;
      const auto first = range.via.array.ptr[0].as<std::uint64_t>(), last = range.via.array.ptr[1].as<std::uint64_t>();
      if (first >= 1 && first <= last) report_gap(job.pub, job.type, first, last);
    }
    std::uint64_t after = job.start.since_ns ? 0 : job.start.seq - 1;  // replayed numbers rise from here
    for (std::size_t i = 4; i < reply.size(); ++i) {
      try {
        const envelope_view v = decode_view(reply[i], opts.limits);
        const auto [pub, seq_text] = stamp_headers(v);
        const std::uint64_t seq = seq_text ? parse_seq(*seq_text).value_or(0) : 0;  // 0: invalid
        if (v.type != job.type || !pub || *pub != job.pub || seq == 0 || seq <= after || (job.to != 0 && seq > job.to)) {
          ++st.bad_frames;
          continue;
        }
        after = seq;
        pending.push_back(queued{queued::replay, std::move(reply[i]), seq});
      } catch (const zmqkit::error&) {
        ++st.bad_frames;
      }
    }
    if (end->as<bool>()) return replay_step{std::max(next_seq, after + 1), true};
    if (next_seq <= after || (!job.start.since_ns && next_seq <= job.start.seq)) return bad_reply();  // no progress
    return replay_step{next_seq, false};
  }

  std::optional<replay_step> bad_reply() {
    ++st.bad_frames;
    return std::nullopt;
  }

  // Ends the first job: the held live message follows the range; after a
  // replay up to the head, live messages continue past what it replayed.
  void finish(replay_job& job, std::uint64_t next) {
    if (job.after) {
      pending.push_back(std::move(*job.after));
    } else if (next > 1) {
      stream_state& p = state(stream_view{job.pub, job.type});
      p.expected = std::max(p.expected, next);
      p.covered = std::max(p.covered, next - 1);
    }
    jobs.pop_front();
  }

  // --- durable acknowledgements ---
  // The previous receive's message has been handled: it counts as acknowledged.
  void acknowledge() {
    if (!delivered) return;
    auto& [pub, type, seq] = *delivered;
    std::string key;
    stream_key({pub, type}, key);
    unsent_acks.insert_or_assign(std::move(key), std::move(*delivered));
    delivered.reset();
    if (++acks_waiting >= opts.ack_every) send_acks();
  }

  void send_acks() {
    acks_waiting = 0;
    if (unsent_acks.empty()) return;
    if (!ack_socket) {
      ack_socket = zmq::socket_t(*ctx, zmq::socket_type::dealer);
      apply(ack_socket, opts.socket);
      ack_socket.set(zmq::sockopt::linger, 2000);  // acknowledgements still go out as the subscriber closes
      ack_socket.connect(opts.replay_endpoint);
    }
    std::vector<std::string> seqs;
    std::vector<zmq::const_buffer> frames;
    auto flush = [&] {
      if (frames.size() > 2 && zmq::send_multipart(ack_socket, frames, zmq::send_flags::dontwait)) ++st.acks_sent;
      frames = {zmq::buffer(detail::ack_command), zmq::buffer(opts.durable_name)};
      seqs.clear();
    };
    flush();
    seqs.reserve(detail::max_acks_per_message);  // buffers point into it: never reallocated
    for (const auto& [key, ack] : unsent_acks) {
      const auto& [pub, type, seq] = ack;
      seqs.push_back(std::to_string(seq));
      frames.insert(frames.end(), {zmq::buffer(pub), zmq::buffer(type), zmq::buffer(seqs.back())});
      if (seqs.size() == detail::max_acks_per_message) flush();
    }
    flush();
    unsent_acks.clear();
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
        pending.push_back(queued{queued::snapshot, std::move(reply[i]), *parsed});
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
    jobs.clear();
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
      if (!deadline) {
        send_acks();  // idle: the forwarder hears where we are before we wait
        deadline = steady::now() + timeout;
      }
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
    acknowledge();
    if (!begun) begin();
    for (;;) {
      if (!pending.empty()) {
        queued q = std::move(pending.front());
        pending.pop_front();
        current = std::move(q.frame);
        const envelope_view v = decode_view(current, opts.limits);  // validated on arrival
        if (q.from == queued::snapshot) {
          ++st.from_snapshot;
          return notification_view{v, q.seq, true, false};
        }
        q.from == queued::replay ? ++st.replayed : ++st.received;
        if (durable()) delivered.emplace(std::string(*stamp_headers(v).first), std::string(v.type), q.seq);
        return notification_view{v, q.seq, false, q.from == queued::replay};
      }
      if (!jobs.empty()) {
        fetch(jobs.front());
        continue;
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
      const std::optional<envelope_view> decoded = try_decode_view(current, opts.limits);
      if (!decoded) {
        ++st.bad_frames;
        continue;
      }
      const envelope_view& v = *decoded;
      if (v.type != view(topic)) {  // the topic must be the type, or prefix filtering lies
        ++st.bad_frames;
        continue;
      }
      const auto [pub, seq_text] = stamp_headers(v);
      if (!pub && !seq_text) {
        ++st.untracked;
        ++st.received;
        return notification_view{v, 0, false, false};
      }
      const auto seq = seq_text ? parse_seq(*seq_text) : std::nullopt;
      if (!pub || pub->empty() || !seq) {
        ++st.bad_frames;
        continue;
      }
      if (opts.max_lag.count() > 0) {
        const auto behind = clock.wall_now() - v.timestamp;
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
      const verdict verdict = track(stream_view{*pub, v.type}, *seq);
      if (verdict != verdict::deliver) continue;
      ++st.received;
      if (durable()) delivered.emplace(std::string(*pub), std::string(v.type), *seq);
      return notification_view{v, *seq, false, false};
    }
  }
};

subscriber::subscriber(zmq::context_t& ctx, subscriber_options options)
    : impl_(make_pimpl<impl>(ctx, std::move(options))) {}

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
  return notification{v->env.to_envelope(), v->sequence, v->from_snapshot, v->replayed};
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
