// asio_loop: a zmqkit worker and client inside an asio::io_context. The
// zmqkit::loop's fd() is handed to Asio (posix::stream_descriptor, async_wait
// for readability); when it fires, poll_ready() does the zmqkit work without
// blocking. A coroutine co_awaits requests through a completion-token adapter
// (async_request below), four of them at once, while an Asio timer ticks beside
// them on the same thread.
//
//   asio_loop --frontend EP --backend EP [--admin EP] [--requests N]
//
// against a zmqkit-queue. Exits 0 when every request got its right reply.
#include <zmqkit/loop.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include <unistd.h>

#include <asio.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

using namespace std::chrono_literals;

// Runs a zmqkit::loop inside an io_context: wait until fd() is readable, do the
// ready work, wait again. fd() also turns readable when a zmqkit timer is due,
// so no Asio timer is needed for zmqkit's retries and heartbeats.
class asio_driver {
 public:
  asio_driver(asio::io_context& io, zmqkit::loop& loop)
      : loop_(loop), descriptor_(io, ::dup(loop.fd())) {  // a dup: the descriptor closes its own copy
    wait();
  }
  void close() { descriptor_.close(); }

 private:
  void wait() {
    descriptor_.async_wait(asio::posix::descriptor_base::wait_read, [this](const asio::error_code& ec) {
      if (ec) return;  // closed
      loop_.poll_ready();
      wait();  // re-armed before Asio waits again: poll_ready() makes a fresh edge if work remains
    });
  }
  zmqkit::loop& loop_;
  asio::posix::stream_descriptor descriptor_;
};

// A completion-token adapter: async_request(client, request, token) with any Asio
// token (a callback, asio::use_awaitable, asio::use_future ...). The completion
// runs on the token's executor, after the zmqkit callback has returned.
template <typename CompletionToken>
auto async_request(zmqkit::reqrep::client& client, zmqkit::envelope request, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(zmqkit::reqrep::result)>(
      [&client](auto handler, zmqkit::envelope request) {
        auto executor = asio::get_associated_executor(handler);
        // std::function needs a copyable callable; Asio's handlers are move-only.
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        client.async_request(std::move(request), [shared, executor](zmqkit::reqrep::result r) {
          asio::post(executor, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
        });
      },
      token, std::move(request));
}

int main(int argc, char** argv) {
  std::string frontend, backend;
  int requests = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--frontend") frontend = value;
    else if (flag == "--backend") backend = value;
    else if (flag == "--requests") requests = std::atoi(value.c_str());
  }
  if (frontend.empty() || backend.empty() || requests < 1) {
    std::cerr << "usage: asio_loop --frontend EP --backend EP [--admin EP] [--requests N]\n";
    return 2;
  }

  zmq::context_t ctx;
  // Before the client: requests still in flight at exit hold Asio handlers, which need it.
  asio::io_context io;
  zmqkit::loop loop;
  zmqkit::reqrep::worker worker(ctx, backend, [](const zmqkit::envelope& req) {
    return zmqkit::make_reply(req, "square.result", req.body_as<int>() * req.body_as<int>());
  });
  worker.attach(loop);
  zmqkit::reqrep::client client(ctx, frontend, {.retry = {.timeout = 1000ms, .retries = 3}});
  client.attach(loop);

  asio_driver driver(io, loop);
  int ticks = 0;
  // Set when every request is answered. cancel() alone does not stop a timer whose
  // handler is already queued to run: each handler looks at this before re-arming.
  bool finished = false;
  asio::steady_timer ticker(io);
  std::function<void()> tick = [&] {  // Asio's own work, beside zmqkit's, on the same thread
    ticker.expires_after(1ms);
    ticker.async_wait([&](const asio::error_code& ec) {
      if (ec || finished) return;
      ++ticks;
      tick();
    });
  };
  tick();

  int right = 0, failed = 0;
  asio::steady_timer watchdog(io, 20s);
  watchdog.async_wait([&](const asio::error_code& ec) {
    if (ec || finished) return;
    const auto& cs = client.stats();
    std::cerr << "asio_loop: not done after 20 s: " << right << " right, " << failed << " failed, in flight "
              << client.in_flight() << ", client sent " << cs.sent << " retries " << cs.retries << " replies "
              << cs.replies << ", worker requests " << worker.stats().requests << " replies "
              << worker.stats().replies << std::endl;
    io.stop();
  });
  // Four coroutines, each awaiting its share of the requests one after another:
  // four requests in flight at a time.
  constexpr int lanes = 4;
  int lanes_done = 0;
  for (int lane = 0; lane < lanes; ++lane)
    asio::co_spawn(
        io,
        [&, lane]() -> asio::awaitable<void> {
          for (int i = 1 + lane; i <= requests; i += lanes) {
            zmqkit::reqrep::result r =
                co_await async_request(client, zmqkit::make_envelope("square", i), asio::use_awaitable);
            if (r && r.reply().body_as<int>() == i * i) ++right;
            else ++failed;
          }
          if (++lanes_done < lanes) co_return;
          finished = true;
          ticker.cancel();  // no work left: io.run() returns
          watchdog.cancel();
          driver.close();
        },
        asio::detached);
  std::thread::id zmqkit_thread;
  loop.post([&] { zmqkit_thread = std::this_thread::get_id(); });
  io.run();

  std::cout << "requests " << requests << ", right replies " << right << ", failed " << failed
            << ", asio ticks meanwhile " << ticks << ", zmqkit ran on the io_context's thread: "
            << (zmqkit_thread == std::this_thread::get_id() ? "yes" : "no") << "\n";
  const bool ok = right == requests && failed == 0 && zmqkit_thread == std::this_thread::get_id();
  std::cout << (ok ? "asio_loop: OK" : "asio_loop: FAILED") << std::endl;
  return ok ? 0 : 1;
}
