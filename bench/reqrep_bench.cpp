// reqrep_bench: direct client <-> server round trips over tcp loopback, beside
// raw REQ/REP and raw DEALER/ROUTER echo doing the same in the same run.
//
//   reqrep_bench [round_trips=20000] [throughput_requests=100000] [window=32]
//
// Latency: one request at a time, p50/p99 of the round trip. Throughput: `window`
// requests in flight (raw REQ/REP: `window` REQ sockets polled together).
// Targets: zmqkit p50 <= 1.1 x raw REQ/REP; zmqkit throughput >= 0.8 x raw.
// Each measurement runs five times, interleaved; the median is reported.
#include <cstdlib>
#include <string>
#include <thread>
#include <zmq_addon.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/server.hpp>

#include "bench_util.hpp"

using namespace std::chrono_literals;
using namespace zmqkit::bench;

namespace {

const std::string payload(64, 'x');

struct figures {
  double p50_us = 0, p99_us = 0, per_second = 0;
};

double micros(bench_clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// --- raw REQ/REP ----------------------------------------------------------------

figures raw_reqrep(zmq::context_t& ctx, int round_trips, int total, int window) {
  zmq::socket_t rep(ctx, zmq::socket_type::rep);
  rep.set(zmq::sockopt::linger, 0);
  rep.bind("tcp://127.0.0.1:*");
  const std::string ep = rep.get(zmq::sockopt::last_endpoint);
  std::jthread server([&](std::stop_token st) {
    zmq::pollitem_t item{rep.handle(), 0, ZMQ_POLLIN, 0};
    while (!st.stop_requested()) {
      if (zmq::poll(&item, 1, 50ms) == 0) continue;
      zmq::message_t m;
      (void)rep.recv(m);
      rep.send(m, zmq::send_flags::none);
    }
  });
  figures f;
  {
    zmq::socket_t req(ctx, zmq::socket_type::req);
    req.set(zmq::sockopt::linger, 0);
    req.connect(ep);
    std::vector<double> samples;
    for (int i = -1000; i < round_trips; ++i) {
      const auto t0 = bench_clock::now();
      req.send(zmq::buffer(payload));
      zmq::message_t m;
      (void)req.recv(m);
      if (i >= 0) samples.push_back(micros(bench_clock::now() - t0));
    }
    f.p50_us = percentile(samples, 50);
    f.p99_us = percentile(samples, 99);
  }
  std::vector<zmq::socket_t> reqs;
  std::vector<zmq::pollitem_t> items;
  for (int i = 0; i < window; ++i) {
    reqs.emplace_back(ctx, zmq::socket_type::req).set(zmq::sockopt::linger, 0);
    reqs.back().connect(ep);
  }
  for (auto& s : reqs) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
  const auto t0 = bench_clock::now();
  int sent = 0, done = 0;
  for (auto& s : reqs) s.send(zmq::buffer(payload)), ++sent;
  while (done < total) {
    zmq::poll(items.data(), items.size(), 1000ms);
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!(items[i].revents & ZMQ_POLLIN)) continue;
      zmq::message_t m;
      (void)reqs[i].recv(m);
      ++done;
      if (sent < total) reqs[i].send(zmq::buffer(payload)), ++sent;
    }
  }
  f.per_second = total / std::chrono::duration<double>(bench_clock::now() - t0).count();
  return f;
}

// --- raw DEALER/ROUTER ------------------------------------------------------------

