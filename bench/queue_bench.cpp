// The queue device against raw zmq::proxy (ROUTER/DEALER) doing the same work
// in the same run: 4 clients x 100 requests in flight x 4 workers, 64-byte
// bodies in ZMK/1 envelopes, over tcp loopback; window-1 latency; and the
// device's RSS holding 100 k pending 64-byte requests. Device workers announce
// a capacity (READY {"capacity": n}): 32, and 1 (Paranoid Pirate) for comparison.
//
// usage: queue_bench [requests per client, default 25000] [capacity, default 32]
//        queue_bench throughput|latency REQUESTS_PER_CLIENT IN_FLIGHT
//   CSV rows for bench/plot.py, 4 clients x IN_FLIGHT x 4 workers, the device (capacity
//   32) beside raw zmq::proxy: "throughput,<system>,<in flight>,<req/s>" (best of three),
//   or "latency_us,<system>,<in flight>,<us>" for every request of one run.
//        queue_bench profile [requests per client, default 2000]
//   one raw zmq::proxy run and one device run (capacity 32), nothing else, for
//   bench/callgrind_queue.sh to count the instructions each forwarding thread spends per request.
//        queue_bench store [requests per client, default 5000] [store directory, default /tmp]
//   the device with --store at each sync policy beside the device without one, in
//   the same run (ratios), and the recovery time after SIGKILL with 100 k stored requests.
//        queue_bench durable REQUESTS_PER_CLIENT STORE_BASE_DIRECTORY
//   CSV rows for bench/durable_vs_rabbitmq.py: producers with stored-acknowledgements, at each
//   sync policy and without a store ("durable,<system>,<req/s>"; see durable_point()).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <msgpack.hpp>
#include <string_view>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/queue/device.hpp>

#include "bench_util.hpp"

using namespace std::chrono_literals;
using zmqkit::bench::bench_clock;

namespace {

constexpr int clients = 4;
constexpr int workers = 4;
constexpr int window = 100;

// `stored_ack`: each asks the device for a stored-acknowledgement (zmk.ack: "stored").
std::vector<zmq::message_t> make_requests(std::size_t n, bool stored_ack = false) {
  std::vector<zmq::message_t> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    zmqkit::envelope e = zmqkit::make_envelope("bench.echo");
    e.body.assign(64, 'x');
    std::memcpy(e.body.data(), &i, sizeof i);  // the echo tells the client which request it answers
    if (stored_ack) e.headers.emplace(zmqkit::header::ack, "stored");
    out.push_back(zmqkit::encode(e));
  }
  return out;
}

// Sends READY: bare for capacity 1 (Paranoid Pirate) serving every type, else
// the map form (with `prefix` when not empty: the worker serves only those types).
void send_ready(zmq::socket_t& s, std::uint32_t capacity, const std::string& prefix = {}) {
  if (capacity <= 1 && prefix.empty()) {
    s.send(zmq::buffer("\x01", 1));
    return;
  }
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(prefix.empty() ? 1 : 2);
  pk.pack(std::string("capacity"));
  pk.pack(capacity);
  if (!prefix.empty()) {
    pk.pack(std::string("prefixes"));
    pk.pack(std::vector<std::string>{prefix});
  }
  s.send(zmq::buffer("\x01", 1), zmq::send_flags::sndmore);
  s.send(zmq::buffer(b.data(), b.size()));
}

// An echo worker: READY (for the device) and heartbeats, then echoes every
// request in arrival order. capacity 0: no device protocol (raw proxy).
void worker(zmq::context_t& ctx, const std::string& endpoint, std::uint32_t capacity,
            std::atomic<bool>& stop, const std::string& prefix = {}) {
  const bool device_protocol = capacity > 0;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(endpoint);
  if (device_protocol) send_ready(s, capacity, prefix);
  auto next_heartbeat = bench_clock::now() + 500ms;
  std::vector<zmq::message_t> frames;
  while (!stop) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 50ms);
    while (item.revents & ZMQ_POLLIN) {
      frames.clear();
      if (!zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
      if (frames.size() < 3) continue;  // a heartbeat
      zmq::send_multipart(s, frames);
    }
    if (device_protocol && bench_clock::now() >= next_heartbeat) {
      next_heartbeat = bench_clock::now() + 500ms;
      s.send(zmq::buffer("\x02", 1));
    }
  }
}

