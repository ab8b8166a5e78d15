// zmqkit/poll.hpp — zmq::poll and blocking receives for pattern loops.
//
// A signal that interrupts the wait (EINTR, e.g. the SIGTERM a service is being
// stopped with) counts as "nothing ready" instead of throwing, so the caller's
// loop comes round, sees its stop flag and shuts down cleanly.
#pragma once

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <optional>

namespace zmqkit {

// Returns: the number of ready items; 0 on timeout or when a signal interrupted the wait.
// Throws: zmq::error_t for any other libzmq failure.
int poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout);

// socket.recv(), where a signal interrupting a blocking receive is a timeout too.
// Returns: the message size, or nullopt on timeout (ZMQ_RCVTIMEO), would-block or a signal.
// Throws: zmq::error_t for any other libzmq failure.
std::optional<std::size_t> recv(zmq::socket_t& socket, zmq::message_t& message,
                                zmq::recv_flags flags = zmq::recv_flags::none);

}  // namespace zmqkit
