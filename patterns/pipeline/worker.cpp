#include <algorithm>
#include <vector>
#include <zmqkit/poll.hpp>
#include <zmqkit/pipeline/protocol.hpp>
#include <zmqkit/pipeline/worker.hpp>

#include "detail.hpp"
#include <zmqkit/internal/loop_attachment.hpp>

namespace zmqkit::pipeline {

namespace {

// A task frame validated on arrival, with the view decoded then.
struct held_task {
  zmq::message_t frame;
  envelope_view view;  // points into frame's buffer, which moves with it (checked before use)
};

struct current_task {
  message_id id;
  bool in_batch = false;
  std::string batch;  // reused from task to task: no allocation per task
  std::string batch_size;
};

}  // namespace

struct worker::impl {
  worker_options opts;
  zmq::socket_t tasks;
  zmq::socket_t results;
  bool has_sink;
  // How often (in tasks handed out) a worker holding tasks looks for newer ones:
  // every task for small windows (exact priority order), every credit/8 tasks
  // (at most 64) for large ones, where each empty look costs a system call.
  std::size_t pump_every = 1;
  std::size_t taken_since_pump = 0;
  detail::priority_queue<held_task> held_tasks;  // validated on arrival, materialised when handed out
  std::optional<current_task> current;
  bool current_holds_slot = false;
  std::int64_t outstanding = 0;  // credit granted that no task has used yet
  steady_time last_heard{};      // last task arrival or credit message
  worker_stats counters;
  task_handler on_task;              // attach(): runs each task
  internal::loop_attachment driven;  // after the sockets: its watch goes first

  impl(zmq::context_t& ctx, const std::string& vent, const std::string& sink, worker_options o)
      : opts(std::move(o)),
        tasks(ctx, zmq::socket_type::dealer),
        results(ctx, zmq::socket_type::push),
        has_sink(!sink.empty()) {
    if (!opts.clock) opts.clock = &clock::real();  // null: the real clock, as everywhere
    if (opts.credit == 0) throw error(errc::bad_config, "credit", "worker credit must be at least 1");
    pump_every = std::clamp<std::size_t>(opts.credit / 8, 1, 64);
    apply(tasks, opts.socket);
    apply(results, opts.socket);
    tasks.connect(vent);
    if (has_sink) results.connect(sink);
    grant(static_cast<std::int64_t>(opts.credit), false);
  }

  ~impl() {
    envelope bye = make_envelope(std::string(type::bye), *opts.clock);
    detail::send_control(tasks, bye);
  }

  std::int64_t window() const { return static_cast<std::int64_t>(opts.credit); }
  std::int64_t held() const {
    return static_cast<std::int64_t>(held_tasks.size()) + (current_holds_slot ? 1 : 0);
  }

  void grant(std::int64_t n, bool reset) {
    envelope env = make_envelope(std::string(type::credit), *opts.clock);
    env.headers.emplace(reset ? header::credit_reset : header::credit, std::to_string(n));
    if (detail::send_control(tasks, env)) {
      outstanding = reset ? n : outstanding + n;
      ++counters.credit_grants;
    }
    last_heard = opts.clock->now();
  }

  // Grants the free slots once there are enough of them to be worth a message:
  // half the window, so a fast worker never runs dry waiting for the round trip.
  void grant_if_due() {
    const std::int64_t free = window() - held() - outstanding;
    if (free > 0 && free >= std::max<std::int64_t>(1, window() / 2)) grant(free, false);
  }

  void refresh_if_due() {
    if (held() > 0 || outstanding <= 0) return;
    if (opts.clock->now() - last_heard >= opts.credit_refresh) grant(window(), true);
  }

  // Queues one received task frame. Returns: whether it was a task.
  bool accept(zmq::message_t& frame) {
    if (frame.more()) {  // tasks are one frame: drop the whole message
      while (frame.more() && tasks.recv(frame, zmq::recv_flags::dontwait)) {
      }
      ++counters.bad_frames;
      return false;
    }
    outstanding = std::max<std::int64_t>(0, outstanding - 1);
    const std::optional<envelope_view> decoded = try_decode_view(frame, opts.limits);
    if (!decoded) {
      ++counters.bad_frames;
      return false;
    }
    const envelope_view& view = *decoded;
    const std::uint8_t priority = view.priority;
    held_tasks.push_back(priority, held_task{std::move(frame), view});
    ++counters.received;
    return true;
  }

  void pump() {
    bool arrived = false;
    for (;;) {
      zmq::message_t frame;
      if (!tasks.recv(frame, zmq::recv_flags::dontwait)) break;
      accept(frame);
      arrived = true;
    }
    if (arrived) last_heard = opts.clock->now();
    grant_if_due();
  }

