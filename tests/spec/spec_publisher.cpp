// A zmqkit publisher driven line by line from stdin, for the spec's pub/sub conformance peer
// (pubsub_peer.py plays the subscriber, written from docs/protocol.md alone).
//   spec_publisher CONNECT_ENDPOINT SNAPSHOT_BIND_ENDPOINT
// Prints "id <publisher id>" and "snapshot <bound endpoint>", then for each line
//   pub TYPE COUNT [TTL_MS]   publishes COUNT envelopes of TYPE (body: msgpack int 1..COUNT)
// prints "ok <last sequence number>". Exits at end of input.
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <zmqkit/pubsub/publisher.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: spec_publisher CONNECT_ENDPOINT SNAPSHOT_BIND_ENDPOINT\n";
    return 2;
  }
  zmq::context_t ctx;
  zmqkit::pubsub::publisher pub(ctx, {.snapshot_endpoint = argv[2]});
  pub.connect(argv[1]);
  std::cout << "id " << pub.id() << "\nsnapshot " << pub.snapshot_endpoint() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command, type;
    int count = 0;
    long long ttl_ms = 0;
    in >> command >> type >> count >> ttl_ms;
    if (command != "pub" || type.empty() || count < 1) {
      std::cout << "error " << line << std::endl;
      continue;
    }
    std::uint64_t seq = 0;
    for (int i = 1; i <= count; ++i) {
      zmqkit::envelope env = zmqkit::make_envelope(type, i);
      env.ttl = std::chrono::milliseconds(ttl_ms);
      seq = pub.publish(std::move(env));
    }
    std::cout << "ok " << seq << std::endl;
  }
  return 0;
}
