#include <algorithm>
#include <deque>
#include <set>
#include <stdexcept>
#include <zmq_addon.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/poll.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/handler.hpp>

#include <zmqkit/internal/dealer.hpp>
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/internal/loop_attachment.hpp>

namespace zmqkit::reqrep {

using namespace std::chrono_literals;

// --- result -----------------------------------------------------------------

void result::throw_failure() const {
  const auto& f = std::get<request_failure>(value_);
  if (f.what == request_failure::kind::timeout)
    throw error(errc::timeout, "", "request timed out: " + f.reason);
  if (f.server_fault()) throw error(errc::server_fault, f.code, "server fault: " + f.reason);
  throw error(errc::request_failed, f.code, "request failed: " + f.code + ": " + f.reason);
}

const envelope& result::reply() const& {
  if (!ok()) throw_failure();
  return std::get<envelope>(value_);
}

envelope result::reply() && {
  if (!ok()) throw_failure();
  return std::move(std::get<envelope>(value_));
}

const request_failure& result::failure() const {
  if (ok()) throw std::logic_error("zmqkit::reqrep::result::failure() on a successful result");
  return std::get<request_failure>(value_);
}

// --- client -----------------------------------------------------------------

namespace {
// Longest single zmq::poll, so a loop driven by a manual clock notices time moving.
constexpr auto max_slice = 100ms;
constexpr int max_drain = 256;  // messages handled per wake-up before timers run again
constexpr std::size_t max_submitted = 65536;  // submitted requests kept for collect(id)
}  // namespace

struct client::impl {
  struct pending {
    envelope request;
    retry_schedule schedule;
  };
  struct finished_call {
    on_result done;
    result outcome;
  };

  zmq::context_t* ctx;
  std::vector<std::string> endpoints;
  std::size_t current = 0;
  client_options opts;
  zmq::socket_t socket;
  std::optional<handshake_monitor> monitor;  // CURVE only; after socket: detached before it closes
  internal::keyed_map<message_id, pending> in_flight;  // keyed: replies name ids from the network
  std::set<std::pair<steady_time, message_id>> deadlines;
  std::deque<completion> done;
  client_stats stats;
  std::vector<zmq::message_t> frames;  // reused by drain()
  int quick_calls = 0;
  // Submitted requests, for collect(id); oldest forgotten past max_submitted.
  internal::keyed_map<message_id, envelope> submitted;
  std::deque<message_id> submitted_order;
  // async_request()'s callbacks by request id (apart from `pending`, so that send()
  // and request() carry none), and those due, called by deliver() between steps.
  internal::keyed_map<message_id, on_result> async_done;
  std::deque<finished_call> callbacks;
  // attach(): the loop driving the socket, and its timer at the earliest retry deadline.
  internal::loop_attachment driven;
  zmqkit::loop::id socket_watch = 0;

  impl(zmq::context_t& c, std::vector<std::string> eps, client_options o)
      : ctx(&c), endpoints(std::move(eps)), opts(std::move(o)) {
    if (endpoints.empty()) throw error(errc::bad_config, "endpoints", "a client needs at least one endpoint");
    if (!opts.clock) opts.clock = &clock::real();
    open();
  }
  ~impl() { detach(); }

  const clock& clk() const { return *opts.clock; }

  void open() {
    socket = internal::connect_dealer(*ctx, opts.socket, endpoints[current], monitor);
    watch();
  }

  // --- on a loop ---
  void attach(zmqkit::loop& l) {
    driven.attach(l, "client");
    watch();
    rearm();
  }

  void detach() noexcept {
    driven.detach();
    socket_watch = 0;
  }

  void watch() { socket_watch = driven.watch(socket, [this] { on_readable(); }); }
  void unwatch() noexcept { driven.unwatch(socket_watch); }

  void on_readable() {
    for (int n = 0; n < max_drain;) {
      const int read = drain();
      if (read == 0) break;
      n += read;
    }
    rearm();
    deliver();
  }

  // One loop timer, at the earliest retry deadline.
  void rearm() {
    const std::optional<steady_time> next =
        deadlines.empty() ? std::nullopt : std::optional<steady_time>(deadlines.begin()->first);
    driven.set_timer(next, clk(), [this] {
      run_timers();
      rearm();
      deliver();
    });
  }

