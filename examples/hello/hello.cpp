// The smallest zmqkit program: two processes exchange a typed envelope.
//   hello serve tcp://127.0.0.1:5599     # answers one greeting, then exits
//   hello ask   tcp://127.0.0.1:5599     # sends a greeting, prints the reply
#include <zmqkit/envelope.hpp>
#include <zmqkit/socket_options.hpp>

#include <iostream>

struct greeting {
  std::string name;
  int visits = 0;
  MSGPACK_DEFINE_MAP(name, visits);
};

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: hello serve|ask ENDPOINT\n";
    return 2;
  }
  const std::string mode = argv[1], endpoint = argv[2];
  zmq::context_t ctx;
  zmq::socket_t socket(ctx, mode == "serve" ? zmq::socket_type::rep : zmq::socket_type::req);
  zmqkit::apply(socket, {});
  socket.set(zmq::sockopt::rcvtimeo, 5000);

  if (mode == "serve") {
    socket.bind(endpoint);
    zmq::message_t frame;
    if (!socket.recv(frame)) return 1;
    const zmqkit::envelope request = zmqkit::decode(frame);
    greeting g = request.body_as<greeting>();
    std::cout << "serve: got " << request.type << " from " << g.name << " (id " << request.id.to_string()
              << ")\n";
    ++g.visits;
    socket.send(zmqkit::encode(zmqkit::make_reply(request, "hello.welcome", g)), zmq::send_flags::none);
    return 0;
  }
  socket.connect(endpoint);
  const zmqkit::envelope request = zmqkit::make_envelope("hello.greeting", greeting{"ada", 0});
  socket.send(zmqkit::encode(request), zmq::send_flags::none);
  zmq::message_t frame;
  if (!socket.recv(frame)) {
    std::cerr << "ask: no reply within 5 s\n";
    return 1;
  }
  const zmqkit::envelope reply = zmqkit::decode(frame);
  const greeting g = reply.body_as<greeting>();
  std::cout << "ask: " << reply.type << " for " << g.name << ", visits " << g.visits << ", answers "
            << (reply.correlation_id == request.id ? "my request" : "SOMETHING ELSE") << "\n";
  return reply.correlation_id == request.id ? 0 : 1;
}
