#include <algorithm>
#include <zmqkit/pipeline/ventilator.hpp>

#include "detail.hpp"
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/internal/loop_attachment.hpp>

namespace zmqkit::pipeline {

namespace {

struct worker_state {
  std::string identity;
  std::int64_t credit = 0;
  bool blocked = false;  // its queue was full this round (send HWM): retry after the next poll
};

struct retained_task {
  std::uint8_t priority;
  int attempts;
  bool queued;           // waiting here for credit: not lost, so not resent
  zmq::message_t frame;  // shares the encoded buffer with the frame sent (refcounted)
};

struct queued_task {
  zmq::message_t frame;
  bool retained = false;  // at-least-once: batch and task find its retained_task
  message_id batch{};
  message_id task{};
};

struct batch_state {
  std::vector<message_id> ids;
  internal::keyed_map<message_id, retained_task> tasks;  // at-least-once only; keyed: acks name ids from the network
  batch_outcome outcome = batch_outcome::open;
  std::vector<message_id> missing;  // the sink's last list
  steady_time deadline{};           // for a verdict (batch_deadline after submit)
  bool ended() const noexcept {
    return outcome == batch_outcome::complete || outcome == batch_outcome::abandoned ||
           outcome == batch_outcome::expired;
  }
};

}  // namespace

struct ventilator::impl {
  ventilator_options opts;
  zmq::socket_t socket;
  detail::priority_queue<queued_task> queue;
  std::vector<worker_state> workers;
  std::vector<std::string> sinks;
  std::map<message_id, batch_state> batches;  // ids are time-ordered: begin() is the oldest
  std::optional<steady_time> next_expiry;      // earliest deadline of an open batch
  ventilator_stats counters;
  std::vector<message_id> just_ended;  // batches that ended this step, for on_batch_end
  internal::loop_attachment driven;    // after the socket: its watch goes first

  impl(zmq::context_t& ctx, const std::string& endpoint, ventilator_options o)
      : opts(std::move(o)), socket(ctx, zmq::socket_type::router) {
    if (!opts.clock) opts.clock = &clock::real();  // null: the real clock, as everywhere
    apply(socket, opts.socket);
    socket.set(zmq::sockopt::router_mandatory, true);  // a vanished worker fails the send: we requeue
    socket.bind(endpoint);
  }

  void enqueue(std::uint8_t priority, queued_task task, bool resend) {
    if (resend)
      queue.push_front(priority, std::move(task));
    else
      queue.push_back(priority, std::move(task));
  }

  void sent_retained(const queued_task& task) {
    const auto b = batches.find(task.batch);
    if (b == batches.end()) return;
    const auto t = b->second.tasks.find(task.task);
    if (t != b->second.tasks.end()) t->second.queued = false;
  }

  worker_state* pick_worker() {
    worker_state* best = nullptr;
    for (auto& w : workers)
      if (w.credit > 0 && !w.blocked && (!best || w.credit > best->credit)) best = &w;
    return best;
  }

  void remove_worker(const std::string& identity) {
    const auto it = std::find_if(workers.begin(), workers.end(),
                                 [&](const worker_state& w) { return w.identity == identity; });
    if (it == workers.end()) return;
    workers.erase(it);
    ++counters.workers_lost;
  }

