#include <algorithm>
#include <memory>
#include <optional>
#include <stop_token>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/internal/keyed_hash.hpp>
#include <zmqkit/internal/loop_attachment.hpp>
#include <zmqkit/internal/reply_store.hpp>
#include <zmqkit/internal/routed.hpp>
#include <zmqkit/reqrep/server.hpp>

#include "executor.hpp"
#include "run_handler.hpp"

namespace zmqkit::reqrep {

namespace {
constexpr int max_drain = 256;
using frames_t = std::vector<zmq::message_t>;

bool same_stack(const frames_t& a, const frames_t& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}
}  // namespace

struct server::impl {
  handler user;
  server_options opts;
  zmq::socket_t socket;
  internal::reply_store cache;             // recent replies by id: retries are answered from here
  std::unique_ptr<detail::executor> exec;  // null when threads == 0
  // Requests running on a handler thread: id -> address stacks waiting for the reply.
  internal::keyed_map<message_id, std::vector<frames_t>> running;  // keyed: ids come from the network
  server_stats stats;
  frames_t frames;                   // reused by the readers
  std::size_t handled = 0;           // messages handled, for poll()'s result
  internal::loop_attachment driven;  // after the sockets: its watches go first

  impl(zmq::context_t& ctx, const std::string& endpoint, handler h, server_options o)
      : user(std::move(h)),
        opts(std::move(o)),
        socket(ctx, zmq::socket_type::router),
        cache({.max_entries = opts.cache.max_entries,
               .max_bytes = opts.cache.max_bytes,
               .max_age = opts.cache.max_age}) {
    if (!opts.clock) opts.clock = &clock::real();
    apply(socket, opts.socket);
    socket.bind(endpoint);
    if (opts.threads > 0) exec = std::make_unique<detail::executor>(ctx, opts.threads);
  }

  const clock& clk() const { return *opts.clock; }

  void send(const frames_t& stack, zmq::message_t body) {
    for (const auto& f : stack) socket.send(zmq::buffer(f.data(), f.size()), zmq::send_flags::sndmore);
    socket.send(zmq::message_t(), zmq::send_flags::sndmore);
    socket.send(std::move(body), zmq::send_flags::dontwait);
  }

  void handle_request(frames_t& frames) {
    ++stats.received;
    std::optional<zmq::message_t> body = internal::take_body(frames);  // frames keep the route
    if (!body) {
      ++stats.dropped;
      return;
    }
    const std::string_view raw = as_string_view(*body);
    if (!looks_like_envelope(raw)) return handle_plain(std::move(frames), raw);

    auto decoded = detail::decode_request(raw, opts.limits, clk());
    if (auto* refusal = std::get_if<zmq::message_t>(&decoded)) {
      ++stats.bad_requests;
      return send(frames, std::move(*refusal));
    }
    envelope& req = std::get<envelope>(decoded);
    const steady_time now = clk().now();
    if (const zmq::message_t* hit = cache.find(req.id, now)) {
      ++stats.cache_hits;
      zmq::message_t copy;
      copy.copy(const_cast<zmq::message_t&>(*hit));
      return send(frames, std::move(copy));
    }
    if (auto it = running.find(req.id); it != running.end()) {
      ++stats.joined;
      auto& waiters = it->second;
      if (std::none_of(waiters.begin(), waiters.end(),
                       [&](const frames_t& s) { return same_stack(s, frames); }))
        waiters.push_back(std::move(frames));
      return;
    }
    if (std::optional<zmq::message_t> refusal = detail::expired_reply(req, clk())) {
      ++stats.expired;
      return send(frames, std::move(*refusal));
    }
    ++stats.executed;
    if (!exec) {
      bool failed = false;
      zmq::message_t reply = detail::run_handler(user, req, clk(), failed);
      if (failed) ++stats.handler_errors;
      cache.insert(req.id, reply, now);
      return send(frames, std::move(reply));
    }
    running[req.id].push_back(std::move(frames));
    frames_t tag;
    tag.emplace_back(req.id.as_bytes().data(), req.id.as_bytes().size());
    exec->submit([this, req = std::move(req)] { return detail::run_request_job(user, req, clk()); },
                 std::move(tag));
  }

