// default_context_child: a program that uses zmqkit::default_context() carelessly
// and returns from main. The test runs it and expects it to exit promptly.
//
//   default_context_child ENDPOINT
//
// Sends a request to ENDPOINT (which never answers) from a client in main's
// scope and from one it leaks, then returns with both requests outstanding.
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/socket_options.hpp>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  using namespace std::chrono_literals;
  zmqkit::reqrep::client scoped(zmqkit::default_context(), argv[1]);
  scoped.send(zmqkit::make_envelope("never.answered"));
  // Never destroyed, but reachable from a static, so LeakSanitizer does not count it.
  static auto* leaked = new zmqkit::reqrep::client(zmqkit::default_context(), argv[1]);
  leaked->send(zmqkit::make_envelope("never.answered"));
  scoped.poll(50ms);  // the requests are on the wire (or queued for it)
  return 0;
}
