// sales — an online shop's back end on zmqkit, one program, one role per process:
//
//   sales order-worker --backend EP [--work-ms N]      takes orders, publishes stock.changed
//   sales payment-worker --backend EP [--bank-ms N]     authorises payments, never after their TTL
//   sales restock-worker --ventilator EP --sink EP      places purchase orders (pipeline)
//   sales scenario --frontend EP --backend EP [--admin EP] [--orders N] [--vip N] [--payments N]
//                  [--vip-priority P]
//                                                       the shop front: starts the roles above as
//                                                       child processes, drives them, checks the outcome
//   sales stats --admin EP                              zmqkit-queue's counters, one per line
//
// See README.md in this folder for what each part shows.
#include "sales.hpp"

#include <example_support.hpp>
#include <mutex>
#include <set>
#include <unordered_map>
#include <zmqkit/envelope.hpp>
#include <zmqkit/pipeline/sink.hpp>
#include <zmqkit/pipeline/ventilator.hpp>
#include <zmqkit/pipeline/worker.hpp>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>
#include <zmqkit/reqrep/client.hpp>
#include <zmqkit/reqrep/worker.hpp>

using namespace std::chrono_literals;
using example::say;

namespace {

const std::vector<std::string> skus = {"book", "lamp", "mug", "poster"};
constexpr std::int64_t initial_stock = 25;
constexpr std::int64_t restock_threshold = 10;
constexpr std::int64_t restock_target = 40;

// --- order worker: req/rep behind zmqkit-queue, publishes stock changes -----------------------
int order_worker(const example::flags& f) {
  zmq::context_t ctx;
  const auto work = std::chrono::milliseconds(f.num("work-ms", 15));
  std::mutex mu;  // the handler thread and this loop both publish: one at a time
  zmqkit::pubsub::publisher pub(ctx, {.id = "inventory-" + std::to_string(getpid())});
  say("listening stock " + pub.bind("tcp://127.0.0.1:*"));
  std::map<std::string, std::int64_t> stock;
  for (auto& s : skus) stock[s] = initial_stock;
  std::int64_t processed = 0;
  {
    zmqkit::reqrep::worker w(ctx, f.need("backend"),
                             [&](const zmqkit::envelope& req) {
                               auto o = req.body_as<sales::order>();
                               std::this_thread::sleep_for(work);  // pick, pack, label
                               std::lock_guard lock(mu);
                               auto it = stock.find(o.sku);
                               if (it == stock.end())
                                 throw zmqkit::reqrep::handler_error("unknown-sku", o.sku);
                               if (it->second < o.quantity)
                                 throw zmqkit::reqrep::handler_error("out-of-stock", o.sku);
                               it->second -= o.quantity;
                               pub.publish("stock.changed", sales::stock_level{o.sku, it->second});
                               return zmqkit::make_reply(
                                   req, "order.confirmed",
                                   sales::order_confirmation{o.order_no, ++processed, it->second});
                             },
                             {.services = {"order."}});
    say("ready");
    auto next_beat = std::chrono::steady_clock::now();
    while (!example::stopping()) {
      w.poll(50ms);
      if (std::chrono::steady_clock::now() >= next_beat) {
        // Lets subscribers know they are connected before any order moves stock.
        std::lock_guard lock(mu);
        pub.publish("stock.heartbeat", std::int64_t{0});
        next_beat += 100ms;
      }
    }
    w.stop();
  }
  example::result("processed", static_cast<std::uint64_t>(processed));
  return 0;
}

// --- payment worker: never charges after the request's TTL ------------------------------------
// The device answers `expired` for requests that waited too long in its queue, and
// the worker refuses ones that reach it already expired. A bank call that returns
// after the deadline is not committed either: the shop has already told the
// customer the payment failed.
int payment_worker(const example::flags& f) {
  zmq::context_t ctx;
  const auto bank = std::chrono::milliseconds(f.num("bank-ms", 100));
  std::atomic<std::uint64_t> charged{0}, refused_late{0};
  {
    zmqkit::reqrep::worker w(
        ctx, f.need("backend"),
        [&](const zmqkit::envelope& req) {
          auto p = req.body_as<sales::payment>();
          std::this_thread::sleep_for(bank);                               // the card network
          const zmqkit::wall_time now = zmqkit::clock::real().wall_now();  // the commit time
          if (req.expired(now)) {
            ++refused_late;
            throw zmqkit::reqrep::handler_error(zmqkit::reply_error::expired,
                                                "bank answered after the deadline; not charged");
          }
          ++charged;
          return zmqkit::make_reply(req, "payment.authorized",
                                    sales::authorisation{p.payment_no, now.time_since_epoch().count()});
        },
        {.services = {"payment."}});
    say("ready");
    while (!example::stopping()) w.poll(100ms);
    w.stop();
  }
  example::result("charged", charged.load());
  example::result("refused_late", refused_late.load());
  return 0;
}

// --- restock worker: pipeline ---------------------------------------------------------------------
int restock_worker(const example::flags& f) {
  zmq::context_t ctx;
  std::uint64_t placed = 0;
  {
    zmqkit::pipeline::worker w(ctx, f.need("ventilator"), f.need("sink"), {.credit = 2});
    say("ready");
    while (!example::stopping()) {
      auto task = example::interruptible([&] { return w.receive(100ms); });
      if (!task) continue;
      auto r = task->body_as<sales::restock_request>();
      std::this_thread::sleep_for(5ms);  // the supplier's API
      w.send_result(
          zmqkit::make_reply(*task, "restock.ordered", sales::restock_order{r.sku, r.target - r.on_hand}));
      ++placed;
    }
  }
  example::result("placed", placed);
  return 0;
}

int stats(const example::flags& f) {
  zmq::context_t ctx;
  auto st = example::admin_stats(ctx, f.need("admin"), 2s);
  if (!st) {
    std::cerr << "sales stats: no answer from " << f.need("admin") << "\n";
    return 1;
  }
  for (auto& [k, v] : *st) std::cout << k << "=" << v << "\n";
  return 0;
}

// --- the scenario -----------------------------------------------------------------------------------
int scenario(const example::flags& f) {
  const int regular = f.num("orders", 30), vip = f.num("vip", 5), payments = f.num("payments", 12);
  const int vip_priority = std::clamp(f.num("vip-priority", 9), 0, 9);  // try 2: the check fails
  const std::string frontend = f.need("frontend"), backend = f.need("backend");
  zmq::context_t ctx;
  example::checks check;
  std::map<std::string, std::string> summary;

  // The services, each its own process.
  example::child orders_svc("order-worker", {"order-worker", "--backend", backend});
  const std::string stock_ep = orders_svc.expect("listening stock");
  orders_svc.expect("ready");
  example::child payments_svc("payment-worker", {"payment-worker", "--backend", backend});
  payments_svc.expect("ready");

  // Stock subscriber: the restock planner. Wait for the inventory's heartbeat, so
  // that the subscription is in place before any order moves stock.
  zmqkit::pubsub::subscriber stock_sub(ctx);
  stock_sub.subscribe("stock.");
  stock_sub.connect(stock_ep.substr(stock_ep.find(' ') + 1));
  {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    bool heard = false;
    while (!heard && std::chrono::steady_clock::now() < deadline)
      if (auto n = stock_sub.receive(100ms)) heard = n->env.type == "stock.heartbeat";
    if (!heard) throw std::runtime_error("no stock heartbeat from the order worker");
  }
  std::map<std::string, std::int64_t> on_hand;
  std::uint64_t stock_events = 0;
  auto drain_stock = [&] {
    while (auto n = stock_sub.receive(0ms)) {
      if (n->env.type != "stock.changed") continue;
      auto s = n->env.body_as<sales::stock_level>();
      on_hand[s.sku] = s.on_hand;
      ++stock_events;
    }
  };

  // 1. A backlog of regular orders, then VIP orders at priority 9.
  std::cout << "== orders: " << regular << " regular orders queued, then " << vip << " VIP orders (priority "
            << vip_priority << ")\n";
  zmqkit::reqrep::client shop(ctx, frontend, {.retry = {.timeout = 5s, .retries = 2}});
  struct sent_order {
    bool vip;
    int sent_index;
    std::chrono::steady_clock::time_point t0;
    std::int64_t processed_seq = 0;
  };
  std::unordered_map<zmqkit::message_id, sent_order> sent;
  std::int64_t handled_before_vip = 0;  // regular orders already out of the queue when the VIPs came
  std::int64_t received_before = 0;     // the device may have served others before us
  if (f.has("admin"))
    if (auto st = example::admin_stats(ctx, f.need("admin"), 2s)) received_before = (*st)["received"];
  for (int i = 0; i < regular + vip; ++i) {
    const bool is_vip = i >= regular;
    if (i == regular && f.has("admin")) {
      // Make sure the backlog is really waiting in the device before the VIPs arrive.
      const auto deadline = std::chrono::steady_clock::now() + 5s;
      for (;;) {
        auto st = example::admin_stats(ctx, f.need("admin"), 2s);
        if (st && (*st)["received"] - received_before >= regular) {
          handled_before_vip = regular - (*st)["pending"];
          break;
        }
        if (std::chrono::steady_clock::now() > deadline) break;
        std::this_thread::sleep_for(2ms);
      }
      std::cout << "  backlog: " << regular - handled_before_vip
                << " regular orders waiting or at the worker\n";
    }
    sales::order o{i + 1, skus[static_cast<std::size_t>(i) % skus.size()], 1 + i % 3, is_vip};
    auto env = zmqkit::make_envelope("order.place", o);
    env.priority = static_cast<std::uint8_t>(is_vip ? vip_priority : 2);
    sent[shop.send(std::move(env))] = {is_vip, i, std::chrono::steady_clock::now()};
  }
  std::vector<double> lat_regular, lat_vip;
  int order_failures = 0;
  const auto order_deadline = std::chrono::steady_clock::now() + 20s;
  while (shop.in_flight() > 0 && std::chrono::steady_clock::now() < order_deadline) {
    auto c = shop.poll(10ms);
    drain_stock();
    if (!c) continue;
    auto& s = sent.at(c->id);
    (s.vip ? lat_vip : lat_regular)
        .push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s.t0).count());
    if (!c->outcome) {
      ++order_failures;
      std::cout << "  order failed: " << c->outcome.failure().code << " " << c->outcome.failure().reason
                << "\n";
      continue;
    }
    s.processed_seq = c->outcome.reply().body_as<sales::order_confirmation>().processed_seq;
  }
  int overtakes = 0;
  std::int64_t last_vip_seq = 0;
  for (auto& [id, v] : sent) {
    if (!v.vip) continue;
    last_vip_seq = std::max(last_vip_seq, v.processed_seq);
    for (auto& [id2, r] : sent)
      if (!r.vip && r.sent_index < v.sent_index && r.processed_seq > v.processed_seq) ++overtakes;
  }
  std::cout << "  VIP orders were handled as numbers ≤ " << last_vip_seq << " of " << regular + vip
            << "; each VIP overtook the regular orders queued before it: " << overtakes << " overtakes\n";
  check(order_failures == 0 && lat_regular.size() + lat_vip.size() == sent.size(), "every order confirmed");
  // The VIPs go next: after the regular orders already handled or held by the worker (+1 for
  // one dispatched while we looked), before every regular order still waiting.
  const auto bound = handled_before_vip + 1 + vip + 1;
  check(last_vip_seq <= bound,
        "VIP orders overtook the backlog (all handled within the first " + std::to_string(bound) + ")");
  summary["order.place"] = std::to_string(lat_regular.size());
  summary["order.place.p50_ms"] = std::to_string(example::percentile_ms(lat_regular, 0.5));
  summary["order.place.p99_ms"] = std::to_string(example::percentile_ms(lat_regular, 0.99));
  summary["order.place.vip"] = std::to_string(lat_vip.size());
  summary["order.place.vip.p50_ms"] = std::to_string(example::percentile_ms(lat_vip, 0.5));
  summary["order.place.vip.p99_ms"] = std::to_string(example::percentile_ms(lat_vip, 0.99));
  summary["overtakes"] = std::to_string(overtakes);

  // 2. Payments with a 300 ms TTL against a bank that takes 100 ms each: the ones
  //    that cannot be handled in time fail with `expired`, none is charged late.
  std::cout << "== payments: " << payments << " authorisations at once, TTL 300 ms, bank takes 100 ms each\n";
  struct sent_payment {
    zmqkit::wall_time expires_at;
    std::chrono::steady_clock::time_point t0;
  };
  std::unordered_map<zmqkit::message_id, sent_payment> pay_sent;
  for (int i = 0; i < payments; ++i) {
    auto env = zmqkit::make_envelope("payment.authorize", sales::payment{i + 1, 1999 + i});
    env.ttl = 300ms;
    pay_sent[env.id] = {*env.expires_at(), std::chrono::steady_clock::now()};
    shop.send(std::move(env));
  }
  int charged = 0, expired = 0, other = 0, late_charges = 0;
  std::vector<double> lat_pay;
  const auto pay_deadline = std::chrono::steady_clock::now() + 10s;
  while (shop.in_flight() > 0 && std::chrono::steady_clock::now() < pay_deadline) {
    auto c = shop.poll(50ms);
    if (!c) continue;
    auto& p = pay_sent.at(c->id);
    lat_pay.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p.t0).count());
    if (c->outcome) {
      ++charged;
      auto a = c->outcome.reply().body_as<sales::authorisation>();
      if (a.charged_at_ns > p.expires_at.time_since_epoch().count()) ++late_charges;
    } else if (c->outcome.failure().code == "expired") {
      ++expired;
    } else {
      ++other;
      std::cout << "  payment failed: " << c->outcome.failure().code << "\n";
    }
  }
  auto pay_result = payments_svc.stop();
  std::cout << "  charged " << charged << ", expired " << expired
            << " (of which the worker refused after the bank call: "
            << example::get_num(pay_result, "refused_late") << ")\n";
  check(charged + expired == payments && other == 0, "every payment either charged or expired");
  check(charged >= 1 && expired >= 1, "some were charged in time, the rest expired");
  check(late_charges == 0, "no payment charged after its deadline");
  check(example::get_num(pay_result, "charged") == static_cast<std::uint64_t>(charged),
        "the worker charged exactly the payments the shop saw authorised (" +
            std::to_string(example::get_num(pay_result, "charged")) + ")");
  summary["payment.authorize"] = std::to_string(payments);
  summary["payment.authorize.p50_ms"] = std::to_string(example::percentile_ms(lat_pay, 0.5));
  summary["payment.authorize.p99_ms"] = std::to_string(example::percentile_ms(lat_pay, 0.99));
  summary["expired_payments"] = std::to_string(expired);

  // 3. Inventory: every order published one stock.changed; restock what fell below the threshold.
  std::cout << "== inventory: stock.changed to the restock planner, restock pipeline below "
            << restock_threshold << "\n";
  {
    // The last events may still be on their way: wait for one per order, bounded.
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (stock_events < sent.size() && std::chrono::steady_clock::now() < deadline) {
      if (auto n = stock_sub.receive(10ms); n && n->env.type == "stock.changed") {
        auto s = n->env.body_as<sales::stock_level>();
        on_hand[s.sku] = s.on_hand;
        ++stock_events;
      }
    }
  }
  auto order_result = orders_svc.stop();
  const auto gaps = stock_sub.stats().gaps + stock_sub.stats().missed;
  check(stock_events == sent.size() && gaps == 0, "one stock.changed per order (" +
                                                      std::to_string(stock_events) +
                                                      "), subscriber gaps: " + std::to_string(gaps));
  check(example::get_num(order_result, "processed") == sent.size(),
        "the order worker handled each order once");

  zmqkit::pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*",
                                    {.delivery = zmqkit::pipeline::delivery::at_least_once});
  bool complete = false;
  zmqkit::pipeline::sink sink(ctx, "tcp://127.0.0.1:*",
                              {.ventilator_endpoint = vent.endpoint(),
                               .batch_deadline = 3s,
                               .on_report = [&](const zmqkit::pipeline::batch_report& r) {
                                 complete = complete || r.state == zmqkit::pipeline::batch_state::complete;
                               }});
  example::child restocker("restock-worker",
                           {"restock-worker", "--ventilator", vent.endpoint(), "--sink", sink.endpoint()});
  restocker.expect("ready");
  std::vector<zmqkit::envelope> tasks;
  std::set<std::string> low;
  for (auto& [sku, n] : on_hand)
    if (n < restock_threshold) {
      low.insert(sku);
      tasks.push_back(
          zmqkit::make_envelope("restock.request", sales::restock_request{sku, n, restock_target}));
    }
  std::set<std::string> restocked;
  if (!tasks.empty()) {
    auto batch = vent.submit_batch(std::move(tasks));
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (batch && !(complete && vent.batch_done(*batch)) && std::chrono::steady_clock::now() < deadline) {
      vent.poll(5ms);
      while (auto r = sink.receive(0ms)) {
        auto o = r->body_as<sales::restock_order>();
        std::cout << "  restock: " << o.sku << " (" << on_hand[o.sku] << " left) +" << o.quantity << "\n";
        restocked.insert(o.sku);
      }
    }
  }
  restocker.stop();
  check(!low.empty(), std::to_string(low.size()) + " of " + std::to_string(skus.size()) +
                          " items fell below " + std::to_string(restock_threshold));
  check(restocked == low && complete, "each of them restocked once, batch complete");
  summary["restock.request"] = std::to_string(restocked.size());
  summary["stock.changed"] = std::to_string(stock_events);
  summary["gaps"] = std::to_string(gaps);

  if (f.has("admin"))
    if (auto st = example::admin_stats(ctx, f.need("admin"), 2s))
      std::cout << "  zmqkit-queue: expired " << (*st)["expired"] << ", routed " << (*st)["routed"] << "\n";

  std::string line = "summary sales";
  for (auto& [k, v] : summary) line += " " + k + "=" + v;
  say(line);
  std::cout << (check.failed() ? "sales scenario: FAILED\n" : "sales scenario: all checks passed\n");
  return check.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string role = argc > 1 ? argv[1] : "";
  // Roles stop cleanly on SIGTERM and print their results; a scenario interrupted by
  // Ctrl-C just dies, and its children follow (PR_SET_PDEATHSIG).
  if (role != "scenario" && role != "stats") example::install_stop_handler();
  try {
    example::flags f(argc, argv, 2);
    if (role == "order-worker") return order_worker(f);
    if (role == "payment-worker") return payment_worker(f);
    if (role == "restock-worker") return restock_worker(f);
    if (role == "stats") return stats(f);
    if (role == "scenario") return scenario(f);
  } catch (const std::exception& e) {
    std::cerr << "sales " << role << ": " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: sales order-worker|payment-worker|restock-worker|scenario|stats [--flags]\n"
               "  see examples/sales/README.md\n";
  return 2;
}