// One client: keeps `in_flight` requests outstanding until all are answered.
// With `latencies`, appends each request's round trip in microseconds. `stored_ack`:
// the requests ask for stored-acknowledgements, and a request stops counting against
// the window once stored (a producer's publisher confirm); done when all are acked and answered.
void client(zmq::context_t& ctx, const std::string& endpoint, std::vector<zmq::message_t>& requests,
            int in_flight, std::vector<double>* latencies, bool stored_ack) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, 5000);
  s.connect(endpoint);
  std::size_t sent = 0, received = 0, acked = 0;
  auto window_open = [&] {
    return sent < requests.size() && sent - (stored_ack ? acked : received) < static_cast<std::size_t>(in_flight);
  };
  std::vector<bench_clock::time_point> sent_at(latencies ? requests.size() : 0);
  auto send_next = [&] {
    if (latencies) sent_at[sent] = bench_clock::now();
    s.send(zmq::message_t{}, zmq::send_flags::sndmore);
    s.send(requests[sent++], zmq::send_flags::none);  // moves the frame out: it is sent once
  };
  while (window_open()) send_next();
  std::vector<zmq::message_t> frames;
  while (received < requests.size() || (stored_ack && acked < requests.size())) {
    frames.clear();
    if (!zmq::recv_multipart(s, std::back_inserter(frames))) {
      std::fprintf(stderr, "client: timed out after %zu replies, %zu stored-acks\n", received, acked);
      std::exit(1);
    }
    if (stored_ack && zmqkit::decode_view(frames.back()).type == zmqkit::stored_type) {
      ++acked;
      while (window_open()) send_next();
      continue;
    }
    ++received;
    if (latencies) {
      const auto now = bench_clock::now();
      const std::string_view body = zmqkit::decode_view(frames.back()).body;
      std::size_t i = 0;
      std::memcpy(&i, body.data(), sizeof i);  // the workers echo the request's body
      latencies->push_back(std::chrono::duration<double, std::micro>(now - sent_at.at(i)).count());
    }
    while (window_open()) send_next();
  }
}

struct run_result {
  double per_second = 0;
  double mean_latency_us = 0;
  std::vector<double> latencies_us;  // every request's, when asked for
};

// Runs clients x per_client requests through `frontend` with workers on `backend`.
// Workers announce `capacity` (0: no device protocol) and serve the types starting
// with `prefix` (empty: every type). `timed`: record every latency. `stored_ack`: see client().
run_result run(zmq::context_t& ctx, const std::string& frontend, const std::string& backend,
               std::uint32_t capacity, std::size_t per_client, int in_flight, int client_count, bool timed,
               const std::string& prefix = {}, bool stored_ack = false) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> ws;
  for (int i = 0; i < workers; ++i) ws.emplace_back([&] { worker(ctx, backend, capacity, stop, prefix); });
  std::this_thread::sleep_for(200ms);  // let workers connect (and READY) before timing
  std::vector<std::vector<zmq::message_t>> reqs;
  for (int i = 0; i < client_count; ++i) reqs.push_back(make_requests(per_client, stored_ack));
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(client_count));
  const auto start = bench_clock::now();
  std::vector<std::thread> cs;
  for (int i = 0; i < client_count; ++i)
    cs.emplace_back([&, i] {
      client(ctx, frontend, reqs[static_cast<std::size_t>(i)], in_flight,
             timed ? &lat[static_cast<std::size_t>(i)] : nullptr, stored_ack);
    });
  for (auto& t : cs) t.join();
  const double secs = std::chrono::duration<double>(bench_clock::now() - start).count();
  stop = true;
  for (auto& t : ws) t.join();
  run_result r;
  r.per_second = static_cast<double>(per_client * static_cast<std::size_t>(client_count)) / secs;
  for (auto& l : lat) r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  double sum = 0;
  for (double v : r.latencies_us) sum += v;
  r.mean_latency_us = r.latencies_us.empty() ? 0 : sum / static_cast<double>(r.latencies_us.size());
  return r;
}

