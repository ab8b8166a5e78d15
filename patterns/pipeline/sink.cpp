#include <algorithm>
#include <map>
#include <zmqkit/poll.hpp>
#include <zmqkit/pipeline/protocol.hpp>
#include <zmqkit/pipeline/sink.hpp>

#include "detail.hpp"
#include <zmqkit/internal/loop_attachment.hpp>

namespace zmqkit::pipeline {

namespace {

struct batch_track {
  std::optional<std::size_t> expected;
  detail::id_set received;
  std::vector<message_id> ids;  // the ventilator's list, in its order (it may come in parts)
  detail::id_set id_set;
  bool ids_known = false;  // the whole list has arrived
  steady_time deadline{};
  int reports = 0;
  batch_state state = batch_state::open;
};

}  // namespace

struct sink::impl {
  sink_options opts;
  zmq::socket_t results;
  zmq::socket_t control;
  bool has_control;
  std::map<message_id, batch_track> batches;  // time-ordered ids: begin() is the oldest
  std::optional<steady_time> next_deadline;
  bool control_due = true;
  batch_track* cached = nullptr;  // the batch of the last result
  message_id cached_id{};
  std::string cached_text;
  std::size_t results_since_control = 0;
  std::size_t results_since_timers = 0;
  sink_stats counters;
  std::function<void(envelope)> on_result;  // attach(): where results go
  internal::loop_attachment driven;         // after the sockets: its watches go first

  impl(zmq::context_t& ctx, const std::string& endpoint, sink_options o)
      : opts(std::move(o)),
        results(ctx, zmq::socket_type::pull),
        control(ctx, zmq::socket_type::dealer),
        has_control(!opts.ventilator_endpoint.empty()) {
    if (!opts.clock) opts.clock = &clock::real();  // null: the real clock, as everywhere
    apply(results, opts.socket);
    apply(control, opts.control_socket);
    results.bind(endpoint);
    if (has_control) {
      control.connect(opts.ventilator_endpoint);
      send_control(make_envelope(std::string(type::sink_hello), *opts.clock));
    }
  }

  void send_control(const envelope& env) {
    if (has_control) detail::send_control(control, env);
  }

  envelope batch_message(std::string_view type, const message_id& batch) {
    envelope env = make_envelope(std::string(type), *opts.clock);
    env.headers.emplace(header::batch, batch.to_string());
    return env;
  }

  batch_report report_of(const message_id& id, const batch_track& t) const {
    batch_report r{.batch = id,
                   .state = t.state,
                   .expected = t.expected.value_or(0),
                   .received = t.received.size(),
                   .missing = {},
                   .ids_known = t.ids_known};
    if (t.ids_known)
      for (const auto& task : t.ids)
        if (!t.received.contains(task)) r.missing.push_back(task);
    return r;
  }

  void notify(const message_id& id, const batch_track& t) {
    if (opts.on_report) opts.on_report(report_of(id, t));
  }

  void arm(steady_time deadline) {
    if (!next_deadline || deadline < *next_deadline) next_deadline = deadline;
  }

  batch_track& track(const message_id& id, bool* created = nullptr) {
    auto [it, inserted] = batches.try_emplace(id);
    if (inserted) {
      it->second.deadline = opts.clock->now() + opts.batch_deadline;
      arm(it->second.deadline);
      if (batches.size() > opts.max_batches) {  // forget the oldest other batch
        auto victim = batches.begin();
        if (victim == it) ++victim;
        if (cached == &victim->second) cached = nullptr;
        batches.erase(victim);
      }
    }
    if (created) *created = inserted;
    return it->second;
  }

  void check_complete(const message_id& id, batch_track& t) {
    if (t.state == batch_state::complete || !t.expected || t.received.size() < *t.expected) return;
    t.state = batch_state::complete;
    ++counters.batches_complete;
    send_control(batch_message(type::batch_done, id));
    notify(id, t);
  }

