#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <stop_token>
#include <string_view>
#include <zmq_addon.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/reqrep/timing.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include <zmqkit/internal/dealer.hpp>
#include <zmqkit/internal/loop_attachment.hpp>
#include <zmqkit/internal/worker_protocol.hpp>
#include <zmqkit/internal/routed.hpp>

#include "executor.hpp"
#include "run_handler.hpp"

namespace zmqkit::reqrep {

using namespace std::chrono_literals;

// The public control codes are the protocol's, from the one codec.
static_assert(zmqkit::reqrep::control::ready == zmqkit::internal::worker_protocol::ready &&
              zmqkit::reqrep::control::heartbeat == zmqkit::internal::worker_protocol::heartbeat &&
              zmqkit::reqrep::control::disconnect == zmqkit::internal::worker_protocol::disconnect);

namespace {
constexpr int max_drain = 256;
using frames_t = std::vector<zmq::message_t>;

zmq::message_t control_frame(std::uint8_t code) { return zmq::message_t(&code, 1); }
}  // namespace

struct worker::impl {
  zmq::context_t* ctx;
  std::string endpoint;
  handler user;
  worker_options opts;
  std::optional<zmq::socket_t> socket;  // empty while waiting to reconnect
  std::optional<handshake_monitor> monitor;  // CURVE only; after socket: detached before it closes
  liveness_tracker liveness;
  reconnect_backoff backoff;
  steady_time reconnect_at{};
  bool stopped = false;
  std::string ready_services;  // READY's second frame: empty (bare READY), prefix array or capacity map
  worker_stats stats;
  // attach(): the loop, its watches (device socket, handler results) and the one timer.
  internal::loop_attachment driven;
  zmqkit::loop::id socket_watch = 0;
  std::unique_ptr<detail::executor> exec;  // last: joined before the rest is destroyed

  impl(zmq::context_t& c, std::string ep, handler h, worker_options o)
      : ctx(&c),
        endpoint(std::move(ep)),
        user(std::move(h)),
        opts(std::move(o)),
        liveness(opts.heartbeat_interval, opts.liveness, (opts.clock ? *opts.clock : clock::real()).now()),
        backoff(opts.reconnect_initial, opts.reconnect_max) {
    if (!opts.clock) opts.clock = &clock::real();
    if (opts.capacity < 1 || opts.capacity > internal::worker_protocol::max_capacity)
      throw error(errc::bad_config, "capacity", "worker capacity must be 1..1024");
    ready_services = internal::worker_protocol::encode_ready({.prefixes = opts.services, .capacity = opts.capacity});
    exec = std::make_unique<detail::executor>(c, 1);
    connect();
  }
  ~impl() { stop(); }  // if not stopped yet: waits for the running handler, says DISCONNECT

  const clock& clk() const { return *opts.clock; }

  void connect() {
    socket = internal::connect_dealer(*ctx, opts.socket, endpoint, monitor);
    watch_socket();
    if (ready_services.empty()) {
      socket->send(control_frame(control::ready), zmq::send_flags::dontwait);
    } else {
      socket->send(control_frame(control::ready), zmq::send_flags::sndmore);
      socket->send(zmq::buffer(ready_services), zmq::send_flags::dontwait);
    }
    liveness.reset(clk().now());
  }

  void close_socket() {
    unwatch_socket();
    socket->set(zmq::sockopt::linger, 0);
    monitor.reset();
    socket.reset();
  }

  void send(const frames_t& stack, zmq::message_t body) {
    if (!socket) {
      ++stats.replies_lost;
      return;
    }
    for (const auto& f : stack) socket->send(zmq::buffer(f.data(), f.size()), zmq::send_flags::sndmore);
    socket->send(zmq::message_t(), zmq::send_flags::sndmore);
    if (socket->send(std::move(body), zmq::send_flags::dontwait))
      ++stats.replies;
    else
      ++stats.replies_lost;
  }

  void run_timers() {
    const steady_time now = clk().now();
    if (!socket) {
      if (now >= reconnect_at) connect();
      return;
    }
    if (liveness.dead(now)) {
      ++stats.reconnects;
      close_socket();
      reconnect_at = now + backoff.next();
      return;
    }
    if (liveness.heartbeat_due(now)) {
      socket->send(control_frame(control::heartbeat), zmq::send_flags::dontwait);
      liveness.on_sent(now);
      ++stats.heartbeats_sent;
    }
  }

