// The queue device's stats: the snapshot (counters and gauges), the admin
// endpoint that sends it, and its msgpack encoding.
#include "device_impl.hpp"

namespace zmqkit::queue {

using namespace detail;  // the device's private helpers (device_impl.hpp)

device_stats device::impl::snapshot() const {
  device_stats s = counters;
  s.pending = pending.size();
  for (std::uint8_t p = 0; p < 10; ++p) s.pending_by_priority[p] = pending.size(p);
  s.pending_by_type = pending.size_by_type(opts.stats_top_types);
  s.in_flight = requests.size() - pending.size();
  s.workers_ready = workers.ready_count();
  s.workers_busy = workers.busy_count();
  s.worker_capacity = workers.slot_count();
  s.reply_cache_size = cache.size();
  for (auto [watch, out] : {std::pair{&frontend_refusals, &s.frontend_curve_refused},
                            std::pair{&backend_refusals, &s.backend_curve_refused}}) {
    if (!watch->monitor) continue;
    const auto c = watch->monitor->stats();
    *out = {{"unknown_key", c.refused_unknown_key},
            {"plaintext", c.refused_plaintext},
            {"bad_handshake", c.refused_bad_handshake}};
  }
  s.reply_cache_bytes = cache.bytes();
  s.pending_bytes = pending_bytes;
  if (store) {
    s.has_store = true;
    const auto& c = store->counters();
    s.store_syncs = c.syncs;
    s.store_sync_us = c.sync_us;
    s.store_last_sync_us = c.last_sync_us;
    s.store_errors = c.errors;
    s.store_bytes = store->bytes();
  }
  return s;
}

void device::impl::report_refusals(steady_time now) {
  for (auto [watch, side] : {std::pair{&frontend_refusals, "frontend"}, std::pair{&backend_refusals, "backend"}}) {
    if (!watch->monitor || now < watch->next_log) continue;
    const auto c = watch->monitor->stats();
    const std::uint64_t total = c.refused_unknown_key + c.refused_plaintext + c.refused_bad_handshake;
    if (total == watch->logged) continue;
    const auto last = watch->monitor->last_failure();
    log(log_level::warn, std::string(side) + ": " + std::to_string(total - watch->logged) +
                             " CURVE handshake(s) refused (so far unknown_key=" +
                             std::to_string(c.refused_unknown_key) + " plaintext=" +
                             std::to_string(c.refused_plaintext) + " bad_handshake=" +
                             std::to_string(c.refused_bad_handshake) + ")" +
                             (last ? "; last: " + last->reason + " from " + last->peer + " (" + last->detail + ")"
                                   : ""));
    watch->logged = total;
    watch->next_log = now + std::chrono::seconds(10);
  }
}

void device::impl::on_admin() {
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

std::string encode_stats(const device_stats& s) {
  // The fields are packed first and the map header written last, so that adding a
  // field can never leave the header's count out of step with the entries.
  msgpack::sbuffer fields;
  msgpack::packer<msgpack::sbuffer> pk(fields);
  std::uint32_t entries = 0;
  auto key = [&](std::string_view name) {
    ++entries;
    pk.pack(name);
  };
  auto counter_map = [&](std::string_view name, const auto& m) {
    key(name);
    pk.pack_map(static_cast<std::uint32_t>(m.size()));
    for (const auto& [k, v] : m) {
      pk.pack(k);
      pk.pack(static_cast<std::uint64_t>(v));
    }
  };
  auto num = [&](std::string_view name, std::uint64_t v) {
    key(name);
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
  num("delivery_timeouts", s.delivery_timeouts);
  num("workers_returned", s.workers_returned);
  counter_map("rejected", s.rejected);
  counter_map("dropped", s.dropped);
  num("pending", s.pending);
  std::map<std::string, std::size_t> by_priority;
  for (std::size_t p = 0; p < s.pending_by_priority.size(); ++p)
    by_priority[std::to_string(p)] = s.pending_by_priority[p];
  counter_map("pending_by_priority", by_priority);
  counter_map("pending_by_type", s.pending_by_type);
  num("in_flight", s.in_flight);
  num("workers_ready", s.workers_ready);
  num("workers_busy", s.workers_busy);
  num("worker_capacity", s.worker_capacity);
  num("reply_cache_size", s.reply_cache_size);
  counter_map("frontend_curve_refused", s.frontend_curve_refused);
  counter_map("backend_curve_refused", s.backend_curve_refused);
  num("reply_cache_bytes", s.reply_cache_bytes);
  num("pending_bytes", s.pending_bytes);
  num("stored", s.stored);
  num("acked", s.acked);
  num("recovered", s.recovered);
  num("store_syncs", s.store_syncs);
  num("store_sync_us", s.store_sync_us);
  num("store_errors", s.store_errors);
  num("store_bytes", s.store_bytes);
  num("store_last_sync_us", s.store_last_sync_us);
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer>(out).pack_map(entries);
  out.write(fields.data(), fields.size());
  return std::string(out.data(), out.size());
}

}  // namespace zmqkit::queue
