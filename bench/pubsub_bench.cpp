// Pub/sub throughput over tcp loopback, 64-byte bodies: zmqkit publisher ->
// subscribers (envelopes encoded, decoded, sequence tracking on) beside raw
// PUB/SUB sending [topic, 64-byte payload], 1 and 4 subscribers, same run.
//
// Queues are unbounded (HWM 0) so that every subscriber receives every
// message: the figure is messages per second until the last subscriber has
// all of them. Rounds alternate zmqkit and raw; the median round is reported.
//
//   build/bench/pubsub_bench [messages per round, default 200000]
//   build/bench/pubsub_bench csv [messages per round, default 200000]: for bench/plot.py, 1, 2
//     and 4 subscribers, median rounds as "throughput,<zmqkit|raw|raw-same-size>,<subscribers>,
//     <msg/s>" (header "kind,system,subscribers,value"; raw-same-size: raw frames as large as
//     zmqkit's envelopes)
#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "bench_util.hpp"

using namespace std::chrono_literals;
using zmqkit::bench::bench_clock;

namespace {

constexpr int rounds = 5;
const std::string body(64, 'x');
const std::string tick = "bench.tick", sync_type = "bench.sync";

struct run_state {
  std::atomic<int> ready{0};
  std::atomic<int> done{0};
  std::atomic<std::int64_t> last_finish_ns{0};
  std::atomic<std::uint64_t> gaps{0};

  void finish() {
    const std::int64_t now = bench_clock::now().time_since_epoch().count();
    std::int64_t prev = last_finish_ns.load();
    while (prev < now && !last_finish_ns.compare_exchange_weak(prev, now)) {
    }
    ++done;
  }
};

// Publishes sync messages until every subscriber has seen one (PUB drops
// everything sent before a subscription arrives).
template <class Send>
void await_ready(run_state& st, int subscribers, Send send_sync) {
  while (st.ready.load() < subscribers) {
    send_sync();
    std::this_thread::sleep_for(1ms);
  }
}

double run_zmqkit(int subscribers, std::uint64_t n) {
  zmq::context_t ctx;
  const zmqkit::socket_options unbounded{.send_hwm = 0, .receive_hwm = 0};
  zmqkit::pubsub::publisher pub(ctx, {.socket = unbounded});
  const std::string ep = pub.bind("tcp://127.0.0.1:*");
  run_state st;
  std::vector<std::thread> threads;
  for (int i = 0; i < subscribers; ++i)
    threads.emplace_back([&] {
      zmqkit::pubsub::subscriber sub(ctx, {.socket = unbounded});
      sub.subscribe("bench.");
      sub.connect(ep);
      bool ready = false;
      std::uint64_t got = 0;
      while (got < n) {
        auto m = sub.receive_view(5s);
        if (!m) break;  // a lost message: the figure would be wrong, so report nothing
        if (m->env.type == tick) {
          ++got;
        } else if (!ready) {
          ready = true;
          ++st.ready;
        }
      }
      st.gaps += sub.stats().missed + (n - got);
      st.finish();
    });
  await_ready(st, subscribers, [&] { pub.publish(zmqkit::make_envelope(sync_type)); });
  const auto start = bench_clock::now();
  for (std::uint64_t i = 0; i < n; ++i) {
    zmqkit::envelope env = zmqkit::make_envelope(tick);
    env.body = body;
    pub.publish(std::move(env));
  }
  for (auto& t : threads) t.join();
  if (st.gaps != 0)
    std::fprintf(stderr, "zmqkit: %llu messages missing\n", (unsigned long long)st.gaps.load());
  const double secs =
      std::chrono::duration<double>(bench_clock::time_point(bench_clock::duration(st.last_finish_ns)) - start)
          .count();
  return static_cast<double>(n) / secs;
}

double run_raw(int subscribers, std::uint64_t n, const std::string& payload) {
  zmq::context_t ctx;
  zmq::socket_t pub(ctx, zmq::socket_type::pub);
  pub.set(zmq::sockopt::sndhwm, 0);
  pub.set(zmq::sockopt::linger, 1000);
  pub.bind("tcp://127.0.0.1:*");
  const std::string ep = pub.get(zmq::sockopt::last_endpoint);
  run_state st;
  std::vector<std::thread> threads;
  for (int i = 0; i < subscribers; ++i)
    threads.emplace_back([&] {
      zmq::socket_t sub(ctx, zmq::socket_type::sub);
      sub.set(zmq::sockopt::rcvhwm, 0);
      sub.set(zmq::sockopt::rcvtimeo, 5000);
      sub.set(zmq::sockopt::linger, 0);
      sub.set(zmq::sockopt::subscribe, "bench.");
      sub.connect(ep);
      bool ready = false;
      std::uint64_t got = 0;
      zmq::message_t topic, payload;
      while (got < n) {
        if (!sub.recv(topic)) break;
        (void)sub.recv(payload);
        if (topic.size() == tick.size() && std::memcmp(topic.data(), tick.data(), tick.size()) == 0) {
          ++got;
        } else if (!ready) {
          ready = true;
          ++st.ready;
        }
        zmqkit::bench::do_not_optimize(payload.data());
      }
      st.gaps += n - got;
      st.finish();
    });
  await_ready(st, subscribers, [&] {
    pub.send(zmq::buffer(sync_type), zmq::send_flags::sndmore);
    pub.send(zmq::buffer(body), zmq::send_flags::none);
  });
  const auto start = bench_clock::now();
  for (std::uint64_t i = 0; i < n; ++i) {
    pub.send(zmq::buffer(tick), zmq::send_flags::sndmore);
    pub.send(zmq::buffer(payload), zmq::send_flags::none);
  }
  for (auto& t : threads) t.join();
  if (st.gaps != 0) std::fprintf(stderr, "raw: %llu messages missing\n", (unsigned long long)st.gaps.load());
  const double secs =
      std::chrono::duration<double>(bench_clock::time_point(bench_clock::duration(st.last_finish_ns)) - start)
          .count();
  return static_cast<double>(n) / secs;
}

double median(std::vector<double> v) { return zmqkit::bench::percentile(v, 50); }

// The size of the frame zmqkit sends for a 64-byte body (stamp included).
std::string envelope_sized_payload() {
  zmqkit::envelope env = zmqkit::make_envelope(tick);
  env.body = body;
  env.headers.emplace(zmqkit::header::publisher, std::string(12, 'p'));
  env.headers.emplace(zmqkit::header::sequence, "100000");
  return std::string(zmqkit::encode(env).size(), 'x');
}

}  // namespace

