// Helpers for the pub/sub tests: waiting until a subscription has reached the
// publisher (PUB drops everything sent before that), and raw-socket senders.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <support/sockets.hpp>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

namespace zmqkit::test {

// Sends `frames` as one multipart message.
inline void send_raw(zmq::socket_t& s, const std::vector<std::string>& frames) {
  std::vector<zmq::const_buffer> parts;
  for (const auto& f : frames) parts.push_back(zmq::buffer(f));
  REQUIRE(zmq::send_multipart(s, parts));
}

inline std::string bytes(const zmq::message_t& m) { return m.to_string(); }

// An encoded envelope of `type` as a zmqkit publisher would stamp it.
inline std::string stamped(const std::string& type, const std::string& publisher, const std::string& seq,
                           const clock& clk = clock::real()) {
  envelope env = make_envelope(type, clk);
  env.headers.emplace(header::publisher, publisher);
  env.headers.emplace(header::sequence, seq);
  return bytes(encode(env));
}

// Publishes `type` until every subscriber has received one, then drains the
// extras, so that what is published next reaches all of them.
inline void await_subscription(pubsub::publisher& pub, std::vector<pubsub::subscriber*> subs,
                               const std::string& type) {
  std::vector<bool> got(subs.size(), false);
  const bool all = wait_until([&] {
    pub.publish(make_envelope(type));
    bool done = true;
    for (std::size_t i = 0; i < subs.size(); ++i) {
      if (!got[i]) got[i] = subs[i]->receive(std::chrono::milliseconds(5)).has_value();
      done = done && got[i];
    }
    return done;
  });
  REQUIRE(all);
  for (auto* s : subs)
    while (s->receive(std::chrono::milliseconds(50))) {
    }
}

// As above for a raw PUB socket: sends untracked envelopes (no zmk.pub/zmk.seq),
// which leave gap tracking untouched.
inline void await_subscription(zmq::socket_t& raw_pub, pubsub::subscriber& sub, const std::string& type) {
  const bool got = wait_until([&] {
    send_raw(raw_pub, {type, bytes(encode(make_envelope(type)))});
    return sub.receive(std::chrono::milliseconds(5)).has_value();
  });
  REQUIRE(got);
  while (sub.receive(std::chrono::milliseconds(50))) {
  }
}

}  // namespace zmqkit::test
