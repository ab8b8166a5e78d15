// The queue device, requests in: a client's request taken in (dedup, cache,
// bounds), placed on the LRU worker serving its type or queued, handed over,
// answered or failed, and forgotten.
#include "device_impl.hpp"

namespace zmqkit::queue {

using namespace detail;  // the device's private helpers (device_impl.hpp)

bool device::impl::send_to_client(route_frames& route, zmq::message_t body) {
  try {
    for (auto& r : route)
      if (!frontend.send(std::move(r), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        drop("client-not-reading");
        return false;
      }
    frontend.send(zmq::message_t{}, zmq::send_flags::sndmore);
    frontend.send(std::move(body), zmq::send_flags::none);
    return true;
  } catch (const zmq::error_t& e) {
    drop("client-unreachable", e.what());
    return false;
  }
}

void device::impl::send_error(route_frames& route, std::optional<message_id> id, reply_error code,
                std::string_view reason) {
  ++counters.rejected[std::string(to_string(code))];
  send_to_client(route, encode(make_error_reply(id, code, reason, clk)));
}

bool device::impl::send_to_worker(const detail::worker& w, const request& r) {
  try {
    zmq::message_t to(w.identity.data(), w.identity.size());
    if (!backend.send(std::move(to), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
    for (const auto& f : r.route) backend.send(copy_of(f), zmq::send_flags::sndmore);
    backend.send(zmq::message_t{}, zmq::send_flags::sndmore);
    backend.send(copy_of(r.body), zmq::send_flags::none);
    return true;
  } catch (const zmq::error_t&) {
    return false;
  }
}

void device::impl::forget(handle h) {
  if (const auto it = requests.find(h); it != requests.end()) forget(it);
}

void device::impl::forget(request_table::iterator it) {
  const handle h = it->first;
  request& r = it->second;
  if (r.pending) unqueue(r);
  if (r.delivery) withdraw(r);
  if (r.expires) ttl_index.erase({*r.expires, h});
  if (r.key) active_ids.erase(*r.key);
  requests.erase(it);
}

void device::impl::unqueue(request& r) {
  pending.erase(r.priority, r.type, r.order);
  left_queue(r);
}

void device::impl::left_queue(request& r) {
  pending_bytes -= r.bytes;
  r.pending = false;
}

void device::impl::withdraw(request& r) {
  r.delivery = 0;
  --at_workers;
}

bool device::impl::live(const delivery_deadline_entry& e) const {
  const auto it = requests.find(e.request);
  return it != requests.end() && it->second.delivery == e.delivery;
}

void device::impl::fail(handle h, reply_error code, std::string_view reason) {
  request& r = requests.at(h);
  if (code == reply_error::expired) ++counters.expired;
  if (code == reply_error::dead_letter) {
    ++counters.dead_lettered;
    log(log_level::warn, "dead-letter: request " + (r.id ? r.id->to_string() : std::string("(plain)")) +
                             " of type '" + r.type + "' lost " + std::to_string(r.deliveries) + " workers");
    zmq::message_t reply = encode(make_error_reply(r.id, code, reason, clk));
    keep_reply(r, reply);
    ++counters.rejected[std::string(to_string(code))];
    send_durable(r.route, std::move(reply));
  } else {
    // Unavailable (the device stopping) is no completion: a stored request stays stored.
    if (r.stored && code != reply_error::unavailable) store->complete(r.stored, {}, nullptr);
    send_error(r.route, r.id, code, reason);
  }
  forget(h);
}

void device::impl::enqueue(handle h, request& r, bool at_head) {
  r.order = at_head ? pending.next_front_key() : pending.next_back_key();
  r.pending = true;
  pending_bytes += r.bytes;
  pending.insert(h, r.priority, r.type, r.order);
  // A stored-acknowledged request is the device's to keep: its producer has moved
  // on, so it waits for a worker (bounded by its TTL and the store), never no-service.
  if (r.wants_ack) return;
  if (no_service_deadlines.size() > 2 * pending.size() + 64)
    std::erase_if(no_service_deadlines, [this](const no_service_entry& e) { return !still_pending(e); });
  no_service_deadlines.push_back({clk.now() + opts.no_service, h, r.order});
}

bool device::impl::still_pending(const no_service_entry& e) const {
  const auto it = requests.find(e.request);
  return it != requests.end() && it->second.pending && it->second.order == e.order;
}

bool device::impl::hand_over(detail::worker& w, handle h, request& r) {
  const steady_time sent_at = clk.now();  // before the worker can see it
  if (!send_to_worker(w, r)) {
    log(log_level::info, "worker " + printable_identity(w.identity) + " unreachable, removed");
    remove_worker(w);
    return false;
  }
  ++r.deliveries;
  ++counters.routed;
  if (r.stored) store->delivered(r.stored, static_cast<std::uint32_t>(r.deliveries));
  r.delivery = next_delivery++;
  ++at_workers;
  if (opts.delivery_timeout.count() > 0) {
    // Ended deliveries left behind are dropped once they outnumber the live ones.
    if (delivery_deadlines.size() > 2 * at_workers + 64)
      std::erase_if(delivery_deadlines, [this](const delivery_deadline_entry& e) { return !live(e); });
    delivery_deadlines.push_back({sent_at + opts.delivery_timeout, h, r.delivery});
  }
  // The route is only needed to match replies when a worker holds several.
  workers.use(w, {h, r.id, w.capacity > 1 ? route_fingerprint(r.route) : route_fingerprint(), r.delivery});
  return true;
}

bool device::impl::deliver(detail::worker& w, handle h, request& r) {
  if (expired_now(r)) {
    fail(h, reply_error::expired, "ttl passed before a worker took it");
    return true;
  }
  return hand_over(w, h, r);
}

std::string device::impl::queue_full_for(const request& r) const {
  if (pending.size() >= opts.max_pending)
    return "more than " + std::to_string(opts.max_pending) + " requests waiting";
  // A type cannot have more waiting than all types together: most requests skip the lookup.
  if (pending.size() >= opts.max_pending_per_type && pending.count(r.type) >= opts.max_pending_per_type)
    return "more than " + std::to_string(opts.max_pending_per_type) + " requests of this type waiting";
  if (pending_bytes + r.bytes > opts.max_pending_bytes)
    return "more than " + std::to_string(opts.max_pending_bytes) + " bytes of requests waiting";
  return {};
}

void device::impl::place(handle h, bool at_head, bool arriving) {
  place_one(h, at_head, arriving);
  place_taken_back();
}

void device::impl::place_taken_back() {
  if (placing_taken_back) return;  // an outer call is working through the list
  placing_taken_back = true;
  std::size_t done = 0;
  struct reset {  // even if placing one throws: the rest stay listed
    impl& self;
    std::size_t& done;
    ~reset() {
      self.taken_back.erase(self.taken_back.begin(),
                            self.taken_back.begin() + static_cast<std::ptrdiff_t>(done));
      self.placing_taken_back = false;
    }
  } guard{*this, done};
  while (done < taken_back.size()) {  // the list grows while it is worked through
    const handle h = taken_back[done++];
    const auto it = requests.find(h);
    if (it == requests.end() || it->second.pending || it->second.delivery) continue;  // answered meanwhile
    place_one(h, true);
  }
}

void device::impl::place_one(handle h, bool at_head, bool arriving) {
  for (;;) {
    request& r = requests.at(h);
    if (draining) return fail(h, reply_error::unavailable, "shutting down");
    detail::worker* w = workers.lru_serving(r.type);
    if (!w) {
      if (arriving)
        if (const std::string full = queue_full_for(r); !full.empty())
          return fail(h, reply_error::overloaded, full);
      return enqueue(h, r, at_head);
    }
    if (deliver(*w, h, r)) return;
  }
}

void device::impl::worker_ready(detail::worker& w) {
  while (!draining && !w.full()) {
    const auto h = pending.pop_best(w.prefixes);
    if (!h) return;
    request& r = requests.at(*h);
    left_queue(r);
    if (expired_now(r)) {
      fail(*h, reply_error::expired, "ttl passed before a worker took it");
      continue;
    }
    if (!hand_over(w, *h, r)) {  // w is gone
      place(*h, true);
      return;
    }
  }
}

std::string_view device::impl::client_key(const zmq::message_t& frame) {
  const char* user_id = zmq_msg_gets(frame.handle(), "User-Id");
  return user_id ? std::string_view(user_id) : std::string_view();
}

message_id device::impl::scoped_key(const message_id& id, std::string_view owner) {
  if (owner.empty()) return id;
  std::string input(id.as_bytes());
  input += owner;
  const std::uint64_t high = internal::keyed_hash_bytes(input);
  input += '\x01';
  const std::uint64_t low = internal::keyed_hash_bytes(input);
  message_id key;
  std::memcpy(key.bytes.data(), &high, 8);
  std::memcpy(key.bytes.data() + 8, &low, 8);
  return key;
}

void device::impl::on_frontend() {
  const std::optional<std::size_t> stack = internal::route_length(frames);  // route empty body
  if (!stack) return drop("frontend-frames", std::to_string(frames.size()) + " frames");
  const std::size_t delimiter = *stack;
  ++counters.received;
  std::size_t route_bytes = 0;
  for (std::size_t i = 0; i < delimiter; ++i) route_bytes += frames[i].size();
  // The route is kept with the request and copied to the worker: bounded.
  if (delimiter > opts.max_route_frames || route_bytes > opts.max_route_bytes)
    return drop("address-stack", std::to_string(delimiter) + " frames, " + std::to_string(route_bytes) + " bytes");
  // Moves the route out of `frames`, for an answer or for the request.
  auto take_route = [&](route_frames& into) {
    for (std::size_t i = 0; i < delimiter; ++i) into.push_back(std::move(frames[i]));
  };
  auto answer_now = [&](auto&& send) {
    route_frames route;
    take_route(route);
    send(route);
  };
  zmq::message_t& body = frames.back();
  const std::string_view body_bytes = view(body);  // until the body is moved into the request

  // Everything that answers at once (a bad body, a cached reply, a retry,
  // refusals) is decided on the decoded view, before a request is built.
  std::optional<envelope_view> env;
  try {
    env = decode_if_envelope(body_bytes, limits);
  } catch (const zmqkit::error& e) {
    log(log_level::debug, std::string("bad request: ") + e.what());
    return answer_now([&](route_frames& route) {
      send_error(route, request_id_of(body_bytes), reply_error::bad_request, e.what());
    });
  }
  std::optional<message_id> id;
  std::optional<internal::hashed_id> key;
  std::optional<wall_time> expires;
  bool wants_ack = false;
  if (env) {
    id = env->id;
    key = frontend_curve ? scoped_key(env->id, client_key(body)) : env->id;
    expires = env->expires_at();
    if (store) wants_ack = env->header(header::ack) == "stored";
    if (const zmq::message_t* cached = cache.find(*key)) {
      ++counters.answered_from_cache;
      return answer_now([&](route_frames& route) { send_durable(route, copy_of(*cached)); });
    }
    if (const auto it = active_ids.find(*key); it != active_ids.end()) {
      // A retry: the reply goes to whoever asked last.
      ++counters.duplicates_suppressed;
      request& earlier = requests.at(it->second);
      earlier.route.clear();
      take_route(earlier.route);
      if (wants_ack) send_ack(earlier.route, id, env->priority);  // it is stored already
      return;
    }
  }
  if (draining)
    return answer_now([&](route_frames& route) { send_error(route, id, reply_error::unavailable, "shutting down"); });
  if (expires && *expires <= clk.wall_now()) {
    ++counters.expired;
    return answer_now([&](route_frames& route) {
      send_error(route, id, reply_error::expired, "ttl passed before it reached the device");
    });
  }
  // Built in its place in the table (a request is large: no move of it).
  const handle h = next_handle++;
  request& r = requests.try_emplace(h).first->second;
  take_route(r.route);
  r.body = std::move(body);
  r.bytes = body_bytes.size() + route_bytes;
  r.id = id;
  r.key = key;
  r.expires = expires;
  r.wants_ack = wants_ack;
  if (env) {
    r.type.assign(env->type);
    r.priority = env->priority;
  }
  if (store && !accept_stored(r)) {
    requests.erase(h);
    return;
  }
  if (r.key) active_ids.emplace(*r.key, h);
  if (r.expires) ttl_index.emplace(*r.expires, h);
  place(h, false, true);
}

void device::impl::answer(request_table::iterator it, zmq::message_t& reply) {
  request& r = it->second;
  keep_reply(r, reply);
  ++counters.replied;
  send_durable(r.route, std::move(reply));
  forget(it);
}

}  // namespace zmqkit::queue