  void run_deadlines() {
    if (!next_deadline) return;
    const steady_time now = opts.clock->now();
    if (now < *next_deadline) return;
    next_deadline.reset();
    std::vector<batch_report> due;  // reported after the walk: a callback may not disturb it
    for (auto& [id, t] : batches) {
      if (t.state == batch_state::complete || t.state == batch_state::abandoned) continue;
      if (t.deadline > now) {
        arm(t.deadline);
        continue;
      }
      ++t.reports;
      ++counters.missing_reports;
      t.state = t.reports >= opts.max_reports ? batch_state::abandoned : batch_state::missing;
      batch_report r = report_of(id, t);
      if (t.state == batch_state::abandoned) {
        // The verdict, with whatever ids can be named (none when the list never came).
        envelope env = batch_message(type::batch_abandoned, id);
        env.body = detail::pack_ids(r.missing);
        send_control(env);
      } else if (!t.ids_known) {
        send_control(batch_message(type::batch_query, id));  // perhaps the list got lost: ask again
      } else if (!r.missing.empty()) {
        envelope env = batch_message(type::batch_missing, id);
        env.body = detail::pack_ids(r.missing);
        send_control(env);
      }
      if (t.state == batch_state::missing) {
        t.deadline = now + opts.batch_deadline;
        arm(t.deadline);
      }
      due.push_back(std::move(r));
    }
    if (opts.on_report)
      for (const auto& r : due) opts.on_report(r);
  }

  void handle_control(const zmq::message_t& frame) {
    const std::optional<envelope_view> decoded = try_decode_view(frame, opts.limits);
    if (!decoded) {
      ++counters.bad_frames;
      return;
    }
    const envelope_view& env = *decoded;
    const auto batch_text = env.header(header::batch);
    const auto batch = batch_text ? message_id::parse(*batch_text) : std::nullopt;
    const auto size = detail::parse_count(env.header(header::batch_size));
    auto ids = env.type == type::batch_begin && batch && size
                   ? detail::unpack_ids(env.body, opts.limits.max_frame_bytes / 16)
                   : std::nullopt;
    if (!ids) {
      ++counters.bad_frames;
      return;
    }
    batch_track& t = track(*batch);
    if (t.ids_known) return;  // announced twice (hello and query): the first list stands
    if (!t.expected) t.expected = static_cast<std::size_t>(*size);
    t.id_set.reserve(std::min(*t.expected, t.id_set.size() + ids->size()));
    for (const auto& id : *ids)
      if (t.id_set.size() < *t.expected && t.id_set.insert(id).second) t.ids.push_back(id);
    t.ids_known = t.id_set.size() == *t.expected;
    check_complete(*batch, t);
  }

  // Returns: the result when it is one to hand out (valid, not a duplicate).
  std::optional<envelope> accept(const zmq::message_t& frame) {
    if (frame.more()) {
      zmq::message_t rest;
      do {
        if (!results.recv(rest, zmq::recv_flags::dontwait)) break;
      } while (rest.more());
      ++counters.bad_frames;
      return std::nullopt;
    }
    envelope result;
    try {
      result = decode(frame, opts.limits);
    } catch (const zmqkit::error&) {
      ++counters.bad_frames;
      return std::nullopt;
    }
    const auto batch_text = result.header(header::batch);
    if (!batch_text) {  // outside any batch: nothing to track
      ++counters.results;
      return result;
    }
    const auto size = detail::parse_count(result.header(header::batch_size));
    if (!size || !result.correlation_id) {
      ++counters.bad_frames;
      return std::nullopt;
    }
    // Results come in runs of one batch: remember the last one looked up.
    if (!cached || *batch_text != cached_text) {
      const auto batch = message_id::parse(*batch_text);
      if (!batch) {
        ++counters.bad_frames;
        return std::nullopt;
      }
      bool created = false;
      batch_track& found = track(*batch, &created);
      if (created) send_control(batch_message(type::batch_query, *batch));
      cached = &found;
      cached_id = *batch;
      cached_text.assign(*batch_text);
    }
    batch_track& t = *cached;
    const message_id batch_id = cached_id;
    const message_id* batch = &batch_id;
    if (!t.expected) {
      t.expected = static_cast<std::size_t>(*size);
      t.received.reserve(std::min<std::size_t>(*t.expected, 1 << 16));  // the size is not trusted
    }
    if (t.ids_known && !t.id_set.contains(*result.correlation_id)) {
      ++counters.bad_frames;  // not a task of this batch
      return std::nullopt;
    }
    if (!t.received.insert(*result.correlation_id).second) {
      ++counters.duplicates;
      return std::nullopt;
    }
    ++counters.results;
    check_complete(*batch, t);
    return result;
  }