  void deliver() {
    while (!callbacks.empty()) {
      finished_call c = std::move(callbacks.front());
      callbacks.pop_front();
      c.done(std::move(c.outcome));
    }
  }

  std::optional<std::string> handshake_failure() const {
    if (!monitor || monitor->established()) return std::nullopt;
    const auto f = monitor->last_failure();
    if (!f) return std::nullopt;
    return describe(*f);
  }

  // Moves to the next endpoint: the old socket and whatever it still queues are dropped.
  void fail_over() {
    ++stats.failovers;
    unwatch();  // before the socket closes
    socket.set(zmq::sockopt::linger, 0);
    monitor.reset();
    socket.close();
    current = (current + 1) % endpoints.size();
    open();
  }

  void transmit(pending& p) {
    const int retry = p.schedule.attempt() - 1;
    if (retry > 0) p.request.headers.insert_or_assign(std::string(header::attempt), std::to_string(retry));
    std::array<zmq::message_t, 2> out{zmq::message_t(), encode(p.request)};
    if (!zmq::send_multipart(socket, out, zmq::send_flags::dontwait)) ++stats.send_failures;
  }

  message_id send(envelope request, const retry_policy& policy) {
    if (request.id.is_nil()) request.id = message_id::generate();
    const message_id id = request.id;
    if (in_flight.contains(id))
      throw error(errc::bad_config, "id", "a request with this id is already in flight: " + id.to_string());
    if (auto h = request.headers.find(header::attempt); h != request.headers.end()) request.headers.erase(h);
    // A submitted request (zmk.ack) outlives the client's retries: it keeps no TTL of the budget's.
    if (opts.expire_when_abandoned && request.ttl.count() == 0 && !request.header(header::ack))
      expire_with_budget(request, policy);
    auto [it, _] = in_flight.emplace(id, pending{std::move(request), retry_schedule(policy, clk().now())});
    deadlines.emplace(it->second.schedule.deadline(), id);
    ++stats.sent;
    transmit(it->second);
    rearm();
    return id;
  }

  // ttl = the request's age + the retry budget: it expires when the client gives up.
  void expire_with_budget(envelope& request, const retry_policy& policy) const {
    const wall_time now = clk().wall_now();
    if (request.timestamp == wall_time{}) request.timestamp = now;
    // A timestamp ahead of our clock (made with another clock) counts as age 0.
    const auto age = std::max(std::chrono::ceil<std::chrono::milliseconds>(now - request.timestamp), 0ms);
    request.ttl = age + retry_budget(policy);
  }

  // An `unavailable` or `overloaded` reply: retry (at once, or after the overload
  // backoff) if the policy allows and retries remain. Returns: whether it will.
  bool retry_on_error(pending& p, const message_id& id, reply_error code) {
    const retry_policy& policy = p.schedule.policy();
    if (!policy.retry_errors || !p.schedule.can_retry()) return false;
    if (code != reply_error::unavailable && code != reply_error::overloaded) return false;
    auto delay = 0ms;
    if (code == reply_error::overloaded)
      delay = std::min<std::chrono::milliseconds>(policy.overload_backoff * (1 << std::min(p.schedule.retries_used(), 20)),
                                                  std::max(policy.max_timeout, policy.timeout));
    deadlines.erase({p.schedule.deadline(), id});
    p.schedule.retry_at(clk().now() + delay);
    deadlines.emplace(p.schedule.deadline(), id);
    ++stats.error_retries;
    return true;
  }

  void complete(internal::keyed_map<message_id, pending>::iterator it, result outcome) {
    deadlines.erase({it->second.schedule.deadline(), it->first});
    auto cb = async_done.empty() ? async_done.end() : async_done.find(it->first);
    if (cb != async_done.end()) {
      callbacks.push_back(finished_call{std::move(cb->second), std::move(outcome)});
      async_done.erase(cb);
    } else {
      done.push_back(completion{it->first, std::move(outcome)});
    }
    in_flight.erase(it);
  }

