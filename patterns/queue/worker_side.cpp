// The queue device, the backend: workers announcing themselves (READY, parsed
// by the one worker_protocol codec), heartbeats, replies matched to what a
// worker holds, and workers that die, go silent or come back.
#include <malloc.h>

#include "device_impl.hpp"

namespace zmqkit::queue {

using namespace detail;  // the device's private helpers (device_impl.hpp)

void device::impl::drop_worker(detail::worker& w, bool may_return) {
  remove_worker(w, may_return);
  place_taken_back();
}

void device::impl::remove_worker(detail::worker& w, bool may_return) {
  const detail::held_list held = std::move(w.holding);
  w.holding.clear();
  if (may_return && !held.empty()) remember_evicted(w, held);
  workers.remove(w);
  // Newest first, each to the head of its priority: they keep their delivery order.
  const auto items = held.items();
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
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

void device::impl::remember_evicted(const detail::worker& w, const detail::held_list& held) {
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

void device::impl::forget_evicted(std::string_view identity) {
  const auto it = evicted.find(identity);
  if (it == evicted.end()) return;
  evicted_bytes -= it->second.bytes;
  evicted.erase(it);  // its entry in evicted_order is skipped when it comes up
}

void device::impl::expire_oldest_evicted() {
  const auto [at, identity] = std::move(evicted_order.front());
  evicted_order.pop_front();
  if (const auto it = evicted.find(identity); it != evicted.end() && it->second.evicted_at == at)
    forget_evicted(identity);
}

detail::worker* device::impl::revive(std::string_view identity) {
  const auto it = evicted.find(identity);
  if (it == evicted.end()) return nullptr;
  evicted_worker e = std::move(it->second);
  forget_evicted(identity);
  detail::worker& w = workers.add(std::string(identity), std::move(e.prefixes), e.capacity, clk.now());
  for (const auto& held : e.held.items()) workers.use(w, held);
  ++counters.workers_returned;
  log(log_level::info, "worker evicted for silence replied: registered again, capacity " +
                           std::to_string(w.capacity));
  return &w;
}

void device::impl::on_backend() {
  if (frames.size() < 2) return drop("backend-frames", "1 frame");
  const std::string_view identity = view(frames[0]);  // a view: a reply needs no copy of it
  detail::worker* w = workers.find(identity);
  const char control = (frames.size() == 2 || frames.size() == 3) ? wp::control_of(view(frames[1])) : 0;
  if (control) {
    if (control == wp::ready) return on_ready(identity, w);
    if (frames.size() != 2) return drop("backend-frames", "control frame with extra frames");
    if (!w) {
      if (control == wp::disconnect) forget_evicted(identity);
      return drop("unknown-worker", control == wp::heartbeat ? "heartbeat" : "disconnect");
    }
    w->last_seen = clk.now();
    if (control == wp::disconnect) {
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
  if (const auto it = requests.find(h); it != requests.end())
    answer(it, frames.back());
  else
    drop("late-reply", "its request was already answered (expired, or another worker's reply won)");
  worker_ready(*w);
}

std::optional<std::size_t> device::impl::match_reply(const detail::worker& w) {
  // The body itself is the worker's business (the client decodes it): only its
  // correlation_id is read here.
  if (const std::optional<message_id> correlation_id = correlation_id_of(view(frames.back()))) {
    for (std::size_t i = 0; i < w.holding.size(); ++i)
      if (w.holding[i].id == correlation_id) return i;
    return std::nullopt;
  }
  if (w.capacity == 1) return w.holding.empty() ? std::nullopt : std::optional<std::size_t>(0);
  const route_fingerprint echoed{std::span(frames).subspan(1, frames.size() - 3)};
  for (std::size_t i = 0; i < w.holding.size(); ++i)
    if (w.holding[i].route == echoed) return i;
  return std::nullopt;
}

void device::impl::on_ready(std::string_view identity, detail::worker* w) {
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
    w = &workers.add(std::string(identity), std::move(announced.prefixes), announced.capacity, clk.now());
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

void device::impl::refuse_ready(const char* reason, const std::string& why) {
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

void device::impl::give_back_memory(steady_time now) {
  if (trim_at && now >= *trim_at) {
    ::malloc_trim(0);
    trim_at.reset();
  }
  if (workers.size() * 2 < workers_peak) {
    trim_at = now + std::chrono::seconds(1);
    workers_peak = workers.size();
  }
}

void device::impl::heartbeat(steady_time now) {
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

}  // namespace zmqkit::queue