  std::optional<envelope> take() {
    while (!held_tasks.empty()) {
      held_task& held = held_tasks.front();
      // The view is valid while the frame's buffer is where it was decoded (a
      // frame too small for its own buffer moves its bytes: decode it again).
      envelope task = held.view.type.data() >= held.frame.data<char>() &&
                              held.view.type.data() < held.frame.data<char>() + held.frame.size()
                          ? held.view.to_envelope()
                          : decode(held.frame, opts.limits);
      held_tasks.pop();
      if (task.ttl.count() != 0 && task.expired(opts.clock->wall_now())) {
        ++counters.expired;
        continue;
      }
      if (!current) current.emplace();
      current->id = task.id;
      const auto batch = task.header(header::batch);
      const auto batch_size = task.header(header::batch_size);
      current->in_batch = batch && batch_size;
      if (current->in_batch) {
        current->batch.assign(*batch);
        current->batch_size.assign(*batch_size);
      }
      current_holds_slot = true;
      return task;
    }
    return std::nullopt;
  }

  std::optional<envelope> receive_next(std::chrono::milliseconds timeout) {
    current_holds_slot = false;                                // the previous task is done: its slot is free
    std::optional<std::chrono::steady_clock::time_point> end;  // read the clock only to wait
    for (;;) {
      if (held_tasks.empty() || ++taken_since_pump >= pump_every) {
        pump();
        taken_since_pump = 0;
      }
      if (auto task = take()) {
        grant_if_due();
        return task;
      }
      grant_if_due();
      refresh_if_due();
      const auto now = std::chrono::steady_clock::now();
      if (!end) end = now + timeout;
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*end - now);
      if (left <= std::chrono::milliseconds(0)) return std::nullopt;
      left = std::min(left, opts.credit_refresh);
      // One socket to wait on: a blocking recv costs fewer system calls than zmq::poll.
      tasks.set(zmq::sockopt::rcvtimeo, to_zmq_ms(left));
      zmq::message_t frame;
      if (zmqkit::recv(tasks, frame)) {
        accept(frame);
        last_heard = opts.clock->now();
      }
    }
  }

  // --- on a loop: the same pump/take/grant as receive() ---
  void attach(zmqkit::loop& l, task_handler handler) {
    if (!handler) throw error(errc::bad_config, "on_task", "attach() needs a task handler");
    driven.attach(l, "pipeline worker");
    on_task = std::move(handler);
    driven.watch(tasks, [this] { run_tasks(); });
    rearm();
  }

  // Runs a bounded number of held tasks, so other roles on the loop get their
  // turn; the timer comes back at once for the rest.
  void run_tasks() {
    pump();
    for (int i = 0; i < 64; ++i) {
      current_holds_slot = false;
      std::optional<envelope> task = take();
      if (!task) break;
      std::optional<envelope> result = on_task(*task);
      if (result) send_result(std::move(*result));
      if (held_tasks.empty() || i % static_cast<int>(pump_every) == 0) pump();
    }
    current_holds_slot = false;
    grant_if_due();
    rearm();
  }

  void rearm() {
    const steady_time now = opts.clock->now();
    steady_time next = now;  // tasks still held: next round
    if (held_tasks.empty()) {
      next = last_heard + opts.credit_refresh;
      if (next <= now) next = now + opts.credit_refresh;  // nothing to refresh now: never spin
    }
    driven.set_timer(next, *opts.clock, [this] {
      refresh_if_due();
      run_tasks();
    });
  }

  std::optional<envelope> receive(std::chrono::milliseconds timeout) {
    driven.refuse_if_attached("pipeline worker");
    return receive_next(timeout);
  }

  bool send_result(envelope result) {
    if (!current) throw error(errc::protocol, "send_result", "send_result() before any task was received");
    if (!result.correlation_id) result.correlation_id = current->id;
    if (!has_sink) return false;
    // The batch headers are stamped at encode time (same bytes): no map nodes per result.
    const header_ref stamp[] = {{header::batch, current->batch}, {header::batch_size, current->batch_size}};
    zmq::message_t frame = current->in_batch ? encode(result, stamp) : encode(result);
    const auto end = std::chrono::steady_clock::now() + opts.send_timeout;
    for (;;) {
      if (results.send(frame, zmq::send_flags::dontwait)) {
        ++counters.results;
        return true;
      }
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left <= std::chrono::milliseconds(0)) break;
      zmq::pollitem_t item{results.handle(), 0, ZMQ_POLLOUT, 0};
      zmqkit::poll(&item, 1, left);
    }
    ++counters.send_failures;
    return false;
  }
};

worker::worker(zmq::context_t& ctx, const std::string& ventilator_endpoint, const std::string& sink_endpoint,
               worker_options opts)
    : impl_(make_pimpl<impl>(ctx, ventilator_endpoint, sink_endpoint, std::move(opts))) {}

std::optional<envelope> worker::receive(std::chrono::milliseconds timeout) { return impl_->receive(timeout); }
bool worker::send_result(envelope result) { return impl_->send_result(std::move(result)); }
void worker::attach(zmqkit::loop& loop, task_handler on_task) { impl_->attach(loop, std::move(on_task)); }
std::size_t worker::buffered() const noexcept { return impl_->held_tasks.size(); }
void worker::pump() { impl_->pump(); }
const worker_stats& worker::stats() const noexcept { return impl_->counters; }

}  // namespace zmqkit::pipeline
