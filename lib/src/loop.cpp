#include <zmqkit/loop.hpp>

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <vector>

namespace zmqkit {

// Why epoll: one epoll descriptor aggregates the ZMQ_FD of every watched socket,
// the plain descriptors, an eventfd (posts, stop, "still ready" self-wakes) and a
// timerfd (the next timer). Waiting on it is the loop's own wait, and the same
// descriptor is fd() for an outer event loop, so both ways of driving the loop
// run the same code. zmq_poll could not give an outer loop one descriptor.
namespace {
constexpr std::uint64_t wake_tag = ~std::uint64_t{0};
constexpr std::uint64_t timer_tag = wake_tag - 1;
constexpr int max_events = 64;
// A clock other than the real one (a manual_clock) can move without telling the
// loop: waits are capped, so a loop on another thread notices within this.
constexpr std::chrono::milliseconds injected_clock_slice{100};

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

int checked(int r, const char* what) {
  if (r < 0) throw_errno(what);
  return r;
}

void drain_counter(int fd) {
  std::uint64_t n;
  while (::read(fd, &n, sizeof n) == sizeof n) {
  }
}
}  // namespace

struct loop::impl {
  struct watch {
    void* socket = nullptr;  // a zmq socket, or nullptr for a plain descriptor
    int fd = -1;             // the plain descriptor, or the socket's ZMQ_FD
    handler fn;
    bool alive = true;
  };
  struct timer {
    steady_time when;
    std::chrono::nanoseconds period;  // 0 = once
    handler fn;
  };

  const zmqkit::clock* clk;
  int epfd = -1, wakefd = -1, timerfd = -1;
  std::atomic<bool> stop_requested{false};

  std::mutex posted_mutex;
  std::vector<handler> posted;  // under posted_mutex
  std::atomic<bool> has_posted{false};

  id next_id = 1;
  std::map<id, std::shared_ptr<watch>> watches;
  std::vector<std::pair<id, std::shared_ptr<watch>>> sockets;  // the zmq watches, checked every round
  std::map<id, timer> timers;
  std::set<std::pair<steady_time, id>> due;
  std::optional<steady_time> armed;  // what timerfd is set for
  bool hot = false;                  // a socket was still readable after the last round

  explicit impl(const zmqkit::clock& c) : clk(&c) {
    epfd = checked(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
    wakefd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    timerfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (wakefd < 0 || timerfd < 0) {
      const int e = errno;
      close_all();
      throw std::system_error(e, std::generic_category(), "eventfd/timerfd");
    }
    try {
      control(EPOLL_CTL_ADD, wakefd, wake_tag);
      control(EPOLL_CTL_ADD, timerfd, timer_tag);
    } catch (...) {
      close_all();
      throw;
    }
  }
  ~impl() { close_all(); }

  void close_all() {
    for (int fd : {epfd, wakefd, timerfd})
      if (fd >= 0) ::close(fd);
  }

  void control(int op, int fd, std::uint64_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    checked(::epoll_ctl(epfd, op, fd, &ev), "epoll_ctl");
  }

  void wake() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wakefd, &one, sizeof one);  // EAGAIN only at 2^64-1: already awake
  }

  id add_watch(void* socket, int fd, handler fn) {
    const id w = next_id++;
    auto entry = std::make_shared<watch>(watch{socket, fd, std::move(fn)});
    control(EPOLL_CTL_ADD, fd, w);
    watches.emplace(w, entry);
    if (socket) {
      sockets.emplace_back(w, entry);
      hot = true;  // it may hold messages already: ZMQ_FD says nothing about those
      wake();
    }
    return w;
  }

  id add_timer(steady_time when, std::chrono::nanoseconds period, handler fn) {
    const id t = next_id++;
    timers.emplace(t, timer{when, period, std::move(fn)});
    due.emplace(when, t);
    arm();
    return t;
  }

  void cancel(id what) noexcept {
    if (auto t = timers.find(what); t != timers.end()) {
      due.erase({t->second.when, what});
      timers.erase(t);
      return;
    }
    auto w = watches.find(what);
    if (w == watches.end()) return;
    w->second->alive = false;
    epoll_event ev{};
    ::epoll_ctl(epfd, EPOLL_CTL_DEL, w->second->fd, &ev);  // fails only if the fd was closed first
    if (w->second->socket)
      std::erase_if(sockets, [&](const auto& s) { return s.first == what; });
    watches.erase(w);
  }

