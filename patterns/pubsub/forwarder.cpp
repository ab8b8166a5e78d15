#include <atomic>
#include <thread>
#include <zmqkit/error.hpp>
#include <zmqkit/pubsub/forwarder.hpp>

namespace zmqkit::pubsub {

namespace {

// Messages moved per wake-up before polling again: amortises the poll.
constexpr int batch = 256;

std::string unique_control_endpoint() {
  static std::atomic<std::uint64_t> counter{0};
  return "inproc://zmqkit-pubsub-forwarder-" + std::to_string(counter++);
}

// Moves up to `batch` whole messages from `from` to `to`, counting each before
// it is sent, so whoever receives it also sees it counted.
void move_messages(zmq::socket_t& from, zmq::socket_t& to, std::atomic<std::uint64_t>& counter) {
  zmq::message_t frame;
  for (int i = 0; i < batch; ++i) {
    if (!from.recv(frame, zmq::recv_flags::dontwait)) break;
    counter.fetch_add(1, std::memory_order_relaxed);
    for (;;) {
      const bool more = frame.more();
      // XPUB and XSUB drop rather than block when a peer is full.
      (void)to.send(frame,
                    more ? zmq::send_flags::sndmore | zmq::send_flags::dontwait : zmq::send_flags::dontwait);
      if (!more) break;
      (void)from.recv(frame, zmq::recv_flags::dontwait);  // the rest of a message is already here
    }
  }
}

}  // namespace

struct forwarder::impl {
  zmq::socket_t xsub, xpub, control, control_peer;
  std::string frontend, backend;
  std::atomic<std::uint64_t> messages{0}, subscriptions{0};
  std::thread thread;

  impl(zmq::context_t& ctx, const forwarder_options& opts)
      : xsub(ctx, zmq::socket_type::xsub), xpub(ctx, zmq::socket_type::xpub) {
    if (opts.frontend.empty())
      throw error(errc::bad_config, "frontend", "forwarder: frontend endpoint missing");
    if (opts.backend.empty()) throw error(errc::bad_config, "backend", "forwarder: backend endpoint missing");
    apply(xsub, opts.socket);
    apply(xpub, opts.socket);
    xsub.bind(opts.frontend);
    frontend = xsub.get(zmq::sockopt::last_endpoint);
    xpub.bind(opts.backend);
    backend = xpub.get(zmq::sockopt::last_endpoint);
    // Internal inproc pipe: not a network socket, so no socket_options.
    const std::string ep = unique_control_endpoint();
    control_peer = zmq::socket_t(ctx, zmq::socket_type::pair);
    control_peer.set(zmq::sockopt::linger, 0);
    control_peer.bind(ep);
    control = zmq::socket_t(ctx, zmq::socket_type::pair);
    control.set(zmq::sockopt::linger, 0);
    control.connect(ep);
    thread = std::thread([this] { run(); });
  }

  ~impl() {
    control.send(zmq::str_buffer("stop"), zmq::send_flags::none);
    thread.join();
  }

  void run() {
    for (;;) {
      zmq::pollitem_t items[] = {{xsub.handle(), 0, ZMQ_POLLIN, 0},
                                 {xpub.handle(), 0, ZMQ_POLLIN, 0},
                                 {control_peer.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 3, std::chrono::milliseconds(-1));
      if (items[2].revents & ZMQ_POLLIN) return;
      if (items[1].revents & ZMQ_POLLIN) move_messages(xpub, xsub, subscriptions);
      if (items[0].revents & ZMQ_POLLIN) move_messages(xsub, xpub, messages);
    }
  }
};

forwarder::forwarder(zmq::context_t& ctx, forwarder_options options)
    : impl_(std::make_unique<impl>(ctx, options)) {}
forwarder::~forwarder() = default;
forwarder::forwarder(forwarder&&) noexcept = default;
forwarder& forwarder::operator=(forwarder&&) noexcept = default;

const std::string& forwarder::frontend_endpoint() const noexcept { return impl_->frontend; }
const std::string& forwarder::backend_endpoint() const noexcept { return impl_->backend; }

forwarder_stats forwarder::stats() const {
  return {.messages = impl_->messages.load(), .subscriptions = impl_->subscriptions.load()};
}

}  // namespace zmqkit::pubsub
