// A fixed workload for callgrind, the stable measure of the device's own cost: N
// requests (window 100, 64-byte bodies) through an in-process device over inproc, one
// echo worker of capacity 32. Instructions of the device thread per request:
//   valgrind --tool=callgrind --toggle-collect='zmqkit::queue::device::run()' \
//     build/bench/queue_callgrind_bench 20000     # "Collected" / 20000
// Built at two commits, it shows what a change costs the device (patterns/queue/README.md).
//
// usage: queue_callgrind_bench [requests, default 20000]
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <msgpack.hpp>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>
#include <zmqkit/queue/device.hpp>
int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  zmq::context_t ctx;
  zmqkit::queue::device dev(ctx, {.frontend = "inproc://f", .backend = "inproc://b"});
  std::thread loop([&] { dev.run(); });
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.connect("inproc://b");
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    pk.pack_map(1);
    pk.pack(std::string("capacity"));
    pk.pack(32);
    s.send(zmq::buffer("\x01", 1), zmq::send_flags::sndmore);
    s.send(zmq::buffer(b.data(), b.size()));
    std::vector<zmq::message_t> f;
    while (!stop) {
      zmq::pollitem_t it{s.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&it, 1, std::chrono::milliseconds(50));
      for (;;) {
        f.clear();
        if (!zmq::recv_multipart(s, std::back_inserter(f), zmq::recv_flags::dontwait)) break;
        if (f.size() >= 3) zmq::send_multipart(s, f);
      }
    }
  });
  zmq::socket_t c(ctx, zmq::socket_type::dealer);
  c.connect("inproc://f");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int sent = 0, got = 0;
  auto send = [&] {
    zmqkit::envelope e = zmqkit::make_envelope("bench.echo");
    e.body.assign(64, 'x');
    c.send(zmq::message_t{}, zmq::send_flags::sndmore);
    c.send(zmqkit::encode(e), zmq::send_flags::none);
    ++sent;
  };
  while (sent < 100) send();
  std::vector<zmq::message_t> f;
  while (got < n) {
    f.clear();
    (void)zmq::recv_multipart(c, std::back_inserter(f));
    ++got;
    if (sent < n) send();
  }
  std::printf("%d replies, device replied %llu\n", got, static_cast<unsigned long long>(dev.stats().replied));
  stop = true;
  worker.join();
  dev.stop();
  loop.join();
}