  void run_timers() {
    if (deadlines.empty()) return;
    const steady_time now = clk().now();
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      const message_id id = deadlines.begin()->second;
      auto it = in_flight.find(id);
      pending& p = it->second;
      deadlines.erase(deadlines.begin());
      switch (p.schedule.on_time(now)) {
        case retry_schedule::step::wait: break;  // unreachable: the deadline has passed
        case retry_schedule::step::give_up: {
          ++stats.timeouts;
          const auto handshake = handshake_failure();
          request_failure f{request_failure::kind::timeout, "timeout",
                            (handshake ? *handshake + "; " : std::string()) + "no reply after " +
                                std::to_string(p.schedule.attempt()) + " attempts",
                            p.schedule.attempt()};
          deadlines.emplace(p.schedule.deadline(), id);  // complete() erases it
          complete(it, std::move(f));
          continue;
        }
        case retry_schedule::step::retry: break;
      }
      ++stats.retries;
      deadlines.emplace(p.schedule.deadline(), id);
      if (endpoints.size() > 1) {
        fail_over();
        resend_all_except(id, now);
      }
      transmit(p);
    }
  }

  // After a failover every other request in flight is resent to the new endpoint.
  void resend_all_except(const message_id& skip, steady_time now) {
    for (auto& [id, p] : in_flight) {
      if (id == skip) continue;
      deadlines.erase({p.schedule.deadline(), id});
      p.schedule.resend(now);
      deadlines.emplace(p.schedule.deadline(), id);
      ++stats.resends;
      transmit(p);
    }
  }

  void handle(std::vector<zmq::message_t>& frames) {
    if (frames.size() != 2 || frames[0].size() != 0) {
      ++stats.bad_replies;
      return;
    }
    envelope reply;
    try {
      reply = decode(frames[1], opts.limits);
    } catch (const error&) {
      ++stats.bad_replies;
      return;
    }
    if (!reply.correlation_id) {
      ++stats.stale;  // e.g. bad-request for a frame whose id could not be read
      return;
    }
    auto it = in_flight.find(*reply.correlation_id);
    if (it == in_flight.end()) {
      ++stats.stale;
      return;
    }
    ++stats.replies;
    if (reply.is_error()) {
      const auto code = parse_reply_error(reply.error_code().value_or(""));
      if (code && retry_on_error(it->second, it->first, *code)) return;
      request_failure f{request_failure::kind::error_reply, std::string(reply.error_code().value_or("")),
                        std::string(reply.header(header::reason).value_or("")),
                        it->second.schedule.attempt()};
      complete(it, std::move(f));
    } else {
      complete(it, std::move(reply));
    }
  }

  // Handles queued replies until one completes a request, so a caller keeping a
  // window full sends its next request at once instead of after a whole batch.
  // Returns: how many were read.
  int drain() {
    int n = 0;
    const std::size_t before = done.size();
    while (n < max_drain && done.size() == before) {
      frames.clear();
      if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      ++n;
      handle(frames);
    }
    return n;
  }

  // Reads queued replies without waiting. Timers run on every 64th call here
  // (and on every wait), so a busy stream of replies costs no clock reads while a
  // lost reply still times out.
  bool drain_ready() {
    if (++quick_calls >= 64) {
      quick_calls = 0;
      run_timers();
    }
    return drain() > 0;
  }

  // One round: timers, queued replies, and only when there are none, wait up to `wait`.
  void pump(std::chrono::milliseconds wait) {
    run_timers();
    if (drain() > 0) return;
    auto slice = std::min<std::chrono::nanoseconds>(wait, max_slice);
    if (!deadlines.empty())
      slice = std::clamp<std::chrono::nanoseconds>(deadlines.begin()->first - clk().now(), 0ns, slice);
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmqkit::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(slice + 999us));
    drain();
    run_timers();
  }

  // After request()/poll() drove the client: the loop's timer follows the
  // deadlines they changed, and async_request() callbacks due meanwhile run.
  void settle() {
    if (driven.attached()) rearm();
    if (!callbacks.empty()) deliver();
  }

  std::optional<completion> take(const message_id* id) {
    auto it = id ? std::find_if(done.begin(), done.end(), [&](const completion& c) { return c.id == *id; })
                 : done.begin();
    if (it == done.end()) return std::nullopt;
    completion c = std::move(*it);
    done.erase(it);
    return c;
  }
};

