#include <array>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/handshake_monitor.hpp>

namespace zmqkit {

struct handshake_monitor::impl {
  void* monitored = nullptr;  // the socket's handle, to detach the monitor on destruction
  zmq::socket_t events;       // the monitor thread's: receives libzmq's monitor events
  zmq::socket_t control;      // the monitor thread's end of the stop pipe
  zmq::socket_t stopper;      // the owner's end
  std::thread thread;
  std::atomic<std::uint64_t> accepted{0}, connected{0}, succeeded{0}, failed_no_detail{0}, failed_protocol{0},
      failed_auth{0}, disconnected{0};

  void count(std::uint16_t event) {
    switch (event) {
      case ZMQ_EVENT_ACCEPTED: ++accepted; break;
      case ZMQ_EVENT_CONNECTED: ++connected; break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: ++succeeded; break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: ++failed_no_detail; break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: ++failed_protocol; break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: ++failed_auth; break;
      case ZMQ_EVENT_DISCONNECTED: ++disconnected; break;
      default: break;
    }
  }

  void run() {
    for (;;) {
      std::array<zmq::pollitem_t, 2> items{
          {{events.handle(), 0, ZMQ_POLLIN, 0}, {control.handle(), 0, ZMQ_POLLIN, 0}}};
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(-1));
      if (items[1].revents & ZMQ_POLLIN) return;
      // An event is two frames: [event id (2 bytes) + value (4 bytes), endpoint].
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(events, std::back_inserter(frames), zmq::recv_flags::dontwait)) continue;
      if (frames.empty() || frames[0].size() < 2) continue;
      std::uint16_t event = 0;
      std::memcpy(&event, frames[0].data(), sizeof event);
      count(event);
    }
  }
};

handshake_monitor::handshake_monitor(zmq::context_t& ctx, zmq::socket_t& socket)
    : impl_(std::make_unique<impl>()) {
  auto& m = *impl_;
  const std::string id = std::to_string(reinterpret_cast<std::uintptr_t>(&m));
  const std::string endpoint = "inproc://zmqkit-monitor-" + id;
  constexpr int wanted = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                         ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                         ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED;
  if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), wanted) != 0) throw zmq::error_t();
  m.monitored = socket.handle();
  // libzmq sends events blocking, from its I/O threads: a deep queue and a reader
  // that never stops keep a burst of connections (a flood) from stalling them.
  // Connected before any bind/connect on the socket, so no event is lost.
  m.events = zmq::socket_t(ctx, zmq::socket_type::pair);
  m.events.set(zmq::sockopt::linger, 0);
  m.events.set(zmq::sockopt::rcvhwm, 100000);
  m.events.connect(endpoint);
  const std::string pipe = "inproc://zmqkit-monitor-stop-" + id;
  m.control = zmq::socket_t(ctx, zmq::socket_type::pair);
  m.control.set(zmq::sockopt::linger, 0);
  m.control.bind(pipe);
  m.stopper = zmq::socket_t(ctx, zmq::socket_type::pair);
  m.stopper.set(zmq::sockopt::linger, 0);
  m.stopper.set(zmq::sockopt::sndtimeo, 5000);
  m.stopper.connect(pipe);
  m.thread = std::thread([&m] { m.run(); });
}

handshake_monitor::~handshake_monitor() {
  if (!impl_) return;
  // Detach first, while the reader still drains: libzmq must not block sending to a reader that is gone.
  zmq_socket_monitor(impl_->monitored, nullptr, 0);
  impl_->stopper.send(zmq::str_buffer("stop"), zmq::send_flags::none);
  impl_->thread.join();
}

handshake_monitor::handshake_monitor(handshake_monitor&&) noexcept = default;
handshake_monitor& handshake_monitor::operator=(handshake_monitor&& other) noexcept {
  if (this != &other) {
    handshake_monitor dying(std::move(*this));
    impl_ = std::move(other.impl_);
  }
  return *this;
}

handshake_stats handshake_monitor::stats() const {
  const auto& m = *impl_;
  return {m.accepted,        m.connected,   m.succeeded,   m.failed_no_detail,
          m.failed_protocol, m.failed_auth, m.disconnected};
}

}  // namespace zmqkit
