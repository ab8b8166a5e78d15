// one_thread: a reqrep worker, a publisher, a subscriber and a retrying,
// failing-over client with several requests in flight, all driven by one
// zmqkit::loop on the main thread (the worker's handler runs on its own thread,
// as always, so that it keeps heartbeating while a handler works).
//
//   one_thread --frontend EP --backend EP [--admin EP] [--requests N]
//
// against a zmqkit-queue (frontend for clients, backend for workers). The client
// has two endpoints: a "black hole" that takes requests and never answers, then
// the queue. Its first attempts time out, it fails over and resends everything in
// flight to the queue. Each reply is published as price.quoted; the subscriber
// counts them. Exits 0 when every request got exactly one right reply, the
// subscriber saw every quote without a gap and the client did fail over.
#include <zmqkit/loop.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/worker.hpp>

#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  std::string frontend, backend;
  int requests = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--frontend") frontend = value;
    else if (flag == "--backend") backend = value;
    else if (flag == "--requests") requests = std::atoi(value.c_str());
  }
  if (frontend.empty() || backend.empty() || requests < 1) {
    std::cerr << "usage: one_thread --frontend EP --backend EP [--admin EP] [--requests N]\n";
    return 2;
  }

  zmq::context_t ctx;
  zmqkit::loop loop;

  // The worker: doubles the number it is given.
  zmqkit::reqrep::worker worker(ctx, backend, [](const zmqkit::envelope& req) {
    return zmqkit::make_reply(req, "price.quote", 2 * req.body_as<int>());
  });
  worker.attach(loop);

  // A ROUTER that swallows requests: the client's first endpoint.
  zmq::socket_t black_hole(ctx, zmq::socket_type::router);
  black_hole.set(zmq::sockopt::linger, 0);
  black_hole.bind("tcp://127.0.0.1:*");
  int swallowed = 0;
  loop.add(black_hole, [&] {
    zmq::message_t m;
    while (black_hole.recv(m, zmq::recv_flags::dontwait))
      if (!m.more()) ++swallowed;
  });

  zmqkit::reqrep::client client(ctx, {black_hole.get(zmq::sockopt::last_endpoint), frontend},
                                {.retry = {.timeout = 300ms, .retries = 3}});
  client.attach(loop);

  zmqkit::pubsub::publisher publisher(ctx);
  const std::string quotes = publisher.bind("tcp://127.0.0.1:*");
  zmqkit::pubsub::subscriber subscriber(ctx);
  subscriber.subscribe("price.");
  subscriber.connect(quotes);
  std::map<int, int> quoted;  // request number -> quote seen by the subscriber
  subscriber.attach(loop, [&](const zmqkit::pubsub::notification_view& n) {
    const auto [number, quote] = n.env.to_envelope().body_as<std::pair<int, int>>();
    quoted[number] = quote;
    if (static_cast<int>(quoted.size()) == requests) loop.stop();
  });

  std::map<int, int> replies;  // request number -> replies that completed it
  int failures = 0, wrong = 0;
  auto send_all = [&] {
    for (int i = 1; i <= requests; ++i)
      client.async_request(zmqkit::make_envelope("price.get", i), [&, i](zmqkit::reqrep::result r) {
        if (!r) {
          ++failures;
          std::cerr << "request " << i << " failed: " << r.failure().code << "\n";
          return;
        }
        const int quote = r.reply().body_as<int>();
        if (quote != 2 * i) ++wrong;
        ++replies[i];
        publisher.publish("price.quoted", std::pair<int, int>(i, quote));
      });
  };
  // Start once the subscriber's subscription has reached the publisher (PUB drops before that).
  bool started = false;
  publisher.attach(loop, [&](std::size_t live) {
    if (live > 0 && !started) {
      started = true;
      send_all();
    }
  });
  loop.after(20s, [&] {
    std::cerr << "one_thread: not done after 20 s\n";
    loop.stop();
  });
  loop.run();

  const auto& cs = client.stats();
  std::cout << "requests " << requests << ", replies " << replies.size() << ", quotes seen " << quoted.size()
            << ", swallowed by the black hole " << swallowed << ", retries " << cs.retries << ", failovers "
            << cs.failovers << ", resends " << cs.resends << ", subscriber gaps " << subscriber.stats().gaps
            << ", worker replies " << worker.stats().replies << "\n";
  bool ok = failures == 0 && wrong == 0 && static_cast<int>(replies.size()) == requests &&
            static_cast<int>(quoted.size()) == requests && cs.failovers >= 1 && subscriber.stats().gaps == 0;
  for (const auto& [i, n] : replies) ok = ok && n == 1;
  for (const auto& [i, q] : quoted) ok = ok && q == 2 * i;
  std::cout << (ok ? "one_thread: OK" : "one_thread: FAILED") << std::endl;
  return ok ? 0 : 1;
}
