// Helpers for the queue device tests: raw cppzmq clients and workers that
// speak ZMK/1 request/reply by hand (no patterns/reqrep code), and a device
// running on its own thread with a manual clock.
#pragma once

#include <condition_variable>
#include <msgpack.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <support/sockets.hpp>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/queue/device.hpp>

namespace zmqkit::test {

inline std::string str(const zmq::message_t& m) {
  return std::string(static_cast<const char*>(m.data()), m.size());
}

inline std::vector<zmq::message_t> recv_all(zmq::socket_t& s) {
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(s, std::back_inserter(frames))) frames.clear();
  return frames;
}

// A worker speaking the Paranoid Pirate side of ZMK/1 by hand.
struct raw_worker {
  zmq::socket_t s;
  raw_worker(zmq::context_t& ctx, const std::string& backend, std::vector<std::string> prefixes = {},
             bool ready = true, std::chrono::milliseconds timeout = 1000ms)
      : s(test_socket(ctx, zmq::socket_type::dealer, timeout)) {
    s.connect(backend);
    if (ready) send_ready(prefixes);
  }
  void send_ready(const std::vector<std::string>& prefixes = {}) {
    if (prefixes.empty()) {
      s.send(zmq::buffer("\x01", 1));
      return;
    }
    msgpack::sbuffer b;
    msgpack::pack(b, prefixes);
    s.send(zmq::buffer("\x01", 1), zmq::send_flags::sndmore);
    s.send(zmq::buffer(b.data(), b.size()));
  }
  // READY with the map form: {"capacity": n} plus "prefixes" when given.
  void send_ready_capacity(std::uint64_t capacity, const std::vector<std::string>& prefixes = {}) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    pk.pack_map(prefixes.empty() ? 1 : 2);
    pk.pack(std::string("capacity"));
    pk.pack(capacity);
    if (!prefixes.empty()) {
      pk.pack(std::string("prefixes"));
      pk.pack(prefixes);
    }
    send_ready_frame(std::string(b.data(), b.size()));
  }
  // READY with an arbitrary second frame.
  void send_ready_frame(const std::string& frame) {
    s.send(zmq::buffer("\x01", 1), zmq::send_flags::sndmore);
    s.send(zmq::buffer(frame));
  }
  void heartbeat() { s.send(zmq::buffer("\x02", 1)); }
  void disconnect() { s.send(zmq::buffer("\x03", 1)); }

  // Returns: the next request ([route..., empty, body]), skipping heartbeats;
  // empty on timeout. `heartbeats` counts the heartbeats skipped.
  std::vector<zmq::message_t> request(int* heartbeats = nullptr) {
    for (;;) {
      auto f = recv_all(s);
      if (f.size() == 1 && str(f[0]) == "\x02") {
        if (heartbeats) ++*heartbeats;
        continue;
      }
      return f;
    }
  }
  // Returns: whether anything other than a heartbeat arrives within `wait`.
  bool receives_request_within(std::chrono::milliseconds wait) {
    const auto end = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < end) {
      zmq::pollitem_t it{s.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&it, 1, std::chrono::milliseconds(10));
      if (!(it.revents & ZMQ_POLLIN)) continue;
      auto f = recv_all(s);
      if (!(f.size() == 1 && str(f[0]) == "\x02")) return true;
    }
    return false;
  }
  // Echoes the request's leading frames with `body` as the reply.
  void reply(std::vector<zmq::message_t>& request, const zmq::message_t& body) {
    for (std::size_t i = 0; i + 1 < request.size(); ++i) s.send(request[i], zmq::send_flags::sndmore);
    s.send(zmq::buffer(body.data(), body.size()));
  }
  void reply_to(std::vector<zmq::message_t>& request) {
    const envelope req = decode(request.back());
    reply(request, encode(make_reply(req, "test.reply", std::string("ok"))));
  }
};

// A client: a DEALER sending [empty, body].
struct raw_client {
  zmq::socket_t s;
  // `identity`: the routing id the device's frontend sees (libzmq makes one when empty).
  raw_client(zmq::context_t& ctx, const std::string& frontend, const std::string& identity = {})
      : s(test_socket(ctx, zmq::socket_type::dealer)) {
    if (!identity.empty()) s.set(zmq::sockopt::routing_id, identity);
    s.connect(frontend);
  }
  void send(const zmq::message_t& body) {
    s.send(zmq::message_t{}, zmq::send_flags::sndmore);
    s.send(zmq::buffer(body.data(), body.size()));
  }
  void send(const envelope& env) { send(encode(env)); }
  // Returns: the reply body, or nullopt on timeout / bad shape.
  std::optional<zmq::message_t> receive() {
    auto f = recv_all(s);
    if (f.size() != 2 || f[0].size() != 0) return std::nullopt;
    return std::move(f[1]);
  }
  std::optional<envelope> receive_envelope() {
    auto m = receive();
    if (!m) return std::nullopt;
    return decode(*m);
  }
};

inline std::string error_of(const std::optional<envelope>& env) {
  if (!env || !env->is_error()) return "(not an error)";
  return std::string(env->error_code().value_or("(none)"));
}

// A device on its own thread, driven by a manual clock.
struct device_fixture {
  zmq::context_t ctx;
  manual_clock clock;
  queue::device dev;
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;  // run() returned (under done_mu)
  std::thread thread;

  static queue::device_options defaults(queue::device_options o, manual_clock& clock) {
    if (o.frontend.empty()) o.frontend = unique_inproc("queue-front");
    if (o.backend.empty()) o.backend = unique_inproc("queue-back");
    o.clock = &clock;
    o.tick = std::chrono::milliseconds(2);
    return o;
  }
  explicit device_fixture(queue::device_options o = {})
      : dev(ctx, defaults(std::move(o), clock)), thread([this] {
          dev.run();
          std::lock_guard lock(done_mu);
          done = true;
          done_cv.notify_all();
        }) {}
  ~device_fixture() { stop(); }

  // Stops the device, moving the manual clock so that draining ends. The drain
  // deadline is set on the device's thread when it notices stop(), so the clock
  // moves again each time run() has not returned within a tick.
  void stop() {
    if (!thread.joinable()) return;
    dev.stop();
    std::unique_lock lock(done_mu);
    while (!done_cv.wait_for(lock, std::chrono::milliseconds(2), [this] { return done; }))
      clock.advance(std::chrono::seconds(60));
    lock.unlock();
    thread.join();
  }
  bool finished() {
    std::lock_guard lock(done_mu);
    return done;
  }
  std::string frontend() const { return dev.frontend_endpoint(); }
  std::string backend() const { return dev.backend_endpoint(); }
  queue::device_stats stats() const { return dev.stats(); }

  // Waits (real time) until the device's stats satisfy `pred`.
  template <class Pred>
  bool wait_stats(Pred pred, std::chrono::milliseconds deadline = 5000ms) {
    return wait_until([&] { return pred(dev.stats()); }, deadline);
  }
  bool wait_ready(std::size_t n) {
    return wait_stats([n](const queue::device_stats& s) { return s.workers_ready == n; });
  }
  bool wait_pending(std::size_t n) {
    return wait_stats([n](const queue::device_stats& s) { return s.pending == n; });
  }
};

inline envelope request(std::string type, std::uint8_t priority = default_priority,
                        const clock& clk = clock::real()) {
  envelope e = make_envelope(std::move(type), std::string("payload"), clk);
  e.priority = priority;
  return e;
}

}  // namespace zmqkit::test
