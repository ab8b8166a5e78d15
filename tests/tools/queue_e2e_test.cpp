// The tool against the real zmqkit-queue program: `request` through it, `stats`
// from its admin endpoint, and its --metrics-http endpoint scraped with curl.
#include <doctest/doctest.h>

#include <atomic>
#include <regex>
#include <support/sockets.hpp>
#include <thread>
#include <zmq_addon.hpp>
#include <zmqkit/envelope.hpp>

#include "programs.hpp"
#include "tool.hpp"

using namespace zmqkit::test;

namespace {

// A Paranoid Pirate worker serving every type: echoes each request's body in a
// reply of type echo.reply, heartbeating every 100 ms.
class echo_worker {
 public:
  echo_worker(zmq::context_t& ctx, const std::string& backend)
      : socket_(test_socket(ctx, zmq::socket_type::dealer)) {
    socket_.connect(backend);
    socket_.send(zmq::buffer(std::string("\x01")), zmq::send_flags::none);  // READY
    thread_ = std::thread([this] { loop(); });
  }
  ~echo_worker() {
    stop_ = true;
    thread_.join();
  }
  int served() const { return served_; }

 private:
  void loop() {
    auto next_heartbeat = std::chrono::steady_clock::now();
    while (!stop_) {
      if (std::chrono::steady_clock::now() >= next_heartbeat) {
        socket_.send(zmq::buffer(std::string("\x02")), zmq::send_flags::none);
        next_heartbeat += 100ms;
      }
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) == 0) continue;
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) continue;
      if (frames.size() < 3) continue;  // a heartbeat
      auto request = zmqkit::decode(frames.back());
      auto reply = zmqkit::make_reply(request, "echo.reply");
      reply.body = request.body;
      frames.back() = zmqkit::encode(reply);
      zmq::send_multipart(socket_, frames);
      ++served_;
    }
    socket_.send(zmq::buffer(std::string("\x03")), zmq::send_flags::none);  // DISCONNECT
  }

  zmq::socket_t socket_;
  std::atomic<bool> stop_{false};
  std::atomic<int> served_{0};
  std::thread thread_;
};

}  // namespace

TEST_CASE("request through zmqkit-queue gets the worker's reply") {
  queue_process queue;
  zmq::context_t ctx;
  echo_worker worker(ctx, queue.backend);
  auto r = run_tool(
      {"request", "-c", queue.frontend, "-t", "echo.me", "-j", R"({"n":[1,2]})", "--timeout", "5000"});
  REQUIRE(r.code == 0);
  auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["type"] == "echo.reply");
  CHECK(lines[0]["body"] == json{{"n", {1, 2}}});
  CHECK(worker.served() == 1);
}

TEST_CASE("request with no worker for its type gets no-service from zmqkit-queue and exits 3") {
  queue_process queue({"--no-service-ms", "200"});
  auto r = run_tool({"request", "-c", queue.frontend, "-t", "nobody.serves", "--timeout", "5000"});
  CHECK(r.code == 3);
  CHECK(one_line(r.err));
  CHECK(r.err.find("error reply: no-service") != std::string::npos);
  CHECK(r.out.empty());
}

TEST_CASE("stats reads zmqkit-queue's admin endpoint") {
  queue_process queue({"--no-service-ms", "200"});
  zmq::context_t ctx;
  {
    echo_worker worker(ctx, queue.backend);
    REQUIRE(run_tool({"request", "-c", queue.frontend, "-t", "a.b", "--timeout", "5000"}).code == 0);
    REQUIRE(run_tool({"request", "-c", queue.frontend, "-t", "a.b", "--timeout", "5000"}).code == 0);
  }
  SUBCASE("as JSON") {
    auto r = run_tool({"stats", "-c", queue.admin, "--json"});
    REQUIRE(r.code == 0);
    auto stats = json_lines(r.out).at(0);
    CHECK(stats["received"] == 2);
    CHECK(stats["replied"] == 2);
    CHECK(stats["pending_by_priority"]["4"] == 0);
    CHECK(stats["rejected"].is_object());
  }
  SUBCASE("as a table") {
    auto r = run_tool({"stats", "-c", queue.admin});
    REQUIRE(r.code == 0);
    CHECK(std::regex_search(r.out, std::regex(R"((^|\n)replied +2\n)")));
    CHECK(std::regex_search(r.out, std::regex(R"(\npending_by_priority\n  0 +0\n)")));
  }
}

TEST_CASE("zmqkit-queue --metrics-http serves Prometheus text to curl while it runs") {
  queue_process queue({"--no-service-ms", "100"});
  auto before = scrape(queue.metrics_port);
  REQUIRE(before.curl_exit == 0);
  CHECK(has_line(before.body, "# TYPE zmqkit_queue_received_total counter"));
  CHECK(has_line(before.body, "zmqkit_queue_received_total 0"));
  CHECK(has_line(before.body, "# TYPE zmqkit_queue_pending_by_priority gauge"));
  for (int p = 0; p <= 9; ++p)
    CHECK(
        has_line(before.body, "zmqkit_queue_pending_by_priority{priority=\"" + std::to_string(p) + "\"} 0"));
  CHECK(has_line(before.body, "# TYPE zmqkit_queue_workers_ready gauge"));

  // A request nobody serves: counted, rejected no-service, by its type while it waits.
  auto r =
      run_tool({"request", "-c", queue.frontend, "-t", "course.subscribe", "-p", "7", "--timeout", "5000"});
  REQUIRE(r.code == 3);
  auto after = scrape(queue.metrics_port);
  REQUIRE(after.curl_exit == 0);
  CHECK(has_line(after.body, "zmqkit_queue_received_total 1"));
  CHECK(has_line(after.body, "zmqkit_queue_rejected_total{code=\"no-service\"} 1"));

  zmq::context_t ctx;
  echo_worker worker(ctx, queue.backend);
  REQUIRE(wait_until(
      [&] {
        return scrape(queue.metrics_port).body.find("zmqkit_queue_workers_ready 1\n") != std::string::npos;
      },
      10s));

  // Stopping the device stops the HTTP server with it.
  queue.process.signal(SIGTERM);
  CHECK(queue.process.wait(15s) == 0);
  CHECK(scrape(queue.metrics_port).curl_exit == 7);  // connection refused
}

TEST_CASE("zmqkit-queue refuses a bad --metrics-http address with exit 2") {
  for (const char* bad : {"nonsense", "127.0.0.1:99999", "256.1.1.1:0"}) {
    CAPTURE(bad);
    piped_process p({queue_binary, "--frontend", ipc("f"), "--backend", ipc("b"), "--metrics-http", bad});
    CHECK(p.wait(15s) == 2);
    CHECK(one_line(p.err()));
    CHECK(p.err().find("metrics-http") != std::string::npos);
  }
}