  void dispatch() {
    while (!queue.empty()) {
      worker_state* w = pick_worker();
      if (!w) return;
      queued_task& task = queue.front();
      bool sent = false;
      try {
        sent = socket.send(zmq::buffer(w->identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait)
                   .has_value();
        if (sent) sent = socket.send(task.frame, zmq::send_flags::dontwait).has_value();
        if (!sent) {
          w->blocked = true;  // its queue is full (HWM below its credit): keep the credit
          ++counters.hwm_blocked;
        }
      } catch (const zmq::error_t& e) {
        if (e.num() != EHOSTUNREACH) throw;
        remove_worker(std::string(w->identity));
      }
      if (!sent) continue;
      if (task.retained) sent_retained(task);
      queue.pop();
      --w->credit;
      ++counters.dispatched;
    }
  }

  // The id list goes in parts, so that a large batch stays under the frame size limit.
  void announce(const message_id& id, const batch_state& b, const std::string& sink) {
    constexpr std::size_t ids_per_message = 16384;  // ~300 KB
    const std::string id_text = id.to_string();
    const std::string size_text = std::to_string(b.ids.size());
    std::size_t first = 0;
    do {
      const std::size_t n = std::min(ids_per_message, b.ids.size() - first);
      envelope env = make_envelope(std::string(type::batch_begin), *opts.clock);
      env.headers.emplace(header::batch, id_text);
      env.headers.emplace(header::batch_size, size_text);
      env.body = detail::pack_ids(std::span(b.ids).subspan(first, n));
      if (!detail::send_control(socket, env, &sink)) return;  // the sink asks again when it needs it
      first += n;
    } while (first < b.ids.size());
  }

  void forget_oldest_batches() {
    while (batches.size() > opts.max_batches) batches.erase(batches.begin());
  }

  std::size_t resend(const message_id& batch, std::span<const message_id> ids) {
    if (opts.delivery != delivery::at_least_once) {
      counters.missing_ignored += ids.size();
      return 0;
    }
    const auto it = batches.find(batch);
    if (it == batches.end() || it->second.ended()) {
      counters.missing_ignored += ids.size();
      return 0;
    }
    std::size_t queued = 0;
    for (const auto& id : ids) {
      const auto t = it->second.tasks.find(id);
      if (t != it->second.tasks.end() && t->second.queued) continue;  // still waiting for credit
      if (t == it->second.tasks.end() || t->second.attempts >= opts.max_attempts) {
        ++counters.missing_ignored;
        continue;
      }
      ++t->second.attempts;
      t->second.queued = true;
      queued_task copy{.frame = {}, .retained = true, .batch = batch, .task = id};
      copy.frame.copy(t->second.frame);
      enqueue(t->second.priority, std::move(copy), true);
      ++counters.resent;
      ++queued;
    }
    return queued;
  }

  void handle(const std::string& identity, const zmq::message_t& frame) {
    const std::optional<envelope_view> decoded = try_decode_view(frame, opts.limits);
    if (!decoded) {
      ++counters.bad_frames;
      return;
    }
    const envelope_view& env = *decoded;
    if (env.type == type::credit) {
      const auto grant = detail::parse_count(env.header(header::credit));
      const auto reset = detail::parse_count(env.header(header::credit_reset));
      if (!grant && !reset) {
        ++counters.bad_frames;
        return;
      }
      auto it = std::find_if(workers.begin(), workers.end(),
                             [&](const worker_state& w) { return w.identity == identity; });
      if (it == workers.end()) {
        workers.push_back({identity, 0});
        it = workers.end() - 1;
      }
      it->credit = std::min(opts.max_credit, reset ? *reset : it->credit + *grant);
    } else if (env.type == type::bye) {
      remove_worker(identity);
    } else if (env.type == type::sink_hello) {
      if (std::find(sinks.begin(), sinks.end(), identity) == sinks.end()) sinks.push_back(identity);
      for (const auto& [id, b] : batches)
        if (!b.ended()) announce(id, b, identity);
    } else if (env.type == type::batch_query || env.type == type::batch_missing ||
               env.type == type::batch_done || env.type == type::batch_abandoned) {
      const auto batch_text = env.header(header::batch);
      const auto batch = batch_text ? message_id::parse(*batch_text) : std::nullopt;
      if (!batch) {
        ++counters.bad_frames;
        return;
      }
      const auto it = batches.find(*batch);
      if (env.type == type::batch_query) {
        if (it != batches.end()) announce(it->first, it->second, identity);
      } else if (env.type == type::batch_done) {
        if (it != batches.end() && it->second.outcome != batch_outcome::complete) {
          it->second.outcome = batch_outcome::complete;  // also after abandoned: the stragglers came
          it->second.missing.clear();
          it->second.tasks.clear();  // nothing left to resend
          ++counters.batches_complete;
          just_ended.push_back(*batch);
        }
      } else {
        const auto ids = detail::unpack_ids(env.body, opts.max_pending);
        if (!ids) {
          ++counters.bad_frames;
          return;
        }
        if (env.type == type::batch_abandoned) {
          if (it != batches.end() && !it->second.ended()) {
            it->second.outcome = batch_outcome::abandoned;
            it->second.missing = std::move(*ids);
            it->second.tasks.clear();  // the sink no longer waits for them
            ++counters.batches_abandoned;
            just_ended.push_back(*batch);
          }
          return;
        }
        ++counters.missing_reports;
        if (it != batches.end() && !it->second.ended()) {
          it->second.outcome = batch_outcome::missing;
          it->second.missing = *ids;
        }
        resend(*batch, *ids);
      }
    } else {
      ++counters.bad_frames;
    }
  }

  void receive_all() {
    // Bounded, so a flood of control frames cannot starve dispatching.
    for (int i = 0; i < 10'000; ++i) {
      zmq::message_t identity;
      if (!socket.recv(identity, zmq::recv_flags::dontwait)) return;
      zmq::message_t body;
      bool have_body = identity.more() && socket.recv(body, zmq::recv_flags::dontwait);
      bool extra = false;
      while (body.more()) {  // drain a message with too many frames
        extra = true;
        if (!socket.recv(body, zmq::recv_flags::dontwait)) break;
      }
      if (!have_body || extra) {
        ++counters.bad_frames;
        continue;
      }
      handle(identity.to_string(), body);
    }
  }

  // Batches with no verdict by their deadline end as expired.
  void expire_batches() {
    if (!next_expiry) return;
    const steady_time now = opts.clock->now();
    if (now < *next_expiry) return;
    next_expiry.reset();
    for (auto& [id, b] : batches) {
      if (b.ended()) continue;
      if (b.deadline > now) {
        if (!next_expiry || b.deadline < *next_expiry) next_expiry = b.deadline;
        continue;
      }
      b.outcome = batch_outcome::expired;
      b.tasks.clear();
      ++counters.batches_expired;
      just_ended.push_back(id);
    }
  }

  // After anything happened: expire, dispatch, tell on_batch_end, set the timer.
  // Returns: whether a worker's full queue held tasks back (retry soon: it frees
  // up without telling us).
  bool step() {
    expire_batches();
    dispatch();
    bool blocked = false;
    for (auto& w : workers) blocked = std::exchange(w.blocked, false) || blocked;
    blocked = blocked && !queue.empty();
    std::optional<steady_time> next = next_expiry;
    if (blocked) next = std::min(next.value_or(steady_time::max()), opts.clock->now() + std::chrono::milliseconds(1));
    driven.set_timer(next, *opts.clock, [this] { step(); });
    report_ended();
    return blocked;
  }

  void report_ended() {
    if (just_ended.empty()) return;
    std::vector<message_id> ended = std::exchange(just_ended, {});
    if (!opts.on_batch_end) return;
    for (const auto& id : ended)
      if (auto s = status_of(id)) opts.on_batch_end(*s);
  }

  std::optional<batch_status> status_of(const message_id& batch) const {
    const auto it = batches.find(batch);
    if (it == batches.end()) return std::nullopt;
    return batch_status{.batch = batch,
                        .outcome = it->second.outcome,
                        .tasks = it->second.ids.size(),
                        .missing = it->second.missing};
  }

  void watch() {
    driven.watch(socket, [this] {
      receive_all();
      step();
    });
  }

  void attach(zmqkit::loop& l) {
    driven.attach(l, "ventilator");
    watch();
    step();
  }

  // After submit(): dispatch at once when a loop drives us; poll() does it otherwise.
  void submitted() {
    if (driven.on_callers_loop()) step();
  }

  void poll(std::chrono::milliseconds timeout) {
    if (driven.attach_own(*opts.clock, "ventilator")) watch();
    // A worker blocked by the HWM frees up without telling us: look again soon, in real time.
    if (step()) timeout = std::min(timeout, std::chrono::milliseconds(1));
    driven.loop().run_once(timeout);
  }
};

ventilator::ventilator(zmq::context_t& ctx, const std::string& endpoint, ventilator_options opts)
    : impl_(make_pimpl<impl>(ctx, endpoint, std::move(opts))) {}

std::string ventilator::endpoint() const { return impl_->socket.get(zmq::sockopt::last_endpoint); }

bool ventilator::submit(const envelope& task) {
  if (impl_->queue.size() >= impl_->opts.max_pending) {
    ++impl_->counters.refused;
    return false;
  }
  impl_->enqueue(task.priority, queued_task{.frame = encode(task)}, false);
  ++impl_->counters.submitted;
  impl_->submitted();
  return true;
}

std::optional<message_id> ventilator::submit_batch(std::vector<envelope> tasks) {
  auto& d = *impl_;
  if (d.queue.size() + tasks.size() > d.opts.max_pending) {
    d.counters.refused += tasks.size();
    return std::nullopt;
  }
  const message_id id = message_id::generate();
  const std::string id_text = id.to_string();
  const std::string size_text = std::to_string(tasks.size());
  batch_state b;
  b.ids.reserve(tasks.size());
  std::vector<zmq::message_t> frames;
  frames.reserve(tasks.size());
  // Stamped at encode time (same bytes as inserting them): no map nodes per task.
  const header_ref stamp[] = {{header::batch, id_text}, {header::batch_size, size_text}};
  for (const auto& t : tasks) {  // encode everything first: a bad envelope throws before anything is queued
    frames.push_back(encode(t, stamp));
    b.ids.push_back(t.id);
  }
  const bool retain = d.opts.delivery == delivery::at_least_once;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    queued_task queued{.frame = std::move(frames[i]), .retained = retain, .batch = id, .task = tasks[i].id};
    if (retain) {
      zmq::message_t copy;
      copy.copy(queued.frame);
      b.tasks.emplace(tasks[i].id, retained_task{tasks[i].priority, 1, true, std::move(copy)});
    }
    d.enqueue(tasks[i].priority, std::move(queued), false);
  }
  d.counters.submitted += tasks.size();
  for (const auto& sink : d.sinks) d.announce(id, b, sink);
  if (d.opts.batch_deadline.count() > 0) {
    b.deadline = d.opts.clock->now() + d.opts.batch_deadline;
    if (!d.next_expiry || b.deadline < *d.next_expiry) d.next_expiry = b.deadline;
  }
  d.batches.emplace(id, std::move(b));
  d.forget_oldest_batches();
  d.submitted();
  return id;
}

void ventilator::poll(std::chrono::milliseconds timeout) { impl_->poll(timeout); }

bool ventilator::flush(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    impl_->dispatch();
    if (impl_->queue.empty()) return true;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds(0)) return false;
    impl_->poll(left);
  }
}

std::size_t ventilator::resend(const message_id& batch, std::span<const message_id> ids) {
  return impl_->resend(batch, ids);
}

bool ventilator::batch_done(const message_id& batch) const {
  const auto it = impl_->batches.find(batch);
  return it != impl_->batches.end() && it->second.ended();
}

std::optional<batch_status> ventilator::status(const message_id& batch) const { return impl_->status_of(batch); }
void ventilator::attach(zmqkit::loop& loop) { impl_->attach(loop); }

std::size_t ventilator::pending() const noexcept { return impl_->queue.size(); }
std::size_t ventilator::workers() const noexcept { return impl_->workers.size(); }
std::int64_t ventilator::credit() const noexcept {
  std::int64_t total = 0;
  for (const auto& w : impl_->workers) total += w.credit;
  return total;
}
const ventilator_stats& ventilator::stats() const noexcept { return impl_->counters; }

}  // namespace zmqkit::pipeline
