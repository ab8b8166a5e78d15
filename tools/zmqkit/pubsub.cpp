// `zmqkit pub` and `zmqkit sub`: the pub/sub wire format, frames [topic = type, envelope],
// on the library's publisher (which stamps zmk.pub / zmk.seq) and subscriber (which
// checks them), so the tool behaves exactly as a program linking zmqkit does.
#include <iostream>
#include <memory>
#include <optional>
#include <zmqkit/pubsub/publisher.hpp>
#include <zmqkit/pubsub/subscriber.hpp>

#include "commands.hpp"

namespace zmqkit::tool {

namespace {

// What `pub` sends goes through the library publisher (zmk.pub, zmk.seq per
// type), then through a one-message inproc hop to an XPUB this tool owns. The
// library publisher cannot report subscriptions nor hold back for a slow
// subscriber (it drops at its high-water mark); the XPUB can do both: it counts
// subscriptions for --wait-subscribers, and with XPUB_NODROP a full subscriber
// makes the send wait (bounded by --timeout) instead of losing the envelope.
class relayed_publisher {
 public:
  relayed_publisher(zmq::context_t& ctx, const endpoint_options& ep, std::string id,
                    std::chrono::milliseconds timeout)
      : network_(ctx, zmq::socket_type::xpub), hop_(ctx, zmq::socket_type::xsub), timeout_(timeout) {
    apply(network_, make_socket_options(ep));
    network_.set(zmq::sockopt::xpub_verbose, 1);
    network_.set(zmq::sockopt::xpub_nodrop, 1);
    network_.set(zmq::sockopt::sndtimeo, static_cast<int>(timeout.count()));
    // At exit, wait (as long as --timeout) until every accepted envelope has left.
    network_.set(zmq::sockopt::linger, static_cast<int>(timeout.count()));
    attach(network_, ep);

    const std::string hop_endpoint = "inproc://zmqkit-pub-hop";
    library_.emplace(ctx, pubsub::publisher_options{.id = std::move(id)});
    library_->bind(hop_endpoint);
    // Subscribe to everything before connecting: the XSUB hands its subscriptions
    // to the new pipe as it attaches, so the publisher has them before its first send.
    const char everything = 1;
    hop_.send(zmq::buffer(&everything, 1), zmq::send_flags::none);
    hop_.set(zmq::sockopt::rcvtimeo, 1000);
    hop_.connect(hop_endpoint);
  }

  // Waits until `wanted` subscriptions accepted by `matches` have arrived.
  // Returns: how many did (fewer on timeout or interruption).
  template <class Matches>
  int wait_subscriptions(int wanted, Matches matches) {
    int matching = 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (matching < wanted && !interrupted.load()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait_readable(network_, left)) break;
      zmq::message_t msg;
      if (!network_.recv(msg, zmq::recv_flags::dontwait) || msg.size() == 0) continue;
      const std::string_view sub = as_string_view(msg);
      if (sub[0] == 1 && matches(sub.substr(1))) ++matching;  // 0 = an unsubscription
    }
    return matching;
  }

  // Returns: false when no subscriber took the envelope within the timeout.
  // Throws: zmqkit::error{bad_envelope} from the library publisher.
  bool publish(envelope env) {
    library_->publish(std::move(env));
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(hop_, std::back_inserter(frames)) || frames.size() != 2)
      throw failure(exit_failure, "internal: the publisher's message did not come through the inproc hop");
    if (!network_.send(frames[0], zmq::send_flags::sndmore)) return false;
    return network_.send(frames[1], zmq::send_flags::none).has_value();
  }

  const std::string& id() const { return library_->id(); }

