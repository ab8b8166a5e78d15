#include <zmqkit/poll.hpp>

#include <cerrno>

namespace zmqkit {

int poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout) {
  try {
    return zmq::poll(items, count, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    throw;
  }
}

std::optional<std::size_t> recv(zmq::socket_t& socket, zmq::message_t& message, zmq::recv_flags flags) {
  try {
    const auto size = socket.recv(message, flags);
    if (!size) return std::nullopt;
    return *size;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return std::nullopt;
    throw;
  }
}

}  // namespace zmqkit
