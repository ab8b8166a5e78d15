// Fault-test helpers: a retrying client (raw cppzmq DEALER: window, timeout,
// resend with the same id), worker processes, the shared execution log.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>

namespace zmqkit::test {

inline bool full_run() {
  const char* v = std::getenv("ZMQKIT_FULL");
  return v && std::string(v) == "1";
}

inline std::string temp_path(const std::string& name) {
  return "/tmp/zmqkit-queue-fault-" + std::to_string(::getpid()) + "-" + name;
}

struct client_result {
  std::size_t ok = 0;
  std::map<std::string, std::size_t> failed;  // explicit error replies by code
  std::size_t lost = 0;                       // no answer before the deadline
  std::size_t retries = 0;
  std::size_t duplicate_replies = 0;
};

// Sends `count` requests with up to `window` outstanding; resends a request
// (same id) after `retry` without an answer; gives up on it at `deadline`.
inline client_result run_client(zmq::context_t& ctx, const std::string& frontend, std::size_t count,
                                std::size_t window, std::chrono::milliseconds retry,
                                std::chrono::milliseconds deadline) {
  using clock = std::chrono::steady_clock;
  client_result res;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(frontend);
  struct outstanding {
    zmq::message_t frame;
    clock::time_point sent, first;
  };
  std::unordered_map<message_id, outstanding> out;
  std::set<message_id> done;
  std::size_t next = 0;
  auto send = [&](outstanding& o) {
    s.send(zmq::message_t{}, zmq::send_flags::sndmore);
    s.send(zmq::message_t(o.frame.data(), o.frame.size()), zmq::send_flags::none);
    o.sent = clock::now();
  };
  while (next < count || !out.empty()) {
    while (next < count && out.size() < window) {
      envelope e = make_envelope("fault.job", static_cast<std::uint64_t>(next++));
      auto [it, _] = out.emplace(e.id, outstanding{encode(e), {}, clock::now()});
      send(it->second);
    }
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(20));
    while (item.revents & ZMQ_POLLIN) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      if (frames.size() != 2) continue;
      const envelope reply = decode(frames[1]);
      if (!reply.correlation_id) continue;
      const auto it = out.find(*reply.correlation_id);
      if (it == out.end()) {
        if (done.count(*reply.correlation_id)) ++res.duplicate_replies;
        continue;
      }
      if (reply.is_error())
        ++res.failed[std::string(reply.error_code().value_or("?"))];
      else
        ++res.ok;
      done.insert(it->first);
      out.erase(it);
    }
    const auto now = clock::now();
    for (auto it = out.begin(); it != out.end();) {
      if (now - it->second.first > deadline) {
        ++res.lost;
        it = out.erase(it);
        continue;
      }
      if (now - it->second.sent > retry) {
        ++res.retries;
        send(it->second);
      }
      ++it;
    }
  }
  return res;
}

inline client_result run_clients(zmq::context_t& ctx, const std::string& frontend, int clients,
                                 std::size_t count, std::size_t window, std::chrono::milliseconds retry,
                                 std::chrono::milliseconds deadline) {
  std::vector<client_result> results(static_cast<std::size_t>(clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      results[static_cast<std::size_t>(i)] =
          run_client(ctx, frontend, count / static_cast<std::size_t>(clients), window, retry, deadline);
    });
  for (auto& t : threads) t.join();
  client_result total;
  for (const auto& r : results) {
    total.ok += r.ok;
    total.lost += r.lost;
    total.retries += r.retries;
    total.duplicate_replies += r.duplicate_replies;
    for (const auto& [k, v] : r.failed) total.failed[k] += v;
  }
  return total;
}

// The shared execution log: id -> the pids that received it ('S' records,
// kind = 'S') or completed it ('D' records, kind = 'D'), in order.
inline std::unordered_map<std::string, std::vector<std::string>> read_executions(const std::string& path,
                                                                                 char kind = 'S') {
  std::unordered_map<std::string, std::vector<std::string>> out;
  std::ifstream f(path);
  std::string k, pid, id;
  while (f >> k >> pid >> id)
    if (k.size() == 1 && k[0] == kind) out[id].push_back(pid);
  return out;
}

inline std::string describe(const client_result& r) {
  std::ostringstream o;
  o << "answered " << r.ok << ", failed explicitly " <<
      [&] {
        std::size_t n = 0;
        for (const auto& [k, v] : r.failed) n += v;
        return n;
      }()
    << " (";
  for (const auto& [k, v] : r.failed) o << k << "=" << v << " ";
  o << "), lost " << r.lost << ", client retries " << r.retries << ", duplicate replies "
    << r.duplicate_replies;
  return o.str();
}

}  // namespace zmqkit::test
