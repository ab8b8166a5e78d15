// Shared by the fault tests: drive a client against reqrep_test_server with a
// window of requests in flight, and read the server's execution counts.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <zmqkit/reqrep/client.hpp>

namespace zmqkit::test {

inline bool full_run() {
  const char* v = std::getenv("ZMQKIT_FULL");
  return v && std::string(v) == "1";
}

struct load_result {
  std::size_t answered = 0;
  std::size_t failed = 0;
  std::size_t executed_twice = 0;  // replies whose body says the server ran that id more than once
  std::string first_failure;
  double seconds = 0;
};

// Sends `n` requests keeping `window` in flight. `tick` runs after every poll.
inline load_result run_load(reqrep::client& c, std::size_t n, std::size_t window,
                            const std::function<void(std::size_t done)>& tick = {}) {
  load_result r;
  const auto start = std::chrono::steady_clock::now();
  std::size_t sent = 0;
  while (r.answered + r.failed < n) {
    while (sent < n && c.in_flight() < window)
      c.send(make_envelope("test.work", static_cast<std::uint64_t>(sent++)));
    if (auto d = c.poll(std::chrono::milliseconds(100))) {
      if (d->outcome.ok()) {
        ++r.answered;
        if (d->outcome.reply().body_as<int>() != 1) ++r.executed_twice;
      } else {
        if (r.failed++ == 0) r.first_failure = d->outcome.failure().code + ": " + d->outcome.failure().reason;
      }
    }
    if (tick) tick(r.answered + r.failed);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

inline std::map<std::string, std::uint64_t> server_stats(reqrep::client& c) {
  auto r = c.request(make_envelope("test.stats"), {.timeout = std::chrono::milliseconds(500), .retries = 40});
  REQUIRE(r.ok());
  return r.reply().body_as<std::map<std::string, std::uint64_t>>();
}

inline void print_figures(const char* name, std::size_t n, const load_result& r,
                          const reqrep::client_stats& cs, std::map<std::string, std::uint64_t> ss) {
  std::printf(
      "%s: requests %zu answered %zu failed %zu in %.2f s (%.0f req/s)\n"
      "  client: retries %llu failover-resends %llu discarded duplicate/late replies %llu timeouts %llu\n"
      "  server: distinct ids %llu executions %llu duplicate executions %llu cache hits %llu joined %llu\n",
      name, n, r.answered, r.failed, r.seconds, static_cast<double>(n) / r.seconds,
      static_cast<unsigned long long>(cs.retries), static_cast<unsigned long long>(cs.resends),
      static_cast<unsigned long long>(cs.stale), static_cast<unsigned long long>(cs.timeouts),
      static_cast<unsigned long long>(ss["requests"]), static_cast<unsigned long long>(ss["executions"]),
      static_cast<unsigned long long>(ss["duplicates"]), static_cast<unsigned long long>(ss["cache_hits"]),
      static_cast<unsigned long long>(ss["joined"]));
  std::fflush(stdout);
}

}  // namespace zmqkit::test
