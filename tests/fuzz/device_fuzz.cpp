// libFuzzer target for the queue device's frame handlers: each input is a
// script of messages arriving on the frontend, backend or admin socket and of
// clock advances, fed straight to the handlers (zmqkit::queue::device_access),
// so every path a peer can reach runs under the sanitizers without threads.
// Connected peers (clients C0 C1, workers W0 W1) let sends succeed, so requests
// really reach workers and replies really reach clients.
//
// Script: op byte; op % 4 = 0 frontend, 1 backend, 2 advance the clock by
// (next byte) x 8 ms and run the timers, 3 admin. A message: 1 + (byte % 6)
// frames, each a length byte (255: two more bytes, big-endian) and its bytes.
// A first frame of one byte k < 4 becomes a connected peer's identity (k % 2).
// Properties: no crash, no sanitizer report, no exception escapes a handler,
// and the counters stay consistent.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/clock.hpp>
#include <zmqkit/queue/device.hpp>

#include "../../patterns/queue/device_access.hpp"

namespace {

using zmqkit::queue::device_access;

struct harness {
  zmq::context_t ctx;
  zmqkit::manual_clock clock;
  std::unique_ptr<zmqkit::queue::device> dev;
  std::vector<zmq::socket_t> peers;  // C0 C1 on the frontend, W0 W1 on the backend

  harness() {
    dev = std::make_unique<zmqkit::queue::device>(
        ctx, zmqkit::queue::device_options{.frontend = "inproc://fuzz-front",
                                           .backend = "inproc://fuzz-back",
                                           .admin = "inproc://fuzz-admin",
                                           .heartbeat = std::chrono::milliseconds(100),
                                           .max_pending = 64,
                                           .reply_cache = 64,
                                           .no_service = std::chrono::milliseconds(500),
                                           .delivery_timeout = std::chrono::milliseconds(800),
                                           .max_frame_bytes = 1 << 16,
                                           .clock = &clock});
    for (const char* id : {"C0", "C1", "W0", "W1"}) {
      zmq::socket_t s(ctx, zmq::socket_type::dealer);
      s.set(zmq::sockopt::routing_id, id);
      s.set(zmq::sockopt::linger, 0);
      s.connect(id[0] == 'C' ? "inproc://fuzz-front" : "inproc://fuzz-back");
      peers.push_back(std::move(s));
    }
  }

  // Empties the peers' queues, so that a long run never fills a pipe.
  void drain_peers() {
    for (auto& s : peers) {
      std::vector<zmq::message_t> frames;
      while (zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait)) frames.clear();
    }
  }
};

struct script {
  const std::uint8_t* p;
  const std::uint8_t* end;
  bool done() const { return p == end; }
  std::uint8_t byte() { return p == end ? 0 : *p++; }
  std::string bytes(std::size_t n) {
    n = std::min<std::size_t>(n, static_cast<std::size_t>(end - p));
    std::string out(reinterpret_cast<const char*>(p), n);
    p += n;
    return out;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static harness h;
  script in{data, data + size};
  for (int ops = 0; !in.done() && ops < 256; ++ops) {
    const std::uint8_t op = in.byte();
    if (op % 4 == 2) {
      h.clock.advance(std::chrono::milliseconds(8 * in.byte()));
      device_access::timers(*h.dev);
      continue;
    }
    const auto side = op % 4 == 0   ? device_access::side::frontend
                      : op % 4 == 1 ? device_access::side::backend
                                    : device_access::side::admin;
    std::vector<zmq::message_t> frames;
    const int count = 1 + in.byte() % 6;
    for (int i = 0; i < count; ++i) {
      std::size_t n = in.byte();
      if (n == 255) n = (std::size_t{in.byte()} << 8) | in.byte();
      std::string f = in.bytes(n);
      if (i == 0 && f.size() == 1 && static_cast<std::uint8_t>(f[0]) < 4) {
        const char peer = static_cast<char>('0' + f[0] % 2);
        f = std::string(side == device_access::side::backend ? "W" : "C") + peer;
      }
      frames.emplace_back(f.data(), f.size());
    }
    device_access::feed(*h.dev, side, std::move(frames));  // an exception escaping is a finding
  }
  h.drain_peers();

  const auto s = h.dev->stats();
  std::size_t by_priority = 0;
  for (std::size_t n : s.pending_by_priority) by_priority += n;
  if (by_priority != s.pending) std::abort();
  if (s.pending > 64) std::abort();  // max_pending
  if (s.reply_cache_size > 64) std::abort();
  if (s.replied > s.routed) std::abort();  // a request is answered by a worker at most once
  if (std::getenv("ZMQKIT_FUZZ_VERBOSE"))  // to check what a corpus reaches
    std::fprintf(stderr, "received %llu routed %llu replied %llu expired %llu pending %zu in flight %zu\n",
                 static_cast<unsigned long long>(s.received), static_cast<unsigned long long>(s.routed),
                 static_cast<unsigned long long>(s.replied), static_cast<unsigned long long>(s.expired), s.pending,
                 s.in_flight);
  return 0;
}