figures raw_dealer_router(zmq::context_t& ctx, int round_trips, int total, int window) {
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string ep = router.get(zmq::sockopt::last_endpoint);
  std::jthread server([&](std::stop_token st) {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    std::vector<zmq::message_t> frames;
    while (!st.stop_requested()) {
      if (zmq::poll(&item, 1, 50ms) == 0) continue;
      while (true) {
        frames.clear();
        if (!zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
        zmq::send_multipart(router, frames);
      }
    }
  });
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(ep);
  auto send = [&] {
    dealer.send(zmq::message_t(), zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(payload));
  };
  std::vector<zmq::message_t> frames;
  auto recv = [&] {
    frames.clear();
    (void)zmq::recv_multipart(dealer, std::back_inserter(frames));
  };
  figures f;
  std::vector<double> samples;
  for (int i = -1000; i < round_trips; ++i) {
    const auto t0 = bench_clock::now();
    send();
    recv();
    if (i >= 0) samples.push_back(micros(bench_clock::now() - t0));
  }
  f.p50_us = percentile(samples, 50);
  f.p99_us = percentile(samples, 99);
  const auto t0 = bench_clock::now();
  int sent = 0, done = 0;
  for (; sent < window; ++sent) send();
  while (done < total) {
    recv();
    ++done;
    if (sent < total) send(), ++sent;
  }
  f.per_second = total / std::chrono::duration<double>(bench_clock::now() - t0).count();
  return f;
}

// --- zmqkit client/server -----------------------------------------------------------

figures zmqkit_reqrep(zmq::context_t& ctx, int round_trips, int total, int window) {
  zmqkit::reqrep::server srv(ctx, "tcp://127.0.0.1:*", [](const zmqkit::envelope& req) {
    zmqkit::envelope reply = zmqkit::make_reply(req, "bench.echo");
    reply.body = req.body;
    return reply;
  });
  const std::string ep = srv.endpoint();
  std::jthread server([&](std::stop_token st) { srv.run(st); });
  zmqkit::reqrep::client c(ctx, ep, {.retry = {.timeout = 5000ms, .retries = 0}});
  auto make = [] {
    zmqkit::envelope e = zmqkit::make_envelope("bench.echo");
    e.body = payload;
    return e;
  };
  figures f;
  std::vector<double> samples;
  for (int i = -1000; i < round_trips; ++i) {
    const auto t0 = bench_clock::now();
    auto r = c.request(make());
    if (!r) std::abort();
    if (i >= 0) samples.push_back(micros(bench_clock::now() - t0));
  }
  f.p50_us = percentile(samples, 50);
  f.p99_us = percentile(samples, 99);
  const auto t0 = bench_clock::now();
  int sent = 0, done = 0;
  for (; sent < window; ++sent) c.send(make());
  while (done < total) {
    auto d = c.poll(1000ms);
    if (!d) continue;
    if (!d->outcome) std::abort();
    ++done;
    if (sent < total) c.send(make()), ++sent;
  }
  f.per_second = total / std::chrono::duration<double>(bench_clock::now() - t0).count();
  return f;
}

figures median(std::vector<figures> runs) {
  auto pick = [&](double figures::*field) {
    std::vector<double> v;
    for (auto& r : runs) v.push_back(r.*field);
    return percentile(v, 50);
  };
  return {pick(&figures::p50_us), pick(&figures::p99_us), pick(&figures::per_second)};
}

}  // namespace

int main(int argc, char** argv) {
  const int round_trips = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int total = argc > 2 ? std::atoi(argv[2]) : 100000;
  const int window = argc > 3 ? std::atoi(argv[3]) : 32;
  zmq::context_t ctx;
  std::vector<figures> kit, req_rep, dealer_router;
  // REQREP_BENCH_ONLY=raw-req|raw-dealer|zmqkit runs one side alone (for profiling).
  const std::string only = std::getenv("REQREP_BENCH_ONLY") ? std::getenv("REQREP_BENCH_ONLY") : "";
  for (int round = 0; round < 5; ++round) {
    if (only.empty() || only == "raw-req") req_rep.push_back(raw_reqrep(ctx, round_trips, total, window));
    if (only.empty() || only == "raw-dealer")
      dealer_router.push_back(raw_dealer_router(ctx, round_trips, total, window));
    if (only.empty() || only == "zmqkit") kit.push_back(zmqkit_reqrep(ctx, round_trips, total, window));
  }
  if (!only.empty()) {
    for (auto* runs : {&req_rep, &dealer_router, &kit})
      if (!runs->empty()) {
        const figures f = median(*runs);
        std::printf("%s: p50 %.1f us p99 %.1f us throughput %.0f req/s\n", only.c_str(), f.p50_us, f.p99_us,
                    f.per_second);
      }
    return 0;
  }
  const figures k = median(kit), rr = median(req_rep), dr = median(dealer_router);
  std::printf(
      "tcp loopback, %zu-byte body, %d round trips, %d requests with %d in flight, median of 5 runs\n",
      payload.size(), round_trips, total, window);
  report("round trip p50 vs raw REQ/REP", "us", k.p50_us, rr.p50_us, 1.1, false);
  report("round trip p99 vs raw REQ/REP (info)", "us", k.p99_us, rr.p99_us, 1.5, false);
  report("round trip p50 vs raw DEALER/ROUTER (info)", "us", k.p50_us, dr.p50_us, 1.1, false);
  report("throughput vs raw DEALER/ROUTER", "req/s", k.per_second, dr.per_second, 0.8, true);
  report("throughput vs raw REQ/REP sockets", "req/s", k.per_second, rr.per_second, 0.8, true);
  return 0;
}
