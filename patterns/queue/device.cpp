// The queue device: construction, the loop that drives it (its own for run(),
// or a caller's after attach()), the one timer, receiving, and draining at stop().
// The rest of its work is in the files device_impl.hpp lists.
#include <unistd.h>

#include "device_access.hpp"
#include "device_impl.hpp"

namespace zmqkit::queue {

using namespace detail;  // the device's private helpers (device_impl.hpp)

device::impl::impl(zmq::context_t& ctx, device_options o)
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

void device::impl::log(log_level level, const std::string& text) const {
  if (opts.log) opts.log(level, text);
}

void device::impl::drop(const char* reason, const std::string& detail) {
  ++counters.dropped[reason];
  log(log_level::debug, std::string("dropped (") + reason + ")" + (detail.empty() ? "" : ": " + detail));
}

void device::impl::on_timers() {
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

void device::impl::sweep(steady_time now) {
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

void device::impl::begin_drain() {
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

std::optional<bool> device::impl::receive_bounded(zmq::socket_t& s) {
  // Each part is received straight into its place in `frames` (no move, no
  // rebuild per part); past max_frames() into one scratch message, freed each time.
  if (!s.recv(frames.next(), zmq::recv_flags::dontwait)) {
    frames.drop_last();
    return std::nullopt;
  }
  bool more = frames.back().more();
  if (!more) return true;
  zmq::message_t scratch;
  bool fits = true;
  while (more) {
    zmq::message_t* part = &scratch;
    if (fits && frames.size() < max_frames()) {
      part = &frames.next();
    } else {
      fits = false;
      scratch.rebuild();
    }
    (void)s.recv(*part, zmq::recv_flags::none);  // a message's parts arrive together
    more = part->more();
  }
  if (!fits) frames.clear();
  return fits;
}

void device::impl::watch() {
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

void device::impl::attach(zmqkit::loop& l) {
  driven.attach(l, "queue device");
  watch();
}

void device::impl::run() {
  {
    std::lock_guard lock(mu);
    if (finished) return;
  }
  if (driven.attach_own(clk, "queue device")) watch();
  zmqkit::loop& l = driven.loop();
  l.run();
  l.restart();
}

void device::impl::serve(zmq::socket_t& s, void (impl::*handler)()) {
  std::lock_guard lock(mu);
  drain_socket(s, [this, handler] { (this->*handler)(); });
  // One store commit per loop round, as with the poll loop before: the loop
  // calls the frontend's handler right after the backend's in the same round
  // when it is readable, so the backend's writes wait for that commit.
  const bool frontend_next = store && &s == &backend && (frontend.get(zmq::sockopt::events) & ZMQ_POLLIN);
  end_batch(!frontend_next);
}

void device::impl::end_batch(bool commit) {
  if (stop_requested.load(std::memory_order_relaxed) && !draining) begin_drain();
  if (store && commit) flush_store();
  if (draining) finish_if_drained();
}

void device::impl::arm_timer() {
  if (finished) return;
  steady_time at = std::min(next_sweep, next_heartbeat);
  if (!delivery_deadlines.empty()) at = std::min(at, delivery_deadlines.front().deadline);
  if (draining) at = std::min(at, drain_deadline);
  driven.set_timer(at, clk, [this] { on_timer(); });
}

void device::impl::on_timer() {
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

void device::impl::finish_if_drained() {
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

// --- device -------------------------------------------------------------------

void device_access::feed(device& d, side s, std::vector<zmq::message_t> frames) {
  device::impl& m = *d.impl_;
  std::lock_guard lock(m.mu);
  m.frames.assign(std::move(frames));
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
    : impl_(make_pimpl<impl>(ctx, std::move(options))) {}

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

}  // namespace zmqkit::queue
