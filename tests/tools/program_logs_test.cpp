// What zmqkit-queue and zmqkit-forwarder tell their operator: the worker a log
// line is about, whether CURVE is on, and where they listen by default.
#include <doctest/doctest.h>

#include <support/sockets.hpp>
#include <support/temp_dir.hpp>
#include <zmqkit/keys.hpp>

#include "programs.hpp"

using namespace zmqkit::test;

TEST_CASE("zmqkit-queue names the worker it removes as unreachable") {
  // Issue 12: "worker unreachable, removed" did not say which worker.
  // A patient device (20 missed heartbeats) so the gone worker is found by a failed send, not by silence.
  queue_process queue({"--liveness", "20"});
  {
    zmq::context_t ctx;
    auto worker = test_socket(ctx, zmq::socket_type::dealer);
    worker.set(zmq::sockopt::routing_id, "grader-7");
    worker.connect(queue.backend);
    REQUIRE(worker.send(zmq::buffer(std::string_view("\x01", 1))));  // READY
    REQUIRE(wait_until([&] { return has_line(scrape(queue.metrics_port).body, "zmqkit_queue_workers_ready 1"); },
                       10s));
  }  // gone without DISCONNECT: the next heartbeat to it fails
  REQUIRE(queue.process.wait_for_stderr(
      [](const std::string& err) { return err.find("unreachable, removed") != std::string::npos; }));
  const std::string err = queue.process.err();
  const auto line_start = err.rfind('\n', err.find("unreachable, removed"));
  const std::string line = err.substr(line_start + 1, err.find('\n', line_start + 1) - line_start - 1);
  CHECK_MESSAGE(line.find("grader-7") != std::string::npos, line);
}

TEST_CASE("zmqkit-queue's start-up log says CURVE is on, with which key and how many client keys") {
  // Issue 12: the start-up log of a CURVE device said neither.
  temp_dir dir;
  const auto server = zmqkit::generate_keypair();
  zmqkit::save_keypair(server, dir / "queue");
  std::filesystem::create_directory(dir / "clients");
  for (const char* name : {"a", "b", "c"})
    zmqkit::save_public_key(zmqkit::generate_keypair().public_key, dir / "clients" / (std::string(name) + ".pub"));
  queue_process queue({"--frontend-curve-secret", (dir / "queue.key").string(), "--frontend-allow",
                       (dir / "clients").string()});
  const std::string err = queue.process.err();
  CHECK_MESSAGE(err.find("frontend: CURVE on, server public key " + server.public_key) != std::string::npos, err);
  CHECK_MESSAGE(err.find("3 client keys allowed") != std::string::npos, err);
  CHECK_MESSAGE(err.find("backend: CURVE off") != std::string::npos, err);
}

TEST_CASE("zmqkit-forwarder binds loopback by default, like the other programs' examples") {
  // Issue 12: it bound every interface (tcp://*) unless told otherwise.
  piped_process help({ZMQKIT_FORWARDER_BINARY, "--help"});
  REQUIRE(help.wait(15s) == 0);
  CHECK(help.out().find("tcp://127.0.0.1:5559") != std::string::npos);
  CHECK(help.out().find("tcp://127.0.0.1:5560") != std::string::npos);
  CHECK(help.out().find("tcp://*") == std::string::npos);
}
