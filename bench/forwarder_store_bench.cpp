// The forwarder with a store (zmqkit-forwarder --store) beside the same
// forwarder without one and beside raw zmq_proxy (XSUB/XPUB), same run:
// a zmqkit publisher -> forwarder -> one zmqkit subscriber over tcp loopback,
// 64-byte bodies, unbounded queues, messages per second until the subscriber
// has them all. Then the replay rate: a late joiner replaying the whole stored
// stream from seq 1 (zmk.replay batches of 1 000). Rounds alternate; medians.
//
//   build/bench/forwarder_store_bench [messages per round, default 100000]
// Target (issue 14): store (sync none, the default) >= 0.7 x the forwarder
// without a store; sync batch (an fsync per batch) is printed for insight.
#include <cstdlib>
#include <optional>
#include <thread>
#include <zmq.hpp>
#include <zmqkit/pubsub/forwarder.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "bench_util.hpp"

#include <filesystem>

using namespace std::chrono_literals;
using zmqkit::bench::bench_clock;

namespace {

constexpr int rounds = 3;
const std::string body(64, 'x');
const zmqkit::socket_options unbounded{.send_hwm = 0, .receive_hwm = 0};

struct temp_store {
  std::filesystem::path path;
  temp_store() {
    std::string t = (std::filesystem::temp_directory_path() / "zmqkit-bench-XXXXXX").string();
    if (!::mkdtemp(t.data())) std::abort();
    path = t;
  }
  ~temp_store() { std::filesystem::remove_all(path); }
};

enum class mode { raw_proxy, forwarder, store_none, store_batch };

// Publishes n through the middle box to one subscriber. Returns: msg/s, and with
// a store the replay rate of the stored stream (0 otherwise) in `replay_rate`.
double run(mode m, std::uint64_t n, double& replay_rate) {
  replay_rate = 0;
  zmq::context_t ctx;
  std::optional<temp_store> dir;
  std::optional<zmqkit::pubsub::forwarder> fwd;
  zmq::socket_t xsub, xpub;
  std::thread proxy;
  std::string front, back, replay;
  if (m == mode::raw_proxy) {
    xsub = zmq::socket_t(ctx, zmq::socket_type::xsub);
    xpub = zmq::socket_t(ctx, zmq::socket_type::xpub);
    for (auto* s : {&xsub, &xpub}) {
      s->set(zmq::sockopt::sndhwm, 0);
      s->set(zmq::sockopt::rcvhwm, 0);
      s->set(zmq::sockopt::linger, 0);
    }
    xsub.bind("tcp://127.0.0.1:*");
    xpub.bind("tcp://127.0.0.1:*");
    front = xsub.get(zmq::sockopt::last_endpoint);
    back = xpub.get(zmq::sockopt::last_endpoint);
    // The same work as the caching forwarder: upstream sends everything.
    const char everything = 1;
    xsub.send(zmq::const_buffer(&everything, 1), zmq::send_flags::none);
    proxy = std::thread([&] {
      try {
        zmq::proxy(xsub, xpub);
      } catch (const zmq::error_t&) {  // the context closing ends it
      }
    });
  } else {
    zmqkit::pubsub::forwarder_options o{.frontend = "tcp://127.0.0.1:*",
                                        .backend = "tcp://127.0.0.1:*",
                                        .snapshot_endpoint = "tcp://127.0.0.1:*",
                                        .socket = unbounded};
    if (m == mode::store_none || m == mode::store_batch) {
      dir.emplace();
      o.store_dir = dir->path.string();
      o.store_sync = m == mode::store_batch;
    }
    fwd.emplace(ctx, o);
    front = fwd->frontend_endpoint();
    back = fwd->backend_endpoint();
    replay = fwd->snapshot_endpoint();
  }
  zmqkit::pubsub::publisher pub(ctx, {.socket = unbounded});
  pub.connect(front);
  std::atomic<bool> ready{false};
  std::atomic<std::uint64_t> got{0};
  bench_clock::time_point finished{};
  std::thread reader([&] {
    zmqkit::pubsub::subscriber sub(ctx, {.socket = unbounded});
    sub.subscribe("bench.");
    sub.connect(back);
    while (got < n) {
      auto msg = sub.receive_view(5s);
      if (!msg) break;
      if (msg->env.type == "bench.tick") ++got;
      else ready = true;
    }
    finished = bench_clock::now();
  });
  while (!ready) {
    pub.publish(zmqkit::make_envelope("bench.sync"));
    std::this_thread::sleep_for(1ms);
  }
  const auto start = bench_clock::now();
  for (std::uint64_t i = 0; i < n; ++i) {
    zmqkit::envelope env = zmqkit::make_envelope("bench.tick");
    env.body = body;
    pub.publish(std::move(env));
  }
  reader.join();
  if (got != n) std::fprintf(stderr, "mode %d: %llu of %llu arrived\n", int(m), (unsigned long long)got.load(),
                             (unsigned long long)n);
  const double rate = static_cast<double>(n) / std::chrono::duration<double>(finished - start).count();

  if (dir) {  // a late joiner replays the stored stream from seq 1
    zmqkit::pubsub::subscriber late(ctx, {.socket = unbounded, .replay_endpoint = replay, .start = {.sequence = 1}});
    late.subscribe("bench.tick");
    late.connect(back);
    const auto t0 = bench_clock::now();
    std::uint64_t replayed = 0;
    while (replayed < n) {
      auto msg = late.receive_view(5s);
      if (!msg || !msg->replayed) break;
      ++replayed;
    }
    replay_rate = static_cast<double>(replayed) / std::chrono::duration<double>(bench_clock::now() - t0).count();
    if (replayed != n) std::fprintf(stderr, "replayed %llu of %llu\n", (unsigned long long)replayed, (unsigned long long)n);
  }
  fwd.reset();
  if (proxy.joinable()) {
    ctx.shutdown();
    proxy.join();
  }
  return rate;
}

double median(std::vector<double> v) { return zmqkit::bench::percentile(v, 50); }

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100'000;
  std::vector<double> raw, plain, none, batch, replay_none, replay_batch;
  for (int r = 0; r < rounds; ++r) {
    double replay = 0;
    raw.push_back(run(mode::raw_proxy, n, replay));
    plain.push_back(run(mode::forwarder, n, replay));
    none.push_back(run(mode::store_none, n, replay));
    replay_none.push_back(replay);
    batch.push_back(run(mode::store_batch, n, replay));
    replay_batch.push_back(replay);
  }
  zmqkit::bench::report("forwarder (no store) vs raw zmq_proxy", "msg/s", median(plain), median(raw), 0.8, true);
  zmqkit::bench::report("forwarder --store (sync none) vs no store", "msg/s", median(none), median(plain), 0.7, true);
  // For insight, not the target: an fsync per batch of up to 256 messages.
  std::printf("forwarder --store (sync batch): %.0f msg/s, %.2f x no store\n", median(batch),
              median(batch) / median(plain));
  std::printf("replay of %llu stored messages from seq 1: %.0f msg/s (sync none store), %.0f msg/s (sync batch)\n",
              static_cast<unsigned long long>(n), median(replay_none), median(replay_batch));
}
