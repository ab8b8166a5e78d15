// Stand-ins for the servers the tool talks to, each a ROUTER served by its own
// thread until destruction: a request/reply server and a queue admin endpoint.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <support/sockets.hpp>
#include <thread>
#include <vector>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>

namespace zmqkit::test {

class router_peer {
 public:
  // `answer` gets the frames after the routing id and returns the frames to send
  // back after it (nothing = no answer).
  using answer_fn = std::function<std::vector<std::string>(const std::vector<std::string>& body)>;

  // `setup` runs on the socket before it binds (e.g. CURVE server options).
  router_peer(zmq::context_t& ctx, answer_fn answer, const std::function<void(zmq::socket_t&)>& setup = {})
      : socket_(test_socket(ctx, zmq::socket_type::router)), answer_(std::move(answer)) {
    if (setup) setup(socket_);
    endpoint_ = bind_ephemeral(socket_);
    thread_ = std::thread([this] { loop(); });
  }
  ~router_peer() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  int received() const { return received_.load(); }

 private:
  void loop() {
    while (!stop_) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) == 0) continue;
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) continue;
      std::vector<std::string> body;
      for (std::size_t i = 1; i < frames.size(); ++i) body.emplace_back(frames[i].to_string());
      ++received_;
      auto reply = answer_(body);
      if (reply.empty()) continue;
      socket_.send(frames[0], zmq::send_flags::sndmore);
      for (std::size_t i = 0; i < reply.size(); ++i)
        socket_.send(zmq::buffer(reply[i]),
                     i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  zmq::socket_t socket_;
  std::string endpoint_;
  answer_fn answer_;
  std::atomic<bool> stop_{false};
  std::atomic<int> received_{0};
  std::thread thread_;
};

// A request/reply server: [empty, envelope] in, [empty, reply] out. Records the
// requests it saw; `handle` returns the reply, or nullopt to stay silent.
class fake_server {
 public:
  using handler = std::function<std::optional<envelope>(const envelope& request, int nth)>;

  fake_server(zmq::context_t& ctx, handler handle, const std::function<void(zmq::socket_t&)>& setup = {})
      : handle_(std::move(handle)),
        peer_(
            ctx,
            [this](const std::vector<std::string>& body) {
              std::vector<std::string> out;
              if (body.size() != 2 || !body[0].empty()) return out;
              envelope request = decode(body[1]);
              int nth;
              {
                std::lock_guard lock(mutex_);
                requests_.push_back(request);
                nth = static_cast<int>(requests_.size());
              }
              if (auto reply = handle_(request, nth)) out = {"", std::string(as_string_view(encode(*reply)))};
              return out;
            },
            setup) {}

  const std::string& endpoint() const { return peer_.endpoint(); }
  std::vector<envelope> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  handler handle_;
  std::mutex mutex_;
  std::vector<envelope> requests_;
  router_peer peer_;  // last: its thread starts once the members it uses exist
};

}  // namespace zmqkit::test
