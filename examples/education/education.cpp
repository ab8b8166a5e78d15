// education — an online-education back end on zmqkit, one program, one role per process:
//
//   education registration-worker --backend EP    registers users (behind zmqkit-queue)
//   education course-listener --name N --pub EP [--snapshot EP]
//                                                 email / recommendation service (pub/sub)
//   education review-worker --ventilator EP --sink EP   scores reviews (pipeline)
//   education scenario --frontend EP --backend EP [--admin EP] [--users N] [--reviews N]
//                                                 the web front: starts the roles above as
//                                                 child processes, drives them, checks the outcome
//
// See README.md in this folder for what each part shows.
#include "education.hpp"

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

// --- registration worker: req/rep behind zmqkit-queue ------------------------------------
// Emails starting "slow." simulate a slow database write (600 ms): longer than the
// web client's retry timeout, so the client retries while the first attempt still
// runs. The queue device sees the same request id again and does not hand it to a
// second worker: one account per registration.
int registration_worker(const example::flags& f) {
  zmq::context_t ctx;
  std::mutex mu;
  std::vector<std::string> created;  // one entry per account created, printed at the end
  int counter = 0;
  const auto slow = std::chrono::milliseconds(f.num("slow-ms", 600));
  {
    zmqkit::reqrep::worker w(
        ctx, f.need("backend"),
        [&](const zmqkit::envelope& req) {
          auto r = req.body_as<education::registration>();
          if (r.email.find('@') == std::string::npos)
            throw zmqkit::reqrep::handler_error("invalid-email", r.email + " is not an email address");
          if (r.email.rfind("slow.", 0) == 0) std::this_thread::sleep_for(slow);
          std::lock_guard lock(mu);
          created.push_back(r.email);
          education::account a{r.email, "acct-" + std::to_string(getpid()) + "-" + std::to_string(++counter)};
          return zmqkit::make_reply(req, "user.registered", a);
        },
        {.services = {"user."}});
    say("ready");
    while (!example::stopping()) w.poll(100ms);
    w.stop();
  }
  for (auto& e : created) example::result("created", e);
  return 0;
}

// --- course listeners: pub/sub ---------------------------------------------------------------
// The email service mails every new subscriber; the recommendation service keeps
// the course totals. Started late, a listener takes the current totals from the
// publisher's snapshot and continues live from there without a gap.
int course_listener(const example::flags& f) {
  zmq::context_t ctx;
  const std::string name = f.need("name");
  zmqkit::pubsub::subscriber_options opts;
  if (f.has("snapshot")) opts.snapshot_endpoints = {f.need("snapshot")};
  zmqkit::pubsub::subscriber sub(ctx, opts);
  sub.subscribe("course.");  // course.subscribed and the web's course.ping
  sub.connect(f.need("pub"));

  bool ready = false;
  std::uint64_t live = 0, emails = 0, snapshot_values = 0;
  std::map<std::string, std::int64_t> totals;
  while (!example::stopping()) {
    auto n = example::interruptible([&] { return sub.receive(100ms); });
    if (!n) continue;
    if (n->env.type == "course.ping") {
      if (n->from_snapshot) continue;
      if (!ready) {
        // The ping proves our subscription reached the publisher: from here on
        // nothing is missed, so this is the moment to ask for the snapshot.
        if (f.has("snapshot") && !sub.request_snapshot(2s)) say("snapshot-timeout");
        ready = true;
        say("ready");
      }
      if (auto round = n->env.body_as<std::int64_t>(); round > 0) say("pong " + std::to_string(round));
      continue;
    }
    if (n->env.type != "course.subscribed") continue;
    auto s = n->env.body_as<education::course_subscription>();
    totals = s.totals;  // the event carries the state, so a snapshot value is enough
    if (n->from_snapshot) {
      ++snapshot_values;
      continue;  // state, not an event: nobody gets a second welcome mail
    }
    ++live;
    if (name == "email") ++emails;  // a real service would send "Welcome to <course>" here
  }
  const auto& st = sub.stats();
  example::result("received", live);
  example::result("snapshot_values", snapshot_values);
  example::result("emails", emails);
  example::result("gaps", st.gaps);
  example::result("missed", st.missed);
  std::string t;
  for (auto& [course, count] : totals) t += course + "=" + std::to_string(count) + ",";
  example::result("totals", t);
  return 0;
}