// `waiting_types`: first queue one request for each of that many distinct types
// nobody serves (they wait for the whole run): what a backlog of many types costs
// the device thread per tick shows in everybody else's latency. `tune` adjusts
// the device's options (the store runs); `stored_ack`: see client().
run_result through_device(std::size_t per_client, int in_flight, int client_count, std::uint32_t capacity,
                          bool timed = false, std::size_t waiting_types = 0,
                          const std::function<void(zmqkit::queue::device_options&)>& tune = {},
                          bool stored_ack = false) {
  zmq::context_t ctx;
  zmqkit::queue::device_options o{.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*"};
  if (waiting_types) {
    o.max_pending = waiting_types + 1000;
    o.no_service = std::chrono::hours(1);
  }
  if (tune) tune(o);
  zmqkit::queue::device dev(ctx, o);
  std::thread t([&] { dev.run(); });
  zmq::socket_t backlog(ctx, zmq::socket_type::dealer);
  backlog.set(zmq::sockopt::linger, 0);
  backlog.connect(dev.frontend_endpoint());
  for (std::size_t i = 0; i < waiting_types; ++i) {
    zmqkit::envelope e = zmqkit::make_envelope("unserved." + std::to_string(i));
    backlog.send(zmq::message_t{}, zmq::send_flags::sndmore);
    backlog.send(zmqkit::encode(e), zmq::send_flags::none);
  }
  while (dev.stats().pending < waiting_types) std::this_thread::sleep_for(10ms);
  // With a backlog, workers serve only the benchmark's own type ("bench.echo").
  auto r = run(ctx, dev.frontend_endpoint(), dev.backend_endpoint(), capacity, per_client, in_flight,
               client_count, timed, waiting_types ? "bench." : "", stored_ack);
  dev.stop();
  t.join();
  return r;
}

run_result through_proxy(std::size_t per_client, int in_flight, int client_count, bool timed = false) {
  zmq::context_t ctx;
  zmq::socket_t front(ctx, zmq::socket_type::router), back(ctx, zmq::socket_type::dealer);
  front.bind("tcp://127.0.0.1:*");
  back.bind("tcp://127.0.0.1:*");
  const std::string fe = front.get(zmq::sockopt::last_endpoint), be = back.get(zmq::sockopt::last_endpoint);
  zmq::socket_t control(ctx, zmq::socket_type::pair), control_peer(ctx, zmq::socket_type::pair);
  control.bind("inproc://queue-bench-control");
  control_peer.connect("inproc://queue-bench-control");
  std::thread t([&] { zmq::proxy_steerable(front, back, zmq::socket_ref(), control); });
  auto r = run(ctx, fe, be, 0, per_client, in_flight, client_count, timed);
  control_peer.send(zmq::buffer(std::string("TERMINATE")));
  t.join();
  return r;
}

// The ZeroMQ guide's load-balancing broker in raw libzmq: the same one request
// per worker at a time as the device, without priority, TTL, heartbeats or
// dedup. It shows what the device's own bookkeeping costs.
run_result through_raw_lru(std::size_t per_client, int in_flight, int client_count) {
  zmq::context_t ctx;
  zmq::socket_t front(ctx, zmq::socket_type::router), back(ctx, zmq::socket_type::router);
  front.bind("tcp://127.0.0.1:*");
  back.bind("tcp://127.0.0.1:*");
  const std::string fe = front.get(zmq::sockopt::last_endpoint), be = back.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> stop{false};
  std::thread t([&] {
    std::deque<zmq::message_t> ready;
    std::vector<zmq::message_t> frames;
    while (!stop) {
      zmq::pollitem_t items[] = {{back.handle(), 0, ZMQ_POLLIN, 0}, {front.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, ready.empty() ? 1 : 2, 50ms);
      if (items[0].revents & ZMQ_POLLIN) {
        frames.clear();
        zmq::recv_multipart(back, std::back_inserter(frames));
        if (frames.size() == 2 && frames[1].size() == 1 && *frames[1].data<char>() == 0x02) continue;
        ready.push_back(std::move(frames[0]));
        if (frames.size() > 2) {
          frames.erase(frames.begin());
          zmq::send_multipart(front, frames);
        }
      }
      if (!ready.empty() && (items[1].revents & ZMQ_POLLIN)) {
        frames.clear();
        zmq::recv_multipart(front, std::back_inserter(frames));
        frames.insert(frames.begin(), std::move(ready.front()));
        ready.pop_front();
        zmq::send_multipart(back, frames);
      }
    }
  });
  auto r = run(ctx, fe, be, 1, per_client, in_flight, client_count, false);
  stop = true;
  t.join();
  return r;
}

// A through_device() tune: a fresh store in `dir` with that sync policy.
std::function<void(zmqkit::queue::device_options&)> fresh_store(const std::string& dir,
                                                                 zmqkit::queue::store_sync sync) {
  return [dir, sync](zmqkit::queue::device_options& o) {
    std::filesystem::remove_all(dir);
    o.store = dir;
    o.store_sync_policy = sync;
  };
}

// A sync per request is disk-bound (~10 ms per request here): a fiftieth of the requests keeps it short.
std::size_t synced_requests(std::size_t per_client) { return std::max<std::size_t>(per_client / 50, 50); }

long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

}  // namespace

// One point of the sweep bench/plot.py draws (it owns the loop, so that the peer systems
// are measured point by point beside these): CSV rows, header-less.
int plot_point(std::string_view kind, std::size_t per_client, int in_flight) {
  if (per_client == 0 || in_flight < 1) {
    std::fprintf(stderr, "queue_bench: %.*s needs REQUESTS_PER_CLIENT >= 1 and IN_FLIGHT >= 1\n",
                 static_cast<int>(kind.size()), kind.data());
    return 2;
  }
  if (kind == "throughput") {
    double dev = 0, raw = 0;
    for (int round = 0; round < 3; ++round) {
      raw = std::max(raw, through_proxy(per_client, in_flight, clients).per_second);
      dev = std::max(dev, through_device(per_client, in_flight, clients, 32).per_second);
    }
    std::printf("throughput,device,%d,%.0f\nthroughput,proxy,%d,%.0f\n", in_flight, dev, in_flight, raw);
    return 0;
  }
  const auto dev = through_device(per_client, in_flight, clients, 32, true);
  const auto raw = through_proxy(per_client, in_flight, clients, true);
  for (double us : dev.latencies_us) std::printf("latency_us,device,%d,%.1f\n", in_flight, us);
  for (double us : raw.latencies_us) std::printf("latency_us,proxy,%d,%.1f\n", in_flight, us);
  return 0;
}

// Durability's price: the device with a store at each sync policy beside the device
// without one (best of three each, alternated), then the time a device takes to
// start on a store holding 100 k requests left by a SIGKILLed one.
int store_bench(std::size_t per_client, const std::string& base) {
  using zmqkit::queue::store_sync;
  const std::string dir = base + "/zmqkit-queue-bench-store-" + std::to_string(::getpid());
  // Recovery first, in a clean process: a child fills a store, is SIGKILLed; we time the restart.
  constexpr int stored = 100000;
  std::filesystem::remove_all(dir);
  const std::string front = "ipc://" + dir + "-front";
  const pid_t child = ::fork();
  if (child == 0) {
    zmq::context_t ctx;
    zmqkit::queue::device dev(ctx, {.frontend = front, .backend = "ipc://" + dir + "-back",
                                    .max_pending = stored, .max_pending_per_type = stored,
                                    .no_service = std::chrono::hours(1), .store = dir,
                                    .store_sync_policy = store_sync::batch});
    dev.run();
    std::_Exit(0);
  }
  {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::rcvtimeo, 10000);
    s.connect(front);
    int acked = 0;
    std::vector<zmq::message_t> frames;
    for (int sent = 0; acked < stored;) {
      for (; sent < stored && sent - acked < 500; ++sent) {
        zmqkit::envelope e = zmqkit::make_envelope("bench.stored");
        e.body.assign(64, 'x');
        e.headers.emplace(zmqkit::header::ack, "stored");
        s.send(zmq::message_t{}, zmq::send_flags::sndmore);
        s.send(zmqkit::encode(e), zmq::send_flags::none);
      }
      frames.clear();
      if (!zmq::recv_multipart(s, std::back_inserter(frames))) {
        std::fprintf(stderr, "queue_bench: no stored-ack after %d\n", acked);
        ::kill(child, SIGKILL);
        return 1;
      }
      ++acked;
    }
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  {
    zmq::context_t ctx;
    const auto start = bench_clock::now();
    zmqkit::queue::device dev(ctx, {.frontend = "tcp://127.0.0.1:*", .backend = "tcp://127.0.0.1:*",
                                    .max_pending = stored, .max_pending_per_type = stored,
                                    .no_service = std::chrono::hours(1), .store = dir});
    const double ms = std::chrono::duration<double, std::milli>(bench_clock::now() - start).count();
    std::printf("%-44s %.0f ms (%zu requests queued again, %.1f MB store)\n",
                "recovery after SIGKILL, 100 k stored requests", ms, static_cast<std::size_t>(dev.stats().recovered),
                static_cast<double>(dev.stats().store_bytes) / 1e6);
  }
  double none = 0, always = 0, batch = 0, unsynced = 0;
  const std::size_t synced_per_client = synced_requests(per_client);
  for (int round = 0; round < 3; ++round) {
    none = std::max(none, through_device(per_client, window, clients, 32).per_second);
    always = std::max(always, through_device(synced_per_client, window, clients, 32, false, 0, fresh_store(dir, store_sync::always)).per_second);
    batch = std::max(batch, through_device(per_client, window, clients, 32, false, 0, fresh_store(dir, store_sync::batch)).per_second);
    unsynced = std::max(unsynced, through_device(per_client, window, clients, 32, false, 0, fresh_store(dir, store_sync::none)).per_second);
  }
  std::filesystem::remove_all(dir);
  std::printf("store on %s; baseline: the device without a store, same run\n", base.c_str());
  zmqkit::bench::report("--store --store-sync always", "req/s", always, none, 0.0005, true);
  zmqkit::bench::report("--store --store-sync batch", "req/s", batch, none, 0.3, true);
  zmqkit::bench::report("--store --store-sync none", "req/s", unsynced, none, 0.3, true);
  return 0;
}

// The durable work bench/durable_vs_rabbitmq.py runs beside RabbitMQ's (durable queue,
// persistent messages, publisher confirms): 4 producers each keeping 100 requests that ask for
// stored-acknowledgements outstanding (a slot frees at the ack), 4 workers of capacity 32
// replying, at each sync policy, and without a store (plain request/reply, window 100). One
// run each, CSV rows "durable,<system>,<requests completed by workers per second>".
int durable_point(std::size_t per_client, const std::string& base) {
  using zmqkit::queue::store_sync;
  if (per_client == 0) {
    std::fprintf(stderr, "queue_bench: durable needs REQUESTS_PER_CLIENT >= 1\n");
    return 2;
  }
  const std::string dir = base + "/zmqkit-queue-bench-durable-" + std::to_string(::getpid());
  auto stored = [&](std::size_t n, store_sync sync) {
    return through_device(n, window, clients, 32, false, 0, fresh_store(dir, sync), true).per_second;
  };
  std::printf("durable,device-no-store,%.0f\n", through_device(per_client, window, clients, 32).per_second);
  std::printf("durable,device-always,%.0f\n", stored(synced_requests(per_client), store_sync::always));
  std::printf("durable,device-batch,%.0f\n", stored(per_client, store_sync::batch));
  std::printf("durable,device-none,%.0f\n", stored(per_client, store_sync::none));
  std::filesystem::remove_all(dir);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "profile") {
    const std::size_t n = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 2000;
    through_proxy(n, window, clients);
    through_device(n, window, clients, 32);
    std::printf("requests %zu\n", n * clients);
    return 0;
  }
  if (argc == 4 && (std::string_view(argv[1]) == "throughput" || std::string_view(argv[1]) == "latency"))
    return plot_point(argv[1], std::strtoul(argv[2], nullptr, 10), std::atoi(argv[3]));
  if (argc == 4 && std::string_view(argv[1]) == "durable")
    return durable_point(std::strtoul(argv[2], nullptr, 10), argv[3]);
  if (argc > 1 && std::string_view(argv[1]) == "store")
    return store_bench(argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 5000, argc > 3 ? argv[3] : "/tmp");
  const std::size_t per_client = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 25000;
  const auto capacity = static_cast<std::uint32_t>(argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 32);
  if (capacity < 1 || capacity > 1024) {
    std::fprintf(stderr, "queue_bench: capacity must be 1..1024\n");
    return 2;
  }
  std::printf(
      "queue_bench: %d clients x %d in flight x %d workers, 64-byte bodies (ZMK/1), tcp loopback, %zu "
      "requests per client, device workers of capacity %u and 1\n",
      clients, window, workers, per_client, capacity);

  // RSS with 100 k pending 64-byte requests (no workers): first, in a clean process.
  {
    zmq::context_t ctx;
    const long before = rss_kb();
    zmqkit::queue::device dev(ctx, {.frontend = "tcp://127.0.0.1:*",
                                    .backend = "tcp://127.0.0.1:*",
                                    .max_pending_per_type = 100000,  // all of one type
                                    .no_service = std::chrono::hours(1)});
    std::thread t([&] { dev.run(); });
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.connect(dev.frontend_endpoint());
    for (int i = 0; i < 100000; ++i) {
      zmqkit::envelope e = zmqkit::make_envelope("bench.pending");
      e.body.assign(64, 'x');
      s.send(zmq::message_t{}, zmq::send_flags::sndmore);
      s.send(zmqkit::encode(e), zmq::send_flags::none);
    }
    while (dev.stats().pending < 100000) std::this_thread::sleep_for(10ms);
    const long after = rss_kb();
    std::printf("%-44s RSS %.1f MB (process %.1f MB, before %.1f MB; target <= 100 MB) %s\n",
                "100 k pending 64-byte requests", static_cast<double>(after - before) / 1024.0,
                static_cast<double>(after) / 1024.0, static_cast<double>(before) / 1024.0,
                after / 1024.0 <= 100 ? "ok" : "MISSED");
    dev.stop();
    t.join();
  }
  // Alternate them, best of five each, so none gets a quieter machine.
  double dev_tput = 0, dev1_tput = 0, raw_tput = 0, lru_tput = 0, dev_lat = 1e18, raw_lat = 1e18;
  // The one-at-a-time runs are 10x slower: a quarter of the requests keeps them short.
  const std::size_t slow_per_client = std::max<std::size_t>(per_client / 4, 1000);
  for (int round = 0; round < 5; ++round) {
    raw_tput = std::max(raw_tput, through_proxy(per_client, window, clients).per_second);
    dev_tput = std::max(dev_tput, through_device(per_client, window, clients, capacity).per_second);
    dev1_tput = std::max(dev1_tput, through_device(slow_per_client, window, clients, 1).per_second);
    lru_tput = std::max(lru_tput, through_raw_lru(slow_per_client, window, clients).per_second);
  }
  const std::string cap = "capacity " + std::to_string(capacity);
  zmqkit::bench::report("throughput, 4x100 in flight x 4 workers, " + cap, "req/s", dev_tput, raw_tput, 0.8,
                        true);
  zmqkit::bench::report("  same, workers of capacity 1", "req/s", dev1_tput, raw_tput, 0.8, true);
  zmqkit::bench::report("  capacity 1 vs raw guide LRU broker", "req/s", dev1_tput, lru_tput, 0.8, true);
  const std::size_t latency_requests = std::max<std::size_t>(per_client / 5, 1000);
  double dev1_lat = 1e18;
  for (int round = 0; round < 5; ++round) {
    raw_lat = std::min(raw_lat, through_proxy(latency_requests, 1, 1, true).mean_latency_us);
    dev_lat = std::min(dev_lat, through_device(latency_requests, 1, 1, capacity, true).mean_latency_us);
    dev1_lat = std::min(dev1_lat, through_device(latency_requests, 1, 1, 1, true).mean_latency_us);
  }
  zmqkit::bench::report("window-1 mean latency, 1 client x 4 workers, " + cap, "us", dev_lat, raw_lat, 1.1,
                        false);
  zmqkit::bench::report("  same, workers of capacity 1", "us", dev1_lat, raw_lat, 1.1, false);
  double many_lat = 1e18;
  for (int round = 0; round < 3; ++round)
    many_lat = std::min(many_lat, through_device(latency_requests, 1, 1, capacity, true, 70000).mean_latency_us);
  zmqkit::bench::report("  same, while 70 000 other types wait", "us", many_lat, raw_lat, 1.1, false);

  return 0;
}
