// Pipeline throughput: ventilator → worker → sink over tcp loopback, 64-byte
// bodies, every task and result an envelope encoded and decoded, the sink
// tracking the batch (each id counted once). Beside it, raw PUSH → PULL/PUSH →
// PULL relaying the same count of 64-byte messages through the same topology.
//
// Usage: pipeline_bench [messages=200000] [credit=1000] [kit-only|codec-only|raw-only]
//        pipeline_bench csv [messages=200000]: for bench/plot.py, every round of the three as
//        "throughput,<zmqkit|raw|raw+codec>,<round>,<msg/s>" (header "kind,system,round,value")
// PIPELINE_BENCH_PHASES=1 prints per-thread CPU and context switches.
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <zmqkit/pipeline/sink.hpp>
#include <zmqkit/pipeline/ventilator.hpp>
#include <zmqkit/pipeline/worker.hpp>

#include "bench_util.hpp"

using namespace std::chrono_literals;
using zmqkit::bench::bench_clock;

namespace {

double thread_cpu() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}
// CPU seconds of every thread named `name` in this process (for the phases printout).
double threads_cpu(const std::string& name) {
  double total = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string c;
    std::getline(comm, c);
    if (c != name) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stol(field);
      if (i == 15) stime = std::stol(field);
    }
    total += static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return total;
}
long switches() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_nvcsw + u.ru_nivcsw;
}
double seconds_since(bench_clock::time_point start) {
  return std::chrono::duration<double>(bench_clock::now() - start).count();
}

// Returns: messages per second through ventilator → worker → sink.
double run_zmqkit(std::size_t count, std::size_t credit, std::size_t batch_size = 1000) {
  zmq::context_t ctx;
  zmqkit::pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*", {.max_pending = count});
  zmqkit::pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                              {.ventilator_endpoint = vent.endpoint(), .batch_deadline = 60s});
  const std::string vent_ep = vent.endpoint(), sink_ep = sink.endpoint();
  std::atomic<bool> stop{false};
  std::atomic<double> worker_cpu{0};
  std::atomic<long> worker_switches{0};
  std::thread worker_thread([&] {
    pthread_setname_np(pthread_self(), "kit-worker");
    zmqkit::pipeline::worker w(ctx, vent_ep, sink_ep, {.credit = credit});
    while (!stop) {
      auto task = w.receive(10ms);
      if (!task) continue;
      zmqkit::envelope result = zmqkit::make_reply(*task, "bench.done");
      result.body = std::move(task->body);
      w.send_result(std::move(result));
    }
    worker_cpu = thread_cpu();
    worker_switches = switches();
  });
  while (vent.workers() == 0) vent.poll(1ms);  // the worker is connected before the clock starts

  const std::string body(64, 'x');
  std::atomic<std::size_t> received{0};
  double sink_cpu = 0;
  long sink_switches = 0;
  const auto start = bench_clock::now();
  std::thread sink_thread([&] {
    pthread_setname_np(pthread_self(), "kit-sink");
    while (received < count)
      if (auto r = sink.receive(100ms)) {
        zmqkit::bench::do_not_optimize(r->body.size());
        ++received;
      }
    sink_cpu = thread_cpu();
    sink_switches = switches();
  });
  // Batches of `batch_size` are submitted while earlier ones are on their way,
  // as a service streaming work would; the sink tracks every batch.
  std::size_t next = 0;
  while (next < count) {
    if (vent.pending() < 2 * credit + batch_size) {
      std::vector<zmqkit::envelope> tasks;
      const std::size_t n = std::min(batch_size, count - next);
      tasks.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        zmqkit::envelope t = zmqkit::make_envelope("bench.task");
        t.body = body;
        tasks.push_back(std::move(t));
      }
      if (!vent.submit_batch(std::move(tasks))) std::abort();
      next += n;
      vent.poll(0ms);
    } else {
      vent.poll(1ms);
    }
  }
  while (received < count) vent.poll(1ms);
  sink_thread.join();
  const double elapsed = seconds_since(start);
  stop = true;
  worker_thread.join();
  if (std::getenv("PIPELINE_BENCH_PHASES"))
    std::printf("  context switches: vent %ld sink %ld worker %ld; io thread cpu %.3f s\n", switches(),
                sink_switches, worker_switches.load(), threads_cpu("ZMQbg/IO/0"));
  if (std::getenv("PIPELINE_BENCH_PHASES"))
    std::printf("  vent cpu %.3f s, sink cpu %.3f s, worker cpu %.3f s, wall %.3f s\n", thread_cpu(),
                sink_cpu, worker_cpu.load(), elapsed);
  return static_cast<double>(count) / elapsed;
}

