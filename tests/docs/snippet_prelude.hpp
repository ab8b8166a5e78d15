// Included by every translation unit tests/docs/snippets.py generates from the documentation's
// examples: what an example may use without showing it.
#pragma once

#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/error.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/keys.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/actor.hpp>
#include <zmqkit/message_id.hpp>
#include <zmqkit/metrics.hpp>
#include <zmqkit/metrics_http.hpp>
#include <zmqkit/pipeline/sink.hpp>
#include <zmqkit/pipeline/ventilator.hpp>
#include <zmqkit/pipeline/worker.hpp>
#include <zmqkit/poll.hpp>
#include <zmqkit/pubsub/forwarder.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>
#include <zmqkit/queue/device.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/handler.hpp>
#include <zmqkit/reqrep/server.hpp>
#include <zmqkit/reqrep/timing.hpp>
#include <zmqkit/reqrep/worker.hpp>
#include <zmqkit/socket_options.hpp>
#include <zmqkit/zap_authenticator.hpp>

namespace zmqkit_snippets {

using namespace std::chrono_literals;

// The reader's own code, which examples call but do not show: each accepts anything.
// (Declared in this namespace, they hide ::log from <cmath> in the examples.)
template <class... T>
void log(T&&...) {}
template <class... T>
void use(T&&...) {}
template <class... T>
void handle(T&&...) {}
template <class... T>
void store(T&&...) {}
// Application work that produces a body (any msgpack-packable value will do).
template <class... T>
std::string work(T&&...) {
  return {};
}
inline std::atomic<bool> running{false};  // "while (running)": the reader's stop condition

}  // namespace zmqkit_snippets