  static bool readable(void* socket) noexcept {
    int events = 0;
    std::size_t size = sizeof events;
    return zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN);
  }

  // Sets timerfd for the earliest timer, so fd() turns readable when it is due.
  void arm() noexcept {
    const std::optional<steady_time> next =
        due.empty() ? std::nullopt : std::optional<steady_time>(due.begin()->first);
    if (next == armed) return;
    armed = next;
    itimerspec spec{};
    if (next) {
      const auto left = std::max<std::chrono::nanoseconds>(*next - clk->now(), std::chrono::nanoseconds(1));
      spec.it_value.tv_sec = static_cast<time_t>(left.count() / 1'000'000'000);
      spec.it_value.tv_nsec = static_cast<long>(left.count() % 1'000'000'000);
    }
    ::timerfd_settime(timerfd, 0, &spec, nullptr);
  }

  bool ready_now() const noexcept { return hot || has_posted.load(std::memory_order_relaxed); }

  std::optional<std::chrono::nanoseconds> next_timeout() const {
    if (ready_now()) return std::chrono::nanoseconds(0);
    if (due.empty()) return std::nullopt;
    return std::max<std::chrono::nanoseconds>(due.begin()->first - clk->now(), std::chrono::nanoseconds(0));
  }

  // One round over what epoll reported plus what is ready without it.
  bool dispatch(const epoll_event* events, int n) {
    // However the round ends (a handler may throw), the next wait must see what is still ready.
    struct finish {
      impl& self;
      ~finish() {
        self.hot = false;
        for (const auto& s : self.sockets)
          if (readable(s.second->socket)) self.hot = true;
        if (self.ready_now()) self.wake();
        self.arm();
      }
    } after{*this};

    bool ran = false;
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events[i].data.u64;
      if (tag == wake_tag) {
        drain_counter(wakefd);
      } else if (tag == timer_tag) {
        drain_counter(timerfd);
        armed.reset();  // fired: arm() sets it again
      } else if (auto w = watches.find(tag); w != watches.end() && !w->second->socket) {
        const auto keep = w->second;  // the handler may cancel its own watch
        keep->fn();
        ran = true;
      }
    }
    if (has_posted.exchange(false)) {
      std::vector<handler> work;
      {
        std::lock_guard lock(posted_mutex);
        work.swap(posted);
      }
      for (auto& fn : work) fn();
      ran = ran || !work.empty();
    }
    // Every socket, signalled or not: a send or recv elsewhere may have eaten its ZMQ_FD edge.
    for (std::size_t i = 0; i < sockets.size(); ++i) {
      const auto keep = sockets[i].second;
      if (keep->alive && readable(keep->socket)) {
        keep->fn();
        ran = true;
      }
    }
    if (!due.empty()) {
      // Only timers due now: one a handler adds for "now" waits for the next round.
      const steady_time now = clk->now();
      std::vector<id> fire;
      for (auto it = due.begin(); it != due.end() && it->first <= now; ++it) fire.push_back(it->second);
      for (id t : fire) {
        auto it = timers.find(t);
        if (it == timers.end()) continue;  // cancelled by an earlier one
        due.erase({it->second.when, t});
        handler fn;
        if (it->second.period.count() > 0) {
          // Behind by more than a period (a stalled loop, a clock jump): no burst of catch-up runs.
          it->second.when = std::max(it->second.when + it->second.period, now);
          due.emplace(it->second.when, t);
          fn = it->second.fn;
        } else {
          fn = std::move(it->second.fn);
          timers.erase(it);
        }
        fn();
        ran = true;
      }
    }
    return ran;
  }

  bool run_once(std::chrono::nanoseconds timeout) {
    std::chrono::nanoseconds wait = std::max(timeout, std::chrono::nanoseconds(0));
    if (const auto t = next_timeout()) wait = std::min(wait, *t);
    if (clk != &zmqkit::clock::real()) wait = std::min<std::chrono::nanoseconds>(wait, injected_clock_slice);
    std::array<epoll_event, max_events> events;
    int n = ::epoll_wait(epfd, events.data(), max_events, wait.count() == 0 ? 0 : to_zmq_ms(wait));
    if (n < 0) {
      if (errno != EINTR) throw_errno("epoll_wait");
      n = 0;  // a signal: a wake-up with nothing ready
    }
    return dispatch(events.data(), n);
  }
};

loop::loop(const zmqkit::clock& clock) : impl_(make_pimpl<impl>(clock)) {}

loop::id loop::add(zmq::socket_ref socket, handler on_readable) {
  const int fd = socket.get(zmq::sockopt::fd);
  return impl_->add_watch(socket.handle(), fd, std::move(on_readable));
}

loop::id loop::add_fd(int fd, handler on_readable) { return impl_->add_watch(nullptr, fd, std::move(on_readable)); }

loop::id loop::at(steady_time when, handler on_time) { return impl_->add_timer(when, {}, std::move(on_time)); }

loop::id loop::after(std::chrono::nanoseconds delay, handler on_time) {
  return impl_->add_timer(impl_->clk->now() + delay, {}, std::move(on_time));
}

loop::id loop::every(std::chrono::nanoseconds period, handler on_time) {
  period = std::max(period, std::chrono::nanoseconds(1));
  return impl_->add_timer(impl_->clk->now() + period, period, std::move(on_time));
}

void loop::cancel(id what) noexcept { impl_->cancel(what); }

void loop::post(handler work) {
  {
    std::lock_guard lock(impl_->posted_mutex);
    impl_->posted.push_back(std::move(work));
  }
  impl_->has_posted.store(true);
  impl_->wake();
}

void loop::run() {
  while (!stopped()) impl_->run_once(std::chrono::hours(24));
}

void loop::run_for(std::chrono::nanoseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (!stopped()) {
    impl_->run_once(end - std::chrono::steady_clock::now());
    if (std::chrono::steady_clock::now() >= end) return;
  }
}

bool loop::run_once(std::chrono::nanoseconds timeout) { return impl_->run_once(timeout); }

void loop::stop() noexcept {
  impl_->stop_requested.store(true);
  impl_->wake();
}
bool loop::stopped() const noexcept { return impl_->stop_requested.load(); }
void loop::restart() noexcept { impl_->stop_requested.store(false); }

int loop::fd() const noexcept { return impl_->epfd; }

bool loop::poll_ready() {
  const bool ran = impl_->run_once(std::chrono::nanoseconds(0));
  // An outer loop may watch fd() edge-triggered (Asio does): if something is
  // still ready (a descriptor its handler did not drain), make a fresh edge.
  pollfd self{impl_->epfd, POLLIN, 0};
  if (::poll(&self, 1, 0) > 0) impl_->wake();
  return ran;
}

std::optional<std::chrono::nanoseconds> loop::next_timeout() const { return impl_->next_timeout(); }

const zmqkit::clock& loop::clock() const noexcept { return *impl_->clk; }

}  // namespace zmqkit