  void handle_device(frames_t& frames) {
    liveness.on_heard(clk().now());
    backoff.reset();
    if (frames.size() == 1) {
      if (frames[0].size() == 1 && *frames[0].data<std::uint8_t>() == control::heartbeat)
        ++stats.heartbeats_received;
      else
        ++stats.dropped;
      return;
    }
    std::optional<zmq::message_t> body = internal::take_body(frames);  // frames keep the route
    if (!body) {
      ++stats.dropped;
      return;
    }
    const std::string_view raw = as_string_view(*body);
    if (!looks_like_envelope(raw)) {
      if (!opts.plain) {
        ++stats.dropped;
        return;
      }
      ++stats.requests;
      exec->submit([this, text = std::string(raw)] { return detail::run_plain_job(opts.plain, text); },
                   std::move(frames));
      return;
    }
    auto decoded = detail::decode_request(raw, opts.limits, clk());
    if (auto* refusal = std::get_if<zmq::message_t>(&decoded)) {
      ++stats.bad_requests;
      return send(frames, std::move(*refusal));
    }
    envelope& req = std::get<envelope>(decoded);
    if (std::optional<zmq::message_t> refusal = detail::expired_reply(req, clk())) {
      ++stats.expired;
      return send(frames, std::move(*refusal));
    }
    ++stats.requests;
    exec->submit([this, req = std::move(req)] { return detail::run_request_job(user, req, clk()); }, std::move(frames));
  }

  // The tag is the request's route.
  void handle_result(detail::finished_job& done) {
    if (done.outcome == detail::job_outcome::handler_failed) ++stats.handler_errors;
    if (done.outcome == detail::job_outcome::expired) ++stats.expired;
    send(done.tag, std::move(done.reply));
  }

  // --- on a loop ---
  void attach(zmqkit::loop& l) {
    if (stopped) throw error(errc::bad_config, "loop", "the worker is stopped");
    driven.attach(l, "worker");
    watch();
  }

  void watch() {
    driven.watch(exec->results(), [this] {
      read_results();
      rearm();
    });
    watch_socket();
    rearm();
  }

  void detach() noexcept {
    driven.detach();
    socket_watch = 0;
  }

  void watch_socket() {
    if (!socket) return;
    socket_watch = driven.watch(*socket, [this] {
      read_device();
      rearm();
    });
  }
  void unwatch_socket() noexcept { driven.unwatch(socket_watch); }

  // The timer follows the next heartbeat, liveness or reconnect moment.
  void rearm() {
    driven.set_timer(socket ? liveness.next_event() : reconnect_at, clk(), [this] {
      run_timers();
      rearm();
    });
  }

  void read_results(int at_most = max_drain) {
    for (int i = 0; i < at_most; ++i) {
      auto done = exec->take_result();
      if (!done) break;
      handle_result(*done);
    }
  }

  void read_device() {
    frames_t frames;
    for (int i = 0; socket && i < max_drain; ++i) {
      frames.clear();
      if (!zmq::recv_multipart(*socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      handle_device(frames);
    }
  }

  // Blocking use: the worker's own loop, the same handlers and timer as attach().
  zmqkit::loop& own_loop() {
    if (driven.attach_own(clk(), "worker")) watch();
    return driven.loop();
  }

  void poll(std::chrono::milliseconds timeout) {
    if (stopped) return;
    own_loop().run_for(timeout);
  }

  void run(std::stop_token stop) {
    if (!stopped) {
      zmqkit::loop& l = own_loop();
      std::stop_callback wake(stop, [&l] { l.stop(); });
      l.run();
      l.restart();
    }
    this->stop();
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    detach();
    // Let the running handler finish (requests not started are dropped: the device
    // requeues them on DISCONNECT), and send the replies that are ready.
    exec->join();
    read_results(std::numeric_limits<int>::max());
    if (!socket) return;
    socket->send(control_frame(control::disconnect), zmq::send_flags::dontwait);
    // Keep the default linger so DISCONNECT leaves before the socket closes.
    monitor.reset();
    socket.reset();
  }
};

worker::worker(zmq::context_t& ctx, std::string endpoint, handler h, worker_options opts)
    : impl_(make_pimpl<impl>(ctx, std::move(endpoint), std::move(h), std::move(opts))) {}


void worker::poll(std::chrono::milliseconds timeout) { impl_->poll(timeout); }

void worker::run(std::stop_token stop) { impl_->run(stop); }

void worker::stop() { impl_->stop(); }
void worker::attach(zmqkit::loop& loop) { impl_->attach(loop); }
void worker::detach() noexcept { impl_->detach(); }
bool worker::connected() const noexcept {
  return impl_->socket.has_value() && !impl_->stopped && (!impl_->monitor || impl_->monitor->established());
}

std::optional<std::string> worker::handshake_failure() const {
  const auto& m = impl_->monitor;
  if (!m || m->established()) return std::nullopt;
  const auto f = m->last_failure();
  if (!f) return std::nullopt;
  return describe(*f);
}
const worker_stats& worker::stats() const noexcept { return impl_->stats; }

}  // namespace zmqkit::reqrep
