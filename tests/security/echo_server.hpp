// A ROUTER echo server on its own thread, for the security tests: it counts
// what it receives, records each message's User-Id and X-Key-Name properties,
// and watches its own handshakes with a zmqkit::handshake_monitor.
#pragma once

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/socket_options.hpp>

#include "support/sockets.hpp"

namespace zmqkit::test {

class echo_server {
 public:
  echo_server(zmq::context_t& ctx, const zmqkit::socket_options& opts)
      : socket_(configured(ctx, opts)), monitor_(ctx, socket_) {
    endpoint_ = bind_ephemeral(socket_);
    // The socket moves to the server thread here (thread start is the memory barrier).
    thread_ = std::thread([this] { run(); });
  }
  ~echo_server() {
    stop_ = true;
    thread_.join();  // the socket is the test thread's again; the monitor detaches, then it closes
  }

  const std::string& endpoint() const { return endpoint_; }
  int received() const { return received_; }
  zmqkit::handshake_stats handshakes() const { return monitor_.stats(); }
  std::optional<zmqkit::handshake_failure> last_failure() const { return monitor_.last_failure(); }
  std::vector<std::string> user_ids() {
    std::lock_guard lock(mutex_);
    return user_ids_;
  }
  std::vector<std::string> key_names() {
    std::lock_guard lock(mutex_);
    return key_names_;
  }

 private:
  void run() {
    while (!stop_) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> msg;
      if (!zmq::recv_multipart(socket_, std::back_inserter(msg), zmq::recv_flags::dontwait)) continue;
      ++received_;
      if (msg.size() >= 2) {
        std::lock_guard lock(mutex_);
        user_ids_.emplace_back(property(msg[1], "User-Id"));
        key_names_.emplace_back(property(msg[1], "X-Key-Name"));
      }
      zmq::send_multipart(socket_, msg, zmq::send_flags::dontwait);
    }
  }
  static zmq::socket_t configured(zmq::context_t& ctx, const zmqkit::socket_options& opts) {
    zmq::socket_t s(ctx, zmq::socket_type::router);
    zmqkit::apply(s, opts);
    return s;
  }
  static std::string property(zmq::message_t& m, const char* name) {
    try {
      return m.gets(name);
    } catch (const zmq::error_t&) {
      return "";  // no such property
    }
  }

  zmq::socket_t socket_;
  zmqkit::handshake_monitor monitor_;
  std::string endpoint_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> received_{0};
  std::mutex mutex_;
  std::vector<std::string> user_ids_, key_names_;
};

// One request from a fresh DEALER configured with `opts`. Returns: the echoed
// body, or nullopt when no reply came within `timeout`.
inline std::optional<std::string> echo_request(zmq::context_t& ctx, const std::string& endpoint,
                                               const zmqkit::socket_options& opts, const std::string& body,
                                               std::chrono::milliseconds timeout = 2000ms) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  zmqkit::apply(s, opts);
  s.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
  s.set(zmq::sockopt::sndtimeo, static_cast<int>(timeout.count()));
  s.set(zmq::sockopt::linger, 0);
  s.connect(endpoint);
  if (!s.send(zmq::buffer(body), zmq::send_flags::none)) return std::nullopt;
  zmq::message_t reply;
  if (!s.recv(reply)) return std::nullopt;
  return reply.to_string();
}

}  // namespace zmqkit::test