// --- review scoring worker: pipeline -------------------------------------------------------
int review_worker(const example::flags& f) {
  zmq::context_t ctx;
  std::uint64_t scored = 0;
  {
    zmqkit::pipeline::worker w(ctx, f.need("ventilator"), f.need("sink"), {.credit = 4});
    say("ready");
    while (!example::stopping()) {
      auto task = example::interruptible([&] { return w.receive(100ms); });
      if (!task) continue;
      auto r = task->body_as<education::review>();
      double score = static_cast<double>(r.stars);
      if (r.text.find("great") != std::string::npos) score += 0.5;
      if (r.text.find("boring") != std::string::npos) score -= 0.5;
      score = std::clamp(score, 0.0, 5.0);
      std::this_thread::sleep_for(1ms);  // the "model"
      w.send_result(zmqkit::make_reply(*task, "review.scored", education::review_score{r.course, score}));
      ++scored;
    }
  }
  example::result("scored", scored);
  return 0;
}

// --- the scenario: the web front and everything it checks -------------------------------------
const std::vector<std::string> courses = {"cpp101", "distributed-systems", "zeromq-in-depth"};

std::string format_totals(const std::map<std::string, std::int64_t>& totals) {
  std::string t;
  for (auto& [course, count] : totals) t += course + "=" + std::to_string(count) + ",";
  return t;
}

