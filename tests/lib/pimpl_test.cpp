// The public classes that keep their state behind zmqkit::pimpl declare no
// destructor or moves: check that the implicit ones make them move-only with
// noexcept moves, and that destroying or overwriting one still stops its work.
#include <zmqkit/actor.hpp>
#include <zmqkit/handshake_monitor.hpp>
#include <zmqkit/loop.hpp>
#include <zmqkit/metrics_http.hpp>
#include <zmqkit/pipeline/sink.hpp>
#include <zmqkit/pipeline/ventilator.hpp>
#include <zmqkit/pipeline/worker.hpp>
#include <zmqkit/pubsub/forwarder.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>
#include <zmqkit/queue/device.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/server.hpp>
#include <zmqkit/reqrep/worker.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <type_traits>
#include <utility>

namespace {

template <class T>
constexpr bool move_only = std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T> &&
                           !std::is_copy_constructible_v<T> && !std::is_copy_assignable_v<T>;

static_assert(move_only<zmqkit::actor>);
static_assert(move_only<zmqkit::handshake_monitor>);
static_assert(move_only<zmqkit::metrics_http_server>);
static_assert(move_only<zmqkit::zap_authenticator>);
static_assert(move_only<zmqkit::pipeline::sink>);
static_assert(move_only<zmqkit::pipeline::ventilator>);
static_assert(move_only<zmqkit::pipeline::worker>);
static_assert(move_only<zmqkit::pubsub::forwarder>);
static_assert(move_only<zmqkit::pubsub::publisher>);
static_assert(move_only<zmqkit::pubsub::subscriber>);
static_assert(move_only<zmqkit::queue::device>);
static_assert(move_only<zmqkit::reqrep::client>);
static_assert(move_only<zmqkit::reqrep::server>);
static_assert(move_only<zmqkit::reqrep::worker>);

// What is attached to a loop keeps its address: it moves no more than it copies.
static_assert(!std::is_move_constructible_v<zmqkit::loop> && !std::is_copy_constructible_v<zmqkit::loop>);

// An actor whose loop holds `token` until the loop is destroyed (after its thread is joined).
zmqkit::actor holding(zmq::context_t& ctx, const std::shared_ptr<int>& token) {
  return zmqkit::actor(ctx, [token](zmqkit::loop& l, zmq::socket_t&) { l.every(std::chrono::hours(1), [token] {}); });
}

}  // namespace

TEST_CASE("a moved actor keeps running; the one it replaces is stopped and freed") {
  zmq::context_t ctx;
  auto first = std::make_shared<int>(1), second = std::make_shared<int>(2);
  zmqkit::actor a = holding(ctx, first);
  zmqkit::actor b = holding(ctx, second);
  zmqkit::actor moved = std::move(a);  // `a` is now empty: destroying it does nothing
  CHECK(first.use_count() > 1);
  moved = std::move(b);
  CHECK(first.use_count() == 1);
  CHECK(second.use_count() > 1);
  moved.stop();
}