client::client(zmq::context_t& ctx, std::string endpoint, client_options opts)
    : client(ctx, std::vector<std::string>{std::move(endpoint)}, std::move(opts)) {}

client::client(zmq::context_t& ctx, std::vector<std::string> endpoints, client_options opts)
    : impl_(make_pimpl<impl>(ctx, std::move(endpoints), std::move(opts))) {}


result client::request(envelope request) { return this->request(std::move(request), impl_->opts.retry); }

result client::request(envelope request, const retry_policy& policy) {
  const message_id id = impl_->send(std::move(request), policy);
  for (;;) {
    if (auto c = impl_->take(&id)) {
      impl_->settle();
      return std::move(c->outcome);
    }
    if (!impl_->drain_ready()) impl_->pump(max_slice);
  }
}

result client::submit(envelope request) { return submit(std::move(request), impl_->opts.retry); }

result client::submit(envelope request, const retry_policy& policy) {
  if (request.id.is_nil()) request.id = message_id::generate();
  if (request.timestamp == wall_time{}) request.timestamp = impl_->clk().wall_now();
  request.headers.insert_or_assign(std::string(header::ack), "stored");
  envelope kept = request;
  kept.headers.erase(std::string(header::ack));
  result r = this->request(std::move(request), policy);
  if (r) {
    auto& s = *impl_;
    const message_id id = kept.id;
    if (s.submitted.insert_or_assign(id, std::move(kept)).second) s.submitted_order.push_back(id);
    while (s.submitted_order.size() > max_submitted) {
      s.submitted.erase(s.submitted_order.front());
      s.submitted_order.pop_front();
    }
  }
  return r;
}

result client::collect(const message_id& id) {
  const auto it = impl_->submitted.find(id);
  if (it == impl_->submitted.end())
    throw error(errc::bad_config, "id", "no request submitted here with id " + id.to_string());
  return collect(it->second);
}

result client::collect(envelope request) {
  if (auto h = request.headers.find(header::ack); h != request.headers.end()) request.headers.erase(h);
  const message_id id = request.id;
  result r = this->request(std::move(request));
  if (r && r.reply().type != stored_type) impl_->submitted.erase(id);  // its order entry is skipped later
  return r;
}

message_id client::send(envelope request) { return impl_->send(std::move(request), impl_->opts.retry); }
message_id client::send(envelope request, const retry_policy& policy) {
  return impl_->send(std::move(request), policy);
}

std::optional<completion> client::poll(std::chrono::milliseconds timeout) {
  auto c = impl_->take(nullptr);
  if (!c && impl_->drain_ready()) c = impl_->take(nullptr);
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!c) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    impl_->pump(std::max(left, 0ms));
    c = impl_->take(nullptr);
    if (!c && !impl_->callbacks.empty()) impl_->deliver();  // async_request() callbacks completed meanwhile
    if (std::chrono::steady_clock::now() >= end) break;
  }
  impl_->settle();
  return c;
}

message_id client::async_request(envelope request, on_result done) {
  return async_request(std::move(request), impl_->opts.retry, std::move(done));
}
message_id client::async_request(envelope request, const retry_policy& policy, on_result done) {
  if (!done) throw error(errc::bad_config, "done", "async_request needs a completion callback");
  const message_id id = impl_->send(std::move(request), policy);  // cannot complete before it returns
  impl_->async_done.insert_or_assign(id, std::move(done));
  return id;
}

void client::attach(zmqkit::loop& loop) { impl_->attach(loop); }
void client::detach() noexcept { impl_->detach(); }

std::size_t client::in_flight() const noexcept { return impl_->in_flight.size(); }
const std::string& client::endpoint() const noexcept { return impl_->endpoints[impl_->current]; }
bool client::connected() const noexcept { return !impl_->monitor || impl_->monitor->established(); }
std::optional<std::string> client::handshake_failure() const { return impl_->handshake_failure(); }
const client_stats& client::stats() const noexcept { return impl_->stats; }

}  // namespace zmqkit::reqrep
