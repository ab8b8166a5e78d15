#include <algorithm>
#include <atomic>
#include <charconv>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <optional>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/actor.hpp>
#include <zmqkit/poll.hpp>
#include <zmqkit/pubsub/publisher.hpp>

#include "snapshot_protocol.hpp"
#include <zmqkit/internal/lru_map.hpp>

namespace zmqkit::pubsub {

namespace {

std::string random_id() {
  std::random_device rd;
  const std::uint64_t bits = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  static constexpr char hex[] = "0123456789abcdef";
  std::string id(12, '0');
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = hex[(bits >> (4 * i)) & 0xf];
  return id;
}

}  // namespace

struct publisher::impl {
  // Per type: its sequence counter and (with a snapshot endpoint) its last value,
  // in an LRU keyed by type (a state stays put until its type is forgotten).
  struct type_state {
    std::uint64_t seq = 0;
    zmq::message_t last;  // shares the sent frame's buffer (zmq_msg_copy), no byte copy
    std::optional<wall_time> expires_at;
  };

  publisher_options opts;
  std::string id;
  zmq::socket_t pub;
  char seq_text[24];
  // The two stamped headers, lent to envelopes that have none, so the common
  // case allocates no map nodes; seq_value points at zmk.seq's value.
  header_map stamp;
  std::string* seq_value;

  // Shared with the snapshot thread (under `mutex` when it runs).
  mutable std::mutex mutex;
  internal::lru_map<type_state> types;  // most recently published first, at most max_types

  std::uint64_t published = 0;  // owner thread only
  std::uint64_t subscriptions = 0;            // owner thread only
  unsigned publishes_since_read = 0;
  std::atomic<std::uint64_t> snapshots_served{0}, bad_requests{0};
  type_state* last_state = nullptr;  // the previous publish's type: usually the next one's too
  std::string last_type;

  // Snapshot thread (an actor: its loop serves `router`).
  std::string snapshot_bound;
  zmq::socket_t router;
  std::optional<actor> snapshot_server;

  // attach(): the loop and the XPUB socket's watch.
  zmqkit::loop* attached = nullptr;
  zmqkit::loop::id socket_watch = 0, kick = 0;
  std::function<void(std::size_t)> on_subscriptions;
  std::uint64_t reported = 0;  // the count on_subscriptions last saw

  impl(zmq::context_t& ctx, publisher_options o)
      : opts(std::move(o)),
        id(opts.id.empty() ? random_id() : opts.id),
        pub(ctx, zmq::socket_type::xpub),
        types(opts.max_types, std::numeric_limits<std::size_t>::max()) {
    if (id.size() > 255) throw error(errc::bad_config, "id", "publisher id longer than 255 bytes");
    if (opts.clock == nullptr) opts.clock = &zmqkit::clock::real();
    if (opts.max_types == 0) throw error(errc::bad_config, "max_types", "must be at least 1");
    if (opts.snapshot_queue <= 0) throw error(errc::bad_config, "snapshot_queue", "must be at least 1");
    stamp.emplace(header::publisher, id);
    seq_value = &stamp.emplace(header::sequence, std::string()).first->second;
    apply(pub, opts.socket);
    // A PUB socket receives only subscriptions: none longer than a topic.
    detail::limit_to_subscription_frames(pub, opts.socket.max_message_bytes);
    // Every subscribe and unsubscribe is passed up (duplicates too), so they can be counted.
    pub.set(zmq::sockopt::xpub_verbose, 1);
    pub.set(zmq::sockopt::xpub_verboser, 1);
    if (!opts.snapshot_endpoint.empty()) {
      router = zmq::socket_t(ctx, zmq::socket_type::router);
      apply(router, opts.socket);
      detail::limit_to_subscription_frames(router, opts.socket.max_message_bytes);
      // A requester that never reads holds at most snapshot_queue replies.
      router.set(zmq::sockopt::sndhwm, opts.snapshot_queue);
      router.bind(opts.snapshot_endpoint);
      snapshot_bound = router.get(zmq::sockopt::last_endpoint);
      snapshot_server.emplace(ctx, [this](loop& l, zmq::socket_t&) {
        l.add(router, [this] {
          for (int i = 0; i < 64 && answer(); ++i) {  // a batch: the loop comes back for more
          }
        });
      });
    }
  }

  // Reads the subscription messages XPUB has queued ([0x01|0x00, prefix]): they
  // would pile up unread otherwise.
  void read_subscriptions() {
    zmq::message_t m;
    while (pub.recv(m, zmq::recv_flags::dontwait)) {
      if (m.size() == 0) continue;
      const auto kind = *m.data<std::uint8_t>();
      if (kind == 1) ++subscriptions;
      else if (kind == 0 && subscriptions > 0) --subscriptions;
    }
    // publish() reads them too: the report comes from the loop, never from inside publish().
    if (attached && on_subscriptions && subscriptions != reported && !kick)
      kick = attached->after(std::chrono::nanoseconds(0), [this] {
        kick = 0;
        if (subscriptions == reported) return;
        reported = subscriptions;
        on_subscriptions(subscriptions);
      });
  }

  void detach() noexcept {
    if (!attached) return;
    attached->cancel(socket_watch);
    attached->cancel(kick);
    attached = nullptr;
    socket_watch = kick = 0;
  }

  ~impl() {
    detach();
    snapshot_server.reset();  // stops and joins the snapshot thread
  }

