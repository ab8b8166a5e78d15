// Helpers for the reqrep tests: multipart send/receive with deadlines.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <support/sockets.hpp>
#include <vector>
#include <zmq_addon.hpp>

namespace zmqkit::test {

using frames = std::vector<zmq::message_t>;

// Returns: the next multipart message within `timeout`, or nullopt.
inline std::optional<frames> recv_frames(zmq::socket_t& s, std::chrono::milliseconds timeout = 2000ms) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  frames out;
  if (!zmq::recv_multipart(s, std::back_inserter(out), zmq::recv_flags::dontwait)) return std::nullopt;
  return out;
}

inline std::optional<frames> try_recv_frames(zmq::socket_t& s) { return recv_frames(s, 0ms); }

inline void send_frames(zmq::socket_t& s, frames& f) { zmq::send_multipart(s, f); }

inline zmq::message_t copy_of(const zmq::message_t& m) { return zmq::message_t(m.data(), m.size()); }

inline zmq::message_t byte_frame(std::uint8_t b) { return zmq::message_t(&b, 1); }

// Sets a flag a blocked test handler waits on, when the test's scope ends.
struct release_on_exit {
  std::atomic<bool>& flag;
  ~release_on_exit() {
    flag = true;
    flag.notify_all();
  }
};

}  // namespace zmqkit::test
