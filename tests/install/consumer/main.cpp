// Proves an installed zmqkit works: headers found as <zmqkit/...>, library linked,
// an envelope sent over a real socket pair and decoded on the other side.
#include <zmqkit/envelope.hpp>
#include <zmqkit/socket_options.hpp>

#include <iostream>

struct greeting {
  std::string text;
  MSGPACK_DEFINE_MAP(text);
};

int main() {
  zmq::context_t ctx;
  zmq::socket_t out(ctx, zmq::socket_type::pair), in(ctx, zmq::socket_type::pair);
  zmqkit::apply(out, {});
  zmqkit::apply(in, {});
  in.set(zmq::sockopt::rcvtimeo, 2000);
  in.bind("inproc://consumer");
  out.connect("inproc://consumer");
  out.send(zmqkit::encode(zmqkit::make_envelope("hello.world", greeting{"installed"})), zmq::send_flags::none);
  zmq::message_t frame;
  if (!in.recv(frame)) return 1;
  const auto env = zmqkit::decode(frame);
  const bool ok = env.type == "hello.world" && env.body_as<greeting>().text == "installed";
  std::cout << (ok ? "consumer: installed zmqkit works\n" : "consumer: wrong envelope\n");
  return ok ? 0 : 1;
}
