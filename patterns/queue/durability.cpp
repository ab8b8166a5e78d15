// The queue device with a store (device_options::store): what it writes, when
// what depends on a write may leave, and recovery at start-up. The storage
// itself is store.cpp.
#include "device_impl.hpp"

namespace zmqkit::queue {

using namespace detail;  // the device's private helpers (device_impl.hpp)

void device::impl::keep_reply(const request& r, const zmq::message_t& reply) {
  if (r.key) cache.put(*r.key, reply);
  if (!r.stored) return;
  const std::string_view bytes = view(reply);
  store->complete(r.stored, r.id ? r.id->as_bytes() : std::string_view(), r.id ? &bytes : nullptr);
}

bool device::impl::accept_stored(request& r) {
  std::vector<std::string_view> route;
  route.reserve(r.route.size());
  for (const auto& f : r.route) route.push_back(view(f));
  std::string why;
  // The client's CURVE key goes with it, to scope its id again after a restart.
  r.stored = store->put_request(route, view(r.body), client_key(r.body), why);
  if (!r.stored) {
    send_error(r.route, r.id, reply_error::overloaded, why);
    return false;
  }
  ++counters.stored;
  if (r.wants_ack) send_ack(r.route, r.id, r.priority);
  return true;
}

void device::impl::send_ack(const route_frames& route, const std::optional<message_id>& id, std::uint8_t priority) {
  envelope ack = make_envelope(std::string(stored_type), clk);
  ack.priority = priority;
  ack.correlation_id = id;
  ack.headers.emplace(header::ack, "stored");
  ++counters.acked;
  route_frames copy;  // the request keeps its route, for the reply
  for (const auto& f : route) copy.push_back(copy_of(f));
  send_durable(copy, encode(ack));
}

void device::impl::send_durable(route_frames& route, zmq::message_t&& body) {
  if (store && store->uncommitted()) {
    held_sends.emplace_back(std::move(route), std::move(body));
    return;
  }
  send_to_client(route, std::move(body));
}

void device::impl::flush_store() {
  if (!store->flush()) {
    if (const steady_time now = clk.now(); now >= next_store_log) {
      next_store_log = now + std::chrono::seconds(1);
      log(log_level::error, "store " + store->dir() + ": commit failed (" + store->failure() +
                                "); retrying each turn, new requests answered overloaded, " +
                                std::to_string(held_sends.size()) + " replies waiting");
    }
    return;
  }
  for (auto& [route, body] : std::exchange(held_sends, {})) send_to_client(route, std::move(body));
}

void device::impl::recover() {
  store->load(
      [this](detail::stored_request&& s) {
        request r;
        for (const auto& f : s.route) r.route.emplace_back(f.data(), f.size());
        r.stored = s.seq;
        r.deliveries = static_cast<int>(s.deliveries);
        std::string body = std::move(s.body);
        std::optional<envelope_view> env;
        try {
          env = decode_if_envelope(body, limits);  // it passed when stored: only lowered limits fail it
        } catch (const zmqkit::error& e) {
          throw zmqkit::error(errc::bad_config, "store",
                              "store " + opts.store + ": a stored request no longer decodes: " + e.what());
        }
        if (env) {
          r.id = env->id;
          r.key = scoped_key(env->id, s.owner);
          r.type.assign(env->type);
          r.priority = env->priority;
          r.expires = env->expires_at();
          r.wants_ack = env->header(header::ack) == "stored";
          if (s.deliveries > 0) {
            envelope marked = env->to_envelope();
            marked.headers.insert_or_assign(std::string(header::redelivered), std::to_string(s.deliveries));
            const zmq::message_t frame = encode(marked);
            body.assign(static_cast<const char*>(frame.data()), frame.size());
          }
        }
        r.bytes = body.size();
        for (const auto& f : r.route) r.bytes += f.size();
        r.body = zmq::message_t(body.data(), body.size());
        const handle h = next_handle++;
        if (r.key) active_ids.emplace(*r.key, h);
        if (r.expires) ttl_index.emplace(*r.expires, h);
        enqueue(h, requests.emplace(h, std::move(r)).first->second, false);
        ++counters.recovered;
      },
      [this](detail::stored_reply&& s) {
        if (const auto id = message_id::from_bytes(s.id))
          cache.put(scoped_key(*id, s.owner), zmq::message_t(s.reply.data(), s.reply.size()));
      });
  if (counters.recovered > 0)
    log(log_level::info, "store " + opts.store + ": " + std::to_string(counters.recovered) +
                             " requests queued again, " + std::to_string(cache.size()) + " replies cached");
}

}  // namespace zmqkit::queue
