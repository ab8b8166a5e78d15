// The zmqkit-queue program: flags, config file, exit codes and signals.
#include <utility>  // support/process.hpp uses std::exchange without including it

// clang-format off
#include "queue_support.hpp"
#include <support/process.hpp>
// clang-format on

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <sys/stat.h>

using namespace zmqkit;
using namespace zmqkit::test;
using namespace std::chrono_literals;

namespace {

const std::string binary = ZMQKIT_QUEUE_BINARY;

struct run_result {
  int exit_code = -1;
  std::string output;
};

// Runs the binary with `args` (shell words) to completion, capturing stdout and stderr.
run_result run(const std::string& args) {
  run_result r;
  FILE* p = ::popen((binary + " " + args + " 2>&1").c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string ipc(const std::string& name) {
  return "ipc:///tmp/zmqkit-queue-test-" + std::to_string(::getpid()) + "-" + name;
}

// Returns: the admin endpoint's stats map, or an empty map on timeout.
std::map<std::string, msgpack::object> admin_stats(zmq::context_t& ctx, const std::string& endpoint,
                                                   msgpack::object_handle& keep) {
  zmq::socket_t a = test_socket(ctx, zmq::socket_type::req);
  a.connect(endpoint);
  a.send(zmq::buffer(std::string("stats")));
  zmq::message_t reply;
  if (!a.recv(reply)) return {};
  keep = msgpack::unpack(static_cast<const char*>(reply.data()), reply.size());
  return keep.get().as<std::map<std::string, msgpack::object>>();
}

std::size_t lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST_CASE("--help and --version exit 0") {
  auto help = run("--help");
  CHECK(help.exit_code == 0);
  for (const char* flag : {"--frontend", "--backend", "--heartbeat-ms", "--liveness", "--max-requeue",
                           "--max-pending", "--reply-cache", "--no-service-ms", "--max-frame-bytes",
                           "--admin", "--config", "--log-level", "--version"})
    CHECK_MESSAGE(help.output.find(flag) != std::string::npos, flag);
  auto version = run("--version");
  CHECK(version.exit_code == 0);
  CHECK(version.output.find('.') != std::string::npos);
}

TEST_CASE("bad flags: a one-line error and exit 2") {
  for (const char* args :
       {"--frontend tcp://127.0.0.1:* --backend tcp://127.0.0.1:* --bogus", "--backend tcp://127.0.0.1:*",
        "--frontend a --backend b --liveness 0", "--frontend a --backend b --heartbeat-ms soon",
        "--frontend a --backend b --log-level loud", "--frontend nowhere --backend tcp://127.0.0.1:*",
        "--config /nonexistent/queue.toml"}) {
    auto r = run(args);
    CHECK_MESSAGE(r.exit_code == 2, args);
    CHECK_MESSAGE(lines(r.output) == 1, args << ": " << r.output);
  }
}

TEST_CASE("SIGTERM and SIGINT: stop, answer what is queued 'unavailable', exit 0") {
  for (int sig : {SIGTERM, SIGINT}) {
    const std::string n = std::to_string(sig);
    const std::string front = ipc("front-" + n), back = ipc("back-" + n), admin = ipc("admin-" + n);
    child_process dev(
        {binary, "--frontend", front, "--backend", back, "--admin", admin, "--log-level", "warn"});
    zmq::context_t ctx;
    raw_client client(ctx, front);
    const envelope e = request("t.nobody");
    client.send(e);
    REQUIRE(wait_until([&] {
      msgpack::object_handle keep;
      auto m = admin_stats(ctx, admin, keep);
      return m.count("pending") && m.at("pending").as<int>() == 1;
    }));
    dev.signal(sig);
    auto got = client.receive_envelope();
    REQUIRE(got);
    CHECK(error_of(got) == "unavailable");
    CHECK(got->correlation_id == e.id);
    auto status = dev.wait(5000ms);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
  }
}

TEST_CASE("--config reads the same keys as the flags") {
  const std::string path = "/tmp/zmqkit-queue-test-" + std::to_string(::getpid()) + ".toml";
  const std::string front = ipc("cfg-front"), back = ipc("cfg-back"), admin = ipc("cfg-admin");
  {
    std::ofstream f(path);
    f << "frontend = \"" << front << "\"\nbackend = \"" << back << "\"\nadmin = \"" << admin
      << "\"\nmax-pending = 1\nlog-level = \"warn\"\n";
  }
  child_process dev({binary, "--config", path});
  zmq::context_t ctx;
  raw_client client(ctx, front);
  client.send(request("t.a"));
  client.send(request("t.b"));
  CHECK(error_of(client.receive_envelope()) == "overloaded");  // max-pending = 1 from the file

  msgpack::object_handle keep;
  auto m = admin_stats(ctx, admin, keep);
  REQUIRE(m.count("pending"));
  CHECK(m.at("pending").as<int>() == 1);
  dev.signal(SIGTERM);
  CHECK(dev.wait(5000ms));
  std::remove(path.c_str());
}

TEST_CASE("negative, overflowing and exponent values exit 2 naming the flag") {
  const std::string endpoints = "--frontend tcp://127.0.0.1:* --backend tcp://127.0.0.1:* ";
  for (const auto& [args, flag] : std::vector<std::pair<std::string, std::string>>{
           {"--reply-cache -1", "--reply-cache"},
           {"--reply-cache 18446744073709551616", "--reply-cache"},
           {"--max-pending 1e23", "--max-pending"},
           {"--max-pending-bytes -5", "--max-pending-bytes"},
           {"--reply-cache-bytes 1.5", "--reply-cache-bytes"},
           {"--max-frame-bytes 0x100000", "--max-frame-bytes"}}) {
    auto r = run(endpoints + args);
    CHECK_MESSAGE(r.exit_code == 2, args);
    CHECK_MESSAGE(r.output.find(flag) != std::string::npos, r.output);
  }
}

TEST_CASE("--config: unknown keys, sections, binary content, bad values, devices and FIFOs exit 2 naming them") {
  const std::string base = "/tmp/zmqkit-queue-test-" + std::to_string(::getpid());
  const std::string endpoints = "frontend = \"tcp://127.0.0.1:*\"\nbackend = \"tcp://127.0.0.1:*\"\n";
  for (const auto& [content, named] : std::vector<std::pair<std::string, std::string>>{
           {endpoints + "max-pendng = 1\n", "max-pendng"},
           {"[queue]\n" + endpoints, "[queue]"},
           {std::string("\x00\xff\xfe\x01binary", 10), ".bad.toml"},
           {endpoints + "reply-cache = -1\n", "reply-cache"},
           {endpoints + "max-pending = 1e23\n", "max-pending"}}) {
    const std::string path = base + ".bad.toml";
    {
      std::ofstream f(path, std::ios::binary);
      f << content;
    }
    auto r = run("--config " + path);
    CHECK_MESSAGE(r.exit_code == 2, content);
    CHECK_MESSAGE(r.output.find(named) != std::string::npos, r.output);
    std::remove(path.c_str());
  }
  auto zero = run("--config /dev/zero");  // main: reads for ever, growing
  CHECK(zero.exit_code == 2);
  CHECK(zero.output.find("/dev/zero") != std::string::npos);
  const std::string fifo = base + ".fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto blocked = run("--config " + fifo);  // main: blocks in open() until a writer comes
  CHECK(blocked.exit_code == 2);
  CHECK(blocked.output.find(fifo) != std::string::npos);
  std::remove(fifo.c_str());
}

TEST_CASE("the effective settings are logged at start") {
  const std::string log = "/tmp/zmqkit-queue-test-" + std::to_string(::getpid()) + ".log";
  const std::string admin = ipc("settings-admin");
  // exec: the shell becomes the device (same PID), its stderr in `log`.
  child_process dev({"/bin/sh", "-c",
                     "exec " + binary + " --frontend " + ipc("settings-front") + " --backend " +
                         ipc("settings-back") + " --admin " + admin + " --max-pending 7 2>" + log});
  zmq::context_t ctx;
  msgpack::object_handle keep;
  REQUIRE(admin_stats(ctx, admin, keep).count("pending"));  // it is up
  dev.signal(SIGTERM);
  REQUIRE(dev.wait(5000ms));
  std::ifstream f(log);
  const std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(out.find("max-pending=7") != std::string::npos);
  CHECK(out.find("max-pending-per-type=10000") != std::string::npos);
  CHECK(out.find("reply-cache-bytes=268435456") != std::string::npos);
  std::remove(log.c_str());
}