int main(int argc, char** argv) {
  const bool csv = argc > 1 && std::string(argv[1]) == "csv";
  const int count_arg = csv ? 2 : 1;
  const std::uint64_t n = argc > count_arg ? std::strtoull(argv[count_arg], nullptr, 10) : 200'000;
  const std::string same_size = envelope_sized_payload();
  if (csv) std::printf("kind,system,subscribers,value\n");
  for (int subscribers : csv ? std::vector<int>{1, 2, 4} : std::vector<int>{1, 4}) {
    std::vector<double> zmqkit_rates, raw_rates, raw_same_size_rates;
    for (int r = 0; r < rounds; ++r) {
      raw_rates.push_back(run_raw(subscribers, n, body));
      zmqkit_rates.push_back(run_zmqkit(subscribers, n));
      raw_same_size_rates.push_back(run_raw(subscribers, n, same_size));
    }
    if (csv) {
      std::printf("throughput,zmqkit,%d,%.0f\nthroughput,raw,%d,%.0f\nthroughput,raw-same-size,%d,%.0f\n",
                  subscribers, median(zmqkit_rates), subscribers, median(raw_rates), subscribers,
                  median(raw_same_size_rates));
      std::fflush(stdout);
      continue;
    }
    const std::string what = "pub/sub tcp 64 B, " + std::to_string(subscribers) + " sub";
    zmqkit::bench::report(what + ", seq tracking", "msg/s", median(zmqkit_rates), median(raw_rates), 0.8,
                          true);
    // For insight, not the target: raw sending frames as large as zmqkit's
    // envelopes, which separates wire size from codec and tracking costs.
    zmqkit::bench::report(what + " (raw " + std::to_string(same_size.size()) + " B)", "msg/s",
                          median(zmqkit_rates), median(raw_same_size_rates), 0.8, true);
  }
}