// Returns: messages per second through raw PUSH → PULL/PUSH → PULL; with
// `envelopes`, each stage also does the pattern's envelope work (encode a task,
// decode it, encode a reply, decode that) but nothing else: the codec's share.
double run_raw(std::size_t count, bool envelopes = false) {
  zmq::context_t ctx;
  zmq::socket_t push(ctx, zmq::socket_type::push), sink(ctx, zmq::socket_type::pull);
  push.bind("tcp://127.0.0.1:*");
  sink.bind("tcp://127.0.0.1:*");
  const std::string push_ep = push.get(zmq::sockopt::last_endpoint);
  const std::string sink_ep = sink.get(zmq::sockopt::last_endpoint);
  std::thread worker_thread([&] {
    zmq::socket_t in(ctx, zmq::socket_type::pull), out(ctx, zmq::socket_type::push);
    in.connect(push_ep);
    out.connect(sink_ep);
    for (std::size_t i = 0; i < count; ++i) {
      zmq::message_t msg;
      (void)in.recv(msg);
      if (envelopes) {
        zmqkit::envelope task = zmqkit::decode(msg);
        zmqkit::envelope result = zmqkit::make_reply(task, "bench.done");
        result.body = std::move(task.body);
        out.send(zmqkit::encode(result), zmq::send_flags::none);
      } else {
        out.send(msg, zmq::send_flags::none);
      }
    }
  });
  const std::string body(64, 'x');
  const auto start = bench_clock::now();
  std::thread sink_thread([&] {
    for (std::size_t i = 0; i < count; ++i) {
      zmq::message_t msg;
      (void)sink.recv(msg);
      if (envelopes) zmqkit::bench::do_not_optimize(zmqkit::decode(msg).body.size());
      zmqkit::bench::do_not_optimize(msg.size());
    }
  });
  for (std::size_t i = 0; i < count; ++i) {
    if (envelopes) {
      zmqkit::envelope t = zmqkit::make_envelope("bench.task");
      t.body = body;
      push.send(zmqkit::encode(t), zmq::send_flags::none);
    } else {
      push.send(zmq::buffer(body), zmq::send_flags::none);
    }
  }
  sink_thread.join();
  const double elapsed = seconds_since(start);
  worker_thread.join();
  if (std::getenv("PIPELINE_BENCH_PHASES"))
    std::printf("  raw: main cpu %.3f s, io thread cpu %.3f s, all threads cpu %.3f s, wall %.3f s\n",
                thread_cpu(), threads_cpu("ZMQbg/IO/0"), threads_cpu("pipeline_bench"), elapsed);
  return static_cast<double>(count) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "csv") {
    const std::size_t count = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 200'000;
    std::printf("kind,system,round,value\n");
    for (int round = 0; round < 3; ++round) {
      std::printf("throughput,raw,%d,%.0f\n", round, run_raw(count));
      std::printf("throughput,raw+codec,%d,%.0f\n", round, run_raw(count, true));
      std::printf("throughput,zmqkit,%d,%.0f\n", round, run_zmqkit(count, 1000));
    }
    return 0;
  }
  const std::size_t count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200'000;
  const std::size_t credit = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000;
  std::printf("pipeline: %zu tasks, 64-byte bodies, tcp loopback, worker credit %zu\n", count, credit);
  if (argc > 3 && std::string(argv[3]) == "codec-only") {  // for profiling
    std::printf("raw + codec only: %.1f msg/s\n", run_raw(count, true));
    return 0;
  }
  if (argc > 3 && std::string(argv[3]) == "raw-only") {  // for profiling
    std::printf("raw only: %.1f msg/s\n", run_raw(count));
    return 0;
  }
  if (argc > 3 && std::string(argv[3]) == "kit-only") {  // for profiling
    std::printf("zmqkit only: %.1f msg/s\n", run_zmqkit(count, credit));
    return 0;
  }
  // Alternate the runs, best of three each, so a noisy neighbour hurts all alike.
  double best_kit = 0, best_raw = 0, best_codec = 0;
  for (int round = 0; round < 3; ++round) {
    best_raw = std::max(best_raw, run_raw(count));
    best_codec = std::max(best_codec, run_raw(count, true));
    best_kit = std::max(best_kit, run_zmqkit(count, credit));
  }
  zmqkit::bench::report("pipeline vent->worker->sink (64 B, envelopes)", "msg/s", best_kit, best_raw, 0.8,
                        true);
  // Where the gap comes from: the same raw sockets doing only the envelope codec work.
  zmqkit::bench::report("  raw PUSH/PULL + envelope codec only", "msg/s", best_codec, best_raw, 0.8, true);
  zmqkit::bench::report("  pipeline vs raw + envelope codec", "msg/s", best_kit, best_codec, 0.8, true);
}