  void handle_plain(frames_t stack, std::string_view raw) {
    if (!opts.plain) {
      ++stats.dropped;
      return;
    }
    ++stats.executed;
    if (!exec) {
      bool failed = false;
      zmq::message_t reply = detail::run_plain_handler(opts.plain, raw, failed);
      if (failed) ++stats.handler_errors;
      return send(stack, std::move(reply));
    }
    frames_t tag;
    tag.emplace_back();  // no id: a plain request is answered, not cached; the route follows
    for (auto& f : stack) tag.push_back(std::move(f));
    exec->submit([this, body = std::string(raw)] { return detail::run_plain_job(opts.plain, body); },
                 std::move(tag));
  }

  // The tag is [id] for an envelope request, [empty, route...] for a plain one.
  void handle_result(detail::finished_job& done) {
    if (done.tag.empty()) return;
    if (done.outcome == detail::job_outcome::handler_failed) ++stats.handler_errors;
    if (done.outcome == detail::job_outcome::expired) {
      --stats.executed;  // counted when queued for a thread; it never ran
      ++stats.expired;
    }
    if (done.tag[0].size() == 0) {
      const frames_t route(std::make_move_iterator(done.tag.begin() + 1),
                           std::make_move_iterator(done.tag.end()));
      return send(route, std::move(done.reply));
    }
    const auto id = message_id::from_bytes(as_string_view(done.tag[0]));
    if (!id) return;
    cache.insert(*id, done.reply, clk().now());
    auto it = running.find(*id);
    if (it == running.end()) return;
    for (const auto& stack : it->second) {
      zmq::message_t copy;
      copy.copy(done.reply);
      send(stack, std::move(copy));
    }
    running.erase(it);
  }

  void read_results() {
    for (int i = 0; i < max_drain; ++i, ++handled) {
      auto done = exec->take_result();
      if (!done) break;
      handle_result(*done);
    }
  }

  void read_requests() {
    for (int i = 0; i < max_drain; ++i, ++handled) {
      frames.clear();
      if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      handle_request(frames);
    }
  }

  void watch() {
    driven.watch(socket, [this] { read_requests(); });
    if (exec) driven.watch(exec->results(), [this] { read_results(); });
  }

  void attach(zmqkit::loop& l) {
    driven.attach(l, "server");
    watch();
  }

  // Blocking use: the server's own loop, the same handlers.
  zmqkit::loop& own_loop() {
    if (driven.attach_own(clk(), "server")) watch();
    return driven.loop();
  }

  std::size_t poll(std::chrono::milliseconds timeout) {
    const std::size_t before = handled;
    own_loop().run_once(timeout);
    return handled - before;
  }

  void run(std::stop_token stop) {
    zmqkit::loop& l = own_loop();
    std::stop_callback wake(stop, [&l] { l.stop(); });
    l.run();
    l.restart();
  }
};

server::server(zmq::context_t& ctx, const std::string& endpoint, handler h, server_options opts)
    : impl_(make_pimpl<impl>(ctx, endpoint, std::move(h), std::move(opts))) {}

std::size_t server::poll(std::chrono::milliseconds timeout) { return impl_->poll(timeout); }

void server::run(std::stop_token stop) { impl_->run(stop); }
void server::attach(zmqkit::loop& loop) { impl_->attach(loop); }

std::string server::endpoint() const { return impl_->socket.get(zmq::sockopt::last_endpoint); }
const server_stats& server::stats() const noexcept { return impl_->stats; }
std::size_t server::cached() const noexcept { return impl_->cache.size(); }

}  // namespace zmqkit::reqrep