int scenario(const example::flags& f) {
  const int users = f.num("users", 40);
  const int reviews = f.num("reviews", 300);
  const std::string frontend = f.need("frontend"), backend = f.need("backend");
  zmq::context_t ctx;
  example::checks check;
  std::map<std::string, std::string> summary;

  // 1. Registration through zmqkit-queue, two workers, retrying client.
  std::cout << "== registration: " << users << " users through zmqkit-queue, 2 registration workers\n";
  std::vector<std::unique_ptr<example::child>> reg_workers;
  for (int i = 0; i < 2; ++i) {
    reg_workers.push_back(std::make_unique<example::child>(
        "registration-worker", std::vector<std::string>{"registration-worker", "--backend", backend}));
    reg_workers.back()->expect("ready");
  }
  zmqkit::reqrep::client web(ctx, frontend, {.retry = {.timeout = 250ms, .retries = 5}});
  std::unordered_map<zmqkit::message_id, std::pair<std::string, std::chrono::steady_clock::time_point>> sent;
  std::vector<std::string> emails;
  for (int i = 0; i < users; ++i) {
    // Every twentieth user hits the slow database path and will be retried by the client.
    std::string email =
        (i % 20 == 3 ? "slow." : "") + std::string("user") + std::to_string(i) + "@example.org";
    emails.push_back(email);
    auto id = web.send(
        zmqkit::make_envelope("user.register", education::registration{email, "User " + std::to_string(i)}));
    sent[id] = {email, std::chrono::steady_clock::now()};
  }
  std::vector<double> latency_ms;
  std::map<std::string, std::string> accounts;  // email → account id from the reply
  int failures = 0;
  const auto reg_deadline = std::chrono::steady_clock::now() + 15s;
  while (web.in_flight() > 0 && std::chrono::steady_clock::now() < reg_deadline) {
    auto c = web.poll(100ms);
    if (!c) continue;
    auto& [email, t0] = sent.at(c->id);
    latency_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!c->outcome) {
      ++failures;
      std::cout << "  " << email << ": " << c->outcome.failure().code << " " << c->outcome.failure().reason
                << "\n";
      continue;
    }
    accounts[email] = c->outcome.reply().body_as<education::account>().account_id;
  }
  std::map<std::string, int> created;  // email → accounts created, over both workers
  for (auto& w : reg_workers)
    for (auto& [key, email] : w->stop())
      if (key == "created") ++created[email];
  int duplicate_accounts = 0;
  for (auto& [email, n] : created) duplicate_accounts += n - 1;
  const auto retries = web.stats().retries;
  for (auto& email : emails)
    if (email.rfind("slow.", 0) == 0)
      std::cout << "  " << email
                << ": first attempt outlived the client's 250 ms timeout, retried; accounts created: "
                << created[email] << " (" << accounts[email] << ")\n";
  check(failures == 0 && static_cast<int>(accounts.size()) == users,
        "every user got a reply (" + std::to_string(accounts.size()) + "/" + std::to_string(users) + ")");
  check(retries > 0, "the slow registrations were retried (" + std::to_string(retries) + " retries)");
  check(static_cast<int>(created.size()) == users && duplicate_accounts == 0,
        "one account per user, none twice (" + std::to_string(created.size()) + " accounts, " +
            std::to_string(duplicate_accounts) + " duplicates)");
  summary["user.register"] = std::to_string(latency_ms.size());
  summary["user.register.p50_ms"] = std::to_string(example::percentile_ms(latency_ms, 0.5));
  summary["user.register.p99_ms"] = std::to_string(example::percentile_ms(latency_ms, 0.99));
  summary["retries"] = std::to_string(retries);
  summary["duplicate_accounts"] = std::to_string(duplicate_accounts);

  // 2. Course subscriptions over pub/sub; the recommendation service starts late.
  std::cout
      << "== course subscriptions: published as course.subscribed, email + (late) recommendation service\n";
  zmqkit::pubsub::publisher pub(
      ctx, {.id = "web-" + std::to_string(getpid()), .snapshot_endpoint = "tcp://127.0.0.1:*"});
  const std::string pub_ep = pub.bind("tcp://127.0.0.1:*");
  const std::string snap_ep = pub.snapshot_endpoint();
  // Ping until the listener says it hears us: a subscription needs a moment to reach the publisher.
  auto ping_until_ready = [&](example::child& listener) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      pub.publish("course.ping", std::int64_t{0});
      if (auto line = listener.read_line(50ms); line && *line == "ready") return;
    }
    throw std::runtime_error(listener.name() + " never heard the publisher");
  };
  example::child email_service("email", {"course-listener", "--name", "email", "--pub", pub_ep});
  ping_until_ready(email_service);
  std::map<std::string, std::int64_t> totals;
  auto subscribe = [&](int i) {
    const std::string& course = courses[static_cast<std::size_t>(i) % courses.size()];
    ++totals[course];
    pub.publish("course.subscribed",
                education::course_subscription{emails[static_cast<std::size_t>(i)], course, totals});
  };
  const int half = users / 2;
  for (int i = 0; i < half; ++i) subscribe(i);
  const std::string totals_when_late_joined = format_totals(totals);
  example::child recommendation("recommendation", {"course-listener", "--name", "recommendation", "--pub",
                                                   pub_ep, "--snapshot", snap_ep});
  ping_until_ready(recommendation);
  for (int i = half; i < users; ++i) subscribe(i);
  pub.publish("course.ping", std::int64_t{1});  // after every subscription, on the same connection
  email_service.expect("pong");
  recommendation.expect("pong");
  auto email_result = email_service.stop();
  auto rec_result = recommendation.stop();
  const auto gaps = example::get_num(email_result, "gaps") + example::get_num(rec_result, "gaps") +
                    example::get_num(email_result, "missed") + example::get_num(rec_result, "missed");
  std::cout << "  recommendation service joined after " << half
            << " subscriptions (totals then: " << totals_when_late_joined
            << "), snapshot values: " << example::get_num(rec_result, "snapshot_values") << "\n";
  check(example::get_num(email_result, "emails") == static_cast<std::uint64_t>(users),
        "email service mailed every subscriber once (" +
            std::to_string(example::get_num(email_result, "emails")) + "/" + std::to_string(users) + ")");
  check(example::get_num(rec_result, "snapshot_values") >= 1 &&
            example::get_num(rec_result, "received") == static_cast<std::uint64_t>(users - half),
        "late recommendation service: state from the snapshot, then " +
            std::to_string(example::get_num(rec_result, "received")) + " live events");
  check(rec_result.find("totals")->second == format_totals(totals),
        "its course totals match the web's: " + format_totals(totals));
  check(gaps == 0, "subscriber gaps: " + std::to_string(gaps));
  summary["course.subscribed"] = std::to_string(users);
  summary["gaps"] = std::to_string(gaps);

  // 3. Reviews over a pipeline: 2 scoring workers, the sink keeps each course's rating.
  std::cout << "== reviews: " << reviews << " reviews over a pipeline, 2 scoring workers\n";
  zmqkit::pipeline::ventilator vent(ctx, "tcp://127.0.0.1:*",
                                    {.delivery = zmqkit::pipeline::delivery::at_least_once});
  bool batch_reported_complete = false;
  zmqkit::pipeline::sink sink(
      ctx, "tcp://127.0.0.1:*",
      {.ventilator_endpoint = vent.endpoint(),
       .batch_deadline = 3s,
       .on_report = [&](const zmqkit::pipeline::batch_report& r) {
         std::cout << "  sink: batch " << r.batch.to_string().substr(0, 8) << "… "
                   << (r.state == zmqkit::pipeline::batch_state::complete ? "complete" : "incomplete") << ", "
                   << r.received << "/" << r.expected << " reviews\n";
         if (r.state == zmqkit::pipeline::batch_state::complete) batch_reported_complete = true;
       }});
  std::vector<std::unique_ptr<example::child>> scorers;
  for (int i = 0; i < 2; ++i) {
    scorers.push_back(std::make_unique<example::child>(
        "review-worker", std::vector<std::string>{"review-worker", "--ventilator", vent.endpoint(), "--sink",
                                                  sink.endpoint()}));
    scorers.back()->expect("ready");
  }
  std::map<std::string, int> submitted_per_course;
  std::vector<zmqkit::envelope> tasks;
  const char* texts[] = {"great course", "a bit boring", "solid material", "great labs, boring videos"};
  for (int i = 0; i < reviews; ++i) {
    const std::size_t c = static_cast<std::size_t>(i) % courses.size();
    const std::int64_t base[] = {4, 3, 5};  // some courses are better than others
    education::review r{courses[c], std::clamp<std::int64_t>(base[c] + (i / 3) % 3 - 1, 1, 5), texts[i % 4]};
    ++submitted_per_course[r.course];
    tasks.push_back(zmqkit::make_envelope("review.score", r));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto batch = vent.submit_batch(std::move(tasks));
  std::map<std::string, std::pair<int, double>> rating;  // course → (reviews, score sum)
  const auto deadline = t0 + 20s;
  while (batch && !(batch_reported_complete && vent.batch_done(*batch)) &&
         std::chrono::steady_clock::now() < deadline) {
    vent.poll(5ms);
    while (auto r = sink.receive(0ms)) {
      auto s = r->body_as<education::review_score>();
      rating[s.course].first += 1;
      rating[s.course].second += s.score;
    }
  }
  const double batch_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  for (auto& s : scorers) s->stop();
  bool counts_match = true;
  for (auto& [course, n] : submitted_per_course) {
    std::printf("  %-20s %3d reviews, rating %.2f\n", course.c_str(), rating[course].first,
                rating[course].first ? rating[course].second / rating[course].first : 0.0);
    counts_match = counts_match && rating[course].first == n;
  }
  check(batch_reported_complete,
        "the sink reported the batch complete (" + std::to_string(static_cast<int>(batch_ms)) + " ms)");
  check(counts_match && sink.stats().results == static_cast<std::uint64_t>(reviews),
        "every review scored exactly once (" + std::to_string(sink.stats().results) + "/" +
            std::to_string(reviews) +
            ", duplicates dropped by the sink: " + std::to_string(sink.stats().duplicates) + ")");
  summary["review.score"] = std::to_string(sink.stats().results);
  summary["review.batch_ms"] = std::to_string(static_cast<int>(batch_ms));

  // The device's own view of the retries, when we were told where its admin endpoint is.
  if (f.has("admin"))
    if (auto st = example::admin_stats(ctx, f.need("admin"), 2s))
      std::cout << "  zmqkit-queue: received " << (*st)["received"] << ", duplicates suppressed "
                << (*st)["duplicates_suppressed"] << ", answered from cache " << (*st)["answered_from_cache"]
                << "\n";

  std::string line = "summary education";
  for (auto& [k, v] : summary) line += " " + k + "=" + v;
  say(line);
  std::cout << (check.failed() ? "education scenario: FAILED\n" : "education scenario: all checks passed\n");
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
    if (role == "registration-worker") return registration_worker(f);
    if (role == "course-listener") return course_listener(f);
    if (role == "review-worker") return review_worker(f);
    if (role == "scenario") return scenario(f);
  } catch (const std::exception& e) {
    std::cerr << "education " << role << ": " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: education registration-worker|course-listener|review-worker|scenario [--flags]\n"
               "  see examples/education/README.md\n";
  return 2;
}