 private:
  zmq::socket_t network_;
  zmq::socket_t hop_;
  std::optional<pubsub::publisher> library_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

command add_pub(CLI::App& root) {
  struct state : send_options {
    int wait_subscribers = 0;
    std::string publisher_id;
  };
  auto s = std::make_shared<state>();
  auto* app = root.add_subcommand(
      "pub", "Publish envelopes (XPUB; frames: [type, envelope]), stamping zmk.pub/zmk.seq");
  add_endpoint_options(*app, s->ep);
  add_envelope_options(*app, s->in, true);
  add_checked_option(*app, "-n,--count", s->count, "Publish the envelope N times (zmk.seq 1..N)",
                     CLI::PositiveNumber);
  add_checked_option(*app, "--interval", s->interval_ms, "Wait MS between envelopes", CLI::NonNegativeNumber);
  add_checked_option(*app, "--wait-subscribers", s->wait_subscribers,
                     "Publish only once N subscriptions matching the type arrived (ZeroMQ drops messages "
                     "published before a subscriber joins)",
                     CLI::NonNegativeNumber);
  add_checked_option(
      *app, "--timeout", s->timeout_ms,
      "Give up waiting for subscribers, or for a full subscriber to take an envelope, after MS; "
      "also bounds the final flush",
      CLI::NonNegativeNumber);
  app->add_option("--publisher-id", s->publisher_id, "The zmk.pub value (default: a fresh UUID)");
  return {app, [s] {
            envelope_source source(s->in);
            source.set_repeat(s->count);
            zmq::context_t ctx;
            relayed_publisher pub(ctx, s->ep,
                                  s->publisher_id.empty() ? message_id::generate().to_string() : s->publisher_id,
                                  ms(s->timeout_ms));
            install_signal_handlers();
            // With --jsonl the types are not known in advance: any subscription counts.
            const int matching = pub.wait_subscriptions(s->wait_subscribers, [&](std::string_view prefix) {
              return s->in.jsonl || std::string_view(s->in.type).starts_with(prefix);
            });
            if (interrupted.load()) return exit_ok;
            if (matching < s->wait_subscribers)
              throw failure(exit_failure, timeout_message(std::to_string(matching) + " of " +
                                                              std::to_string(s->wait_subscribers) +
                                                              " subscriptions arrived",
                                                          s->timeout_ms, s->ep.describe()));
            send_each(source, *s, "a subscriber did not take",
                      [&](envelope& env) { return pub.publish(std::move(env)); });
            return exit_ok;
          }};
}

command add_sub(CLI::App& root) {
  struct state {
    endpoint_options ep;
    output_options out;
    std::vector<std::string> prefixes;
    long long count = 0;
    long long timeout_ms = -1;
    std::string replay, durable;
    std::uint64_t from_seq = 0;
    long long since_ms = -1;
  };
  auto s = std::make_shared<state>();
  auto* app = root.add_subcommand(
      "sub",
      "Tail notifications by type prefix (SUB), printing JSON lines and reporting sequence gaps on stderr");
  add_endpoint_options(*app, s->ep);
  add_output_options(*app, s->out);
  app->add_option("-s,--prefix", s->prefixes,
                  "Type prefix to receive, e.g. course. (repeatable; default: all)");
  add_receive_limit_options(*app, s->count, s->timeout_ms);
  app->add_option("--replay", s->replay,
                  "A storing forwarder's snapshot endpoint (zmqkit-forwarder --store): gaps are repaired from it");
  app->add_option("--from-seq", s->from_seq, "Begin every stream at this zmk.seq, replayed (needs --replay)")
      ->check(CLI::PositiveNumber);
  app->add_option("--since-ms", s->since_ms,
                  "Begin every stream at the first message the forwarder received at or after this Unix time in "
                  "milliseconds (needs --replay)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--durable", s->durable,
                  "Durable subscriber NAME: the forwarder keeps where it got to, and a restart resumes there "
                  "(needs --replay; at least once)");
  return {
      app, [s] {
        if (!s->ep.bind.empty()) throw failure(exit_usage, "sub connects (--connect); it cannot --bind");
        if (s->ep.connect.empty()) throw failure(exit_usage, "give an endpoint: --connect");
        // Gap detection, the topic = type rule and zmk.seq parsing are the library
        // subscriber's, so the tool sees exactly what a program linking zmqkit sees.
        pubsub::subscriber_options opts{
            .on_gap =
                [](const pubsub::gap& g) {
                  std::cerr << "zmqkit sub: gap: publisher " << g.publisher << " type " << g.type
                            << " lost seq " << g.first_missing;
                  if (g.count > 1) std::cerr << ".." << g.first_missing + g.count - 1;
                  std::cerr << " (" << g.count << " envelope" << (g.count > 1 ? "s" : "") << ")\n";
                },
            .socket = make_socket_options(s->ep),
            .replay_endpoint = s->replay,
            .start = {.sequence = s->from_seq},
            .durable_name = s->durable};
        if (s->since_ms >= 0)
          opts.start.time = wall_time(std::chrono::milliseconds(s->since_ms));
        zmq::context_t ctx;
        pubsub::subscriber sub(ctx, opts);
        if (s->prefixes.empty()) s->prefixes.emplace_back();
        for (const auto& p : s->prefixes) sub.subscribe(p);
        for (const auto& ep : s->ep.connect) sub.connect(ep);
        install_signal_handlers();
        const auto& st = sub.stats();
        std::uint64_t bad_reported = 0, restarts_reported = 0;
        long long received = 0;
        auto silent_since = std::chrono::steady_clock::now();
        while (s->count == 0 || received < s->count) {
          if (interrupted.load()) break;
          // Slices, so an interruption is seen promptly; --timeout counts silence across them.
          auto n = sub.receive(std::chrono::milliseconds(100));
          if (st.bad_frames > bad_reported) {
            std::cerr << "zmqkit sub: dropped " << st.bad_frames - bad_reported
                      << " malformed message(s): not [type, envelope] with topic = type, or a bad zmk.seq\n";
            bad_reported = st.bad_frames;
          }
          if (!n) {
            if (s->timeout_ms >= 0 && std::chrono::steady_clock::now() - silent_since >= ms(s->timeout_ms)) break;
            continue;
          }
          silent_since = std::chrono::steady_clock::now();
          if (st.restarts > restarts_reported) {
            restarts_reported = st.restarts;
            std::cerr << "zmqkit sub: publisher " << n->env.header(header::publisher).value_or("?") << " type "
                      << n->env.type << " restarted: seq " << n->sequence << '\n';
          }
          print_envelope(n->env, s->out);
          ++received;
        }
        if (st.gaps > 0)
          std::cerr << "zmqkit sub: " << received << " envelopes received, " << st.missed << " lost in "
                    << st.gaps << " gap" << (st.gaps > 1 ? "s" : "") << '\n';
        if (interrupted.load()) return exit_ok;
        require_received(received, s->count, s->timeout_ms, s->ep);
        return exit_ok;
      }};
}

}  // namespace zmqkit::tool