  // --- on a loop: the same accept/handle_control/run_deadlines as receive() ---
  void attach(zmqkit::loop& l, std::function<void(envelope)> deliver) {
    if (!deliver) throw error(errc::bad_config, "on_result", "attach() needs a result callback");
    driven.attach(l, "sink");
    on_result = std::move(deliver);
    driven.watch(results, [this] {
      zmq::message_t frame;
      for (int i = 0; i < 1024 && results.recv(frame, zmq::recv_flags::dontwait); ++i)
        if (auto result = accept(frame)) on_result(std::move(*result));
      rearm();
    });
    if (has_control)
      driven.watch(control, [this] {
        zmq::message_t frame;
        for (int i = 0; i < 1024 && control.recv(frame, zmq::recv_flags::dontwait); ++i) handle_control(frame);
        rearm();
      });
    rearm();
  }

  // The loop's timer follows the earliest batch deadline.
  void rearm() {
    driven.set_timer(next_deadline, *opts.clock, [this] {
      run_deadlines();
      rearm();
    });
  }

  std::optional<envelope> receive(std::chrono::milliseconds timeout) {
    driven.refuse_if_attached("sink");
    std::optional<std::chrono::steady_clock::time_point> end;  // read the clock only to wait
    for (;;) {
      if (results_since_timers >= 256) {  // deadlines are coarse: no clock read per result
        run_deadlines();
        results_since_timers = 0;
      }
      // A recv that finds nothing costs libzmq a system call: see below.
      if (has_control && (control_due || results_since_control >= 256)) {
        zmq::message_t frame;
        while (control.recv(frame, zmq::recv_flags::dontwait)) handle_control(frame);
        control_due = false;
        results_since_control = 0;
      }
      zmq::message_t frame;
      while (results.recv(frame, zmq::recv_flags::dontwait)) {
        ++results_since_control;
        ++results_since_timers;
        if (auto result = accept(frame)) return result;
      }
      run_deadlines();
      results_since_timers = 0;
      const auto now = std::chrono::steady_clock::now();
      if (!end) end = now + timeout;
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*end - now);
      if (left <= std::chrono::milliseconds(0)) {
        control_due = true;  // found nothing: look at the control link on the next call
        return std::nullopt;
      }
      if (next_deadline) {
        const auto to_deadline =
            std::chrono::ceil<std::chrono::milliseconds>(*next_deadline - opts.clock->now());
        left = std::clamp(to_deadline, std::chrono::milliseconds(0), left);
      }
      // A blocking recv on the results alone costs fewer system calls than
      // zmq::poll on both sockets; an idle sink looks at the control socket
      // every 20 ms, a busy one every 256 results.
      if (has_control) left = std::min(left, std::chrono::milliseconds(20));
      results.set(zmq::sockopt::rcvtimeo, to_zmq_ms(left));
      if (!zmqkit::recv(results, frame)) {
        control_due = true;
        continue;
      }
      ++results_since_control;
      ++results_since_timers;
      if (auto result = accept(frame)) return result;
    }
  }
};

sink::sink(zmq::context_t& ctx, const std::string& endpoint, sink_options opts)
    : impl_(make_pimpl<impl>(ctx, endpoint, std::move(opts))) {}

std::string sink::endpoint() const { return impl_->results.get(zmq::sockopt::last_endpoint); }

std::optional<envelope> sink::receive(std::chrono::milliseconds timeout) { return impl_->receive(timeout); }
void sink::attach(zmqkit::loop& loop, std::function<void(envelope)> on_result) {
  impl_->attach(loop, std::move(on_result));
}

std::optional<batch_report> sink::status(const message_id& batch) const {
  const auto it = impl_->batches.find(batch);
  if (it == impl_->batches.end()) return std::nullopt;
  return impl_->report_of(it->first, it->second);
}

const sink_stats& sink::stats() const noexcept { return impl_->counters; }

}  // namespace zmqkit::pipeline