  // Answers one queued snapshot request. Returns: whether there was one.
  bool answer() {
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(router, std::back_inserter(request), zmq::recv_flags::dontwait)) return false;
    const auto prefixes = detail::parse_snapshot_request(request);
    if (!prefixes) {
      ++bad_requests;
      return true;
    }
    detail::sequence_table table;
    std::vector<zmq::message_t> values;
    {
      const wall_time now = opts.clock->wall_now();
      std::lock_guard lock(mutex);
      auto& seqs = table[id];
      types.for_each([&](const std::string& type, const type_state& state) {
        if (!detail::matches_any(type, *prefixes)) return;
        seqs.emplace(type, state.seq);
        // An expired value is withheld, but its sequence number still counts.
        if (state.expires_at && now >= *state.expires_at) return;
        values.emplace_back().copy(const_cast<zmq::message_t&>(state.last));
      });
      if (seqs.empty()) table.clear();
    }
    auto reply = detail::snapshot_reply_head(std::move(request[0]), table);
    for (auto& v : values) reply.push_back(std::move(v));
    // ROUTER drops a reply to a peer that is gone or full: the subscriber times out.
    zmq::send_multipart(router, reply, zmq::send_flags::dontwait);
    ++snapshots_served;
    return true;
  }
};

publisher::publisher(zmq::context_t& ctx, publisher_options options)
    : impl_(make_pimpl<impl>(ctx, std::move(options))), clock_(impl_->opts.clock) {}

std::string publisher::bind(const std::string& endpoint) {
  impl_->pub.bind(endpoint);
  return impl_->pub.get(zmq::sockopt::last_endpoint);
}

void publisher::connect(const std::string& endpoint) { impl_->pub.connect(endpoint); }

std::uint64_t publisher::publish(envelope env) {
  impl& s = *impl_;
  if (env.id.is_nil()) env.id = message_id::generate();
  if (env.timestamp == wall_time{}) env.timestamp = clock_->wall_now();
  // Lend the stamp map when env has no headers (map nodes survive a swap).
  struct lend_stamp {
    header_map* borrower = nullptr;
    header_map* owner = nullptr;
    lend_stamp() = default;
    lend_stamp(const lend_stamp&) = delete;
    lend_stamp& operator=(const lend_stamp&) = delete;
    ~lend_stamp() {
      if (borrower != nullptr) borrower->swap(*owner);
    }
  } lend;
  std::string* seq_value;
  if (env.headers.empty()) {
    env.headers.swap(s.stamp);
    lend.borrower = &env.headers;
    lend.owner = &s.stamp;
    seq_value = s.seq_value;
  } else {
    env.headers.insert_or_assign(std::string(header::publisher), s.id);
    seq_value = &env.headers.insert_or_assign(std::string(header::sequence), std::string()).first->second;
  }

  const bool caching = s.snapshot_server.has_value();
  std::unique_lock lock(s.mutex, std::defer_lock);
  if (caching) lock.lock();
  const bool repeat = s.last_state != nullptr && s.last_type == env.type;  // the most recent already
  const impl::type_state* known = repeat ? s.last_state : s.types.find(env.type);
  const std::uint64_t seq = (known == nullptr ? 0 : known->seq) + 1;
  const auto [end, ec] = std::to_chars(std::begin(s.seq_text), std::end(s.seq_text), seq);
  seq_value->assign(s.seq_text, end);
  zmq::message_t frame = encode(env);  // throws before anything is committed

  impl::type_state* state = repeat ? s.last_state : &s.types.update(env.type, 0);
  state->seq = seq;
  if (state != s.last_state) {
    s.last_state = state;
    s.last_type = env.type;
  }
  if (caching) {
    state->last.copy(frame);
    state->expires_at = env.expires_at();
    lock.unlock();
  }
  s.pub.send(zmq::buffer(env.type), zmq::send_flags::sndmore);
  s.pub.send(frame, zmq::send_flags::none);
  ++s.published;
  if (++s.publishes_since_read == 64) {  // bounded backlog of subscription messages, cheap hot path
    s.publishes_since_read = 0;
    s.read_subscriptions();
  }
  return seq;
}

bool publisher::wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) {
  impl& s = *impl_;
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    s.read_subscriptions();
    if (s.subscriptions >= n) return true;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds(0)) return false;
    zmq::pollitem_t item{s.pub.handle(), 0, ZMQ_POLLIN, 0};
    zmqkit::poll(&item, 1, std::min(left, std::chrono::milliseconds(100)));
  }
}

std::size_t publisher::subscriptions() {
  impl_->read_subscriptions();
  return impl_->subscriptions;
}

void publisher::attach(zmqkit::loop& loop, std::function<void(std::size_t)> on_subscriptions) {
  impl& s = *impl_;
  if (s.attached) throw error(errc::bad_config, "loop", "the publisher is attached to a loop already");
  s.attached = &loop;
  s.on_subscriptions = std::move(on_subscriptions);
  s.reported = s.subscriptions;
  s.socket_watch = loop.add(s.pub, [&s] { s.read_subscriptions(); });
}

void publisher::detach() noexcept { impl_->detach(); }

const std::string& publisher::id() const noexcept { return impl_->id; }
std::string publisher::snapshot_endpoint() const { return impl_->snapshot_bound; }

publisher_stats publisher::stats() const {
  return {.published = impl_->published,
          .snapshots_served = impl_->snapshots_served.load(),
          .bad_snapshot_requests = impl_->bad_requests.load(),
          .evicted_types = impl_->types.evicted()};
}

}  // namespace zmqkit::pubsub
