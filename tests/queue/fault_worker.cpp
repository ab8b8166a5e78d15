// A test-only queue worker process (raw cppzmq, the worker side of ZMK/1 by
// hand): READY, heartbeats, reconnect + READY again after `liveness` silent
// heartbeats (the device restarted), and lines appended to a shared log:
// "S <pid> <id>" when a request arrives, "D <pid> <id>" once its reply is sent.
//
// CAPACITY (default 1) > 1 announces READY's map form {"capacity": N}: the
// device may queue N requests here; they are still handled one at a time.
//
// usage: queue_fault_worker BACKEND LOG HEARTBEAT_MS LIVENESS DELAY_US [CAPACITY]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <msgpack.hpp>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>

using namespace std::chrono;

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    std::fprintf(stderr, "usage: %s BACKEND LOG HEARTBEAT_MS LIVENESS DELAY_US [CAPACITY]\n", argv[0]);
    return 2;
  }
  const std::string backend = argv[1];
  const int log_fd = ::open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
  const milliseconds heartbeat(std::stoi(argv[3]));
  const int liveness_max = std::stoi(argv[4]);
  const microseconds delay(std::stoi(argv[5]));
  const unsigned capacity = argc == 7 ? static_cast<unsigned>(std::stoul(argv[6])) : 1;
  const std::string pid = std::to_string(::getpid());
  std::string ready_map;
  if (capacity > 1) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    pk.pack_map(1);
    pk.pack(std::string("capacity"));
    pk.pack(capacity);
    ready_map.assign(b.data(), b.size());
  }

  zmq::context_t ctx;
  auto connect = [&] {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.connect(backend);
    if (ready_map.empty()) {
      s.send(zmq::buffer("\x01", 1));
    } else {
      s.send(zmq::buffer("\x01", 1), zmq::send_flags::sndmore);
      s.send(zmq::buffer(ready_map));
    }
    return s;
  };
  zmq::socket_t sock = connect();
  int liveness = liveness_max;
  auto next_heartbeat = steady_clock::now() + heartbeat;
  for (;;) {
    zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
    const auto wait = duration_cast<milliseconds>(next_heartbeat - steady_clock::now());
    zmq::poll(&item, 1, std::max(wait, milliseconds(0)));
    if (item.revents & ZMQ_POLLIN) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(sock, std::back_inserter(frames), zmq::recv_flags::dontwait)) continue;
      liveness = liveness_max;
      if (frames.size() >= 3 && frames[frames.size() - 2].size() == 0) {
        const auto req = zmqkit::decode_view(frames.back());
        const std::string tail = " " + pid + " " + req.id.to_string() + "\n";
        const std::string start = "S" + tail, done = "D" + tail;
        if (::write(log_fd, start.data(), start.size()) < 0) return 1;
        if (delay.count() > 0) std::this_thread::sleep_for(delay);
        frames.back() = zmqkit::encode(zmqkit::make_reply(req, "fault.done"));
        zmq::send_multipart(sock, frames);
        if (::write(log_fd, done.data(), done.size()) < 0) return 1;
      }
    } else if (steady_clock::now() >= next_heartbeat) {
      if (--liveness == 0) {  // the device is gone: a new socket, READY again
        sock = connect();
        liveness = liveness_max;
      }
    }
    if (steady_clock::now() >= next_heartbeat) {
      next_heartbeat = steady_clock::now() + heartbeat;
      sock.send(zmq::buffer("\x02", 1), zmq::send_flags::dontwait);
    }
  }
}
