// Fault test: 10 % random packet loss in both directions between two network
// namespaces (a veth pair; nftables `numgen random mod 10 == 0 drop` on the input
// of each side: the kernel has no netem). The server runs in one namespace as a
// child process; this test's client runs in the other (this thread enters it
// with setns before creating its ZeroMQ context, so the I/O threads live there).
// Skips where `ip netns add` is refused.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <zmqkit/reqrep/client.hpp>

#include "fault_load.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;
using namespace zmqkit;

namespace {

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// Two namespaces joined by a veth pair with 10 % input loss on each side; removed on destruction.
struct lossy_link {
  std::string client_ns, server_ns;
  bool client_made = false, server_made = false, ready = false;
  static constexpr const char* client_ip = "10.231.0.1";
  static constexpr const char* server_ip = "10.231.0.2";

  lossy_link() {
    const std::string pid = std::to_string(::getpid());
    client_ns = "zkrr-c-" + pid;
    server_ns = "zkrr-s-" + pid;
    const std::string vc = "zkrc" + pid, vs = "zkrs" + pid;  // veth names: at most 15 bytes
    if (sh("ip netns add " + client_ns) != 0) return;
    client_made = true;
    if (sh("ip netns add " + server_ns) != 0) return;
    server_made = true;
    const std::string loss =
        "printf 'table inet zkloss {\\n chain input {\\n type filter hook input priority 0; policy accept;\\n"
        " numgen random mod 10 == 0 drop\\n }\\n}\\n' | ip netns exec ";
    ready = sh("ip link add " + vc + " type veth peer name " + vs) == 0 &&
            sh("ip link set " + vc + " netns " + client_ns) == 0 &&
            sh("ip link set " + vs + " netns " + server_ns) == 0 &&
            sh("ip -n " + client_ns + " addr add " + client_ip + "/24 dev " + vc) == 0 &&
            sh("ip -n " + server_ns + " addr add " + server_ip + "/24 dev " + vs) == 0 &&
            sh("ip -n " + client_ns + " link set " + vc + " up") == 0 &&
            sh("ip -n " + server_ns + " link set " + vs + " up") == 0 &&
            sh(loss + client_ns + " nft -f -") == 0 && sh(loss + server_ns + " nft -f -") == 0;
  }
  ~lossy_link() {
    if (client_made) sh("ip netns del " + client_ns);  // takes the veth pair with it
    if (server_made) sh("ip netns del " + server_ns);
  }
};

// Moves the calling thread into a network namespace until destroyed.
struct in_netns {
  int home = -1;
  bool ok = false;
  explicit in_netns(const std::string& name) {
    home = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const int target = ::open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    ok = home >= 0 && target >= 0 && ::setns(target, CLONE_NEWNET) == 0;
    if (target >= 0) ::close(target);
  }
  ~in_netns() {
    if (home >= 0) {
      ::setns(home, CLONE_NEWNET);
      ::close(home);
    }
  }
};

}  // namespace

TEST_CASE("10% packet loss both ways: every request answered, none executed twice, retries used") {
  lossy_link link;
  if (!link.ready) {
    MESSAGE(
        "skipped: cannot set up network namespaces with a veth pair and nftables here (ip netns add "
        "refused?)");
    return;
  }
  test::child_process server({"/bin/ip", "netns", "exec", link.server_ns, ZMQKIT_REQREP_TEST_SERVER,
                              std::string("tcp://") + lossy_link::server_ip + ":5555"});
  const std::size_t n = test::full_run() ? 10000 : 300;
  in_netns inside(link.client_ns);
  REQUIRE(inside.ok);
  {
    zmq::context_t ctx;
    // Shorter than TCP's minimum retransmission timeout (200 ms): a lost segment forces retries.
    reqrep::client c(ctx, std::string("tcp://") + lossy_link::server_ip + ":5555",
                     {.retry = {.timeout = 150ms, .retries = 12, .backoff = 2.0, .max_timeout = 3000ms},
                      .socket = {.linger = 0ms}});
    test::server_stats(c);  // the server is up
    // A small window keeps segments small and many, so the loss hits the run many times.
    const auto result = test::run_load(c, n, test::full_run() ? 16 : 4);
    auto stats = test::server_stats(c);
    test::print_figures("10% loss both ways", n, result, c.stats(), stats);
    CHECK(result.answered == n);
    CHECK(result.failed == 0);
    CHECK(result.first_failure == "");
    CHECK(result.executed_twice == 0);
    CHECK(stats["duplicates"] == 0);
    CHECK(stats["requests"] == n);
    CHECK(stats["executions"] == n);
    CHECK(c.stats().retries > 0);
  }
  server.signal(SIGTERM);
  CHECK(server.wait(5000ms).has_value());
}
