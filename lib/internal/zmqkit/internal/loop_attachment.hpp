// zmqkit/internal/loop_attachment.hpp — what a role keeps of the zmqkit::loop
// that drives it: its socket watches and its one timer, all cancelled together
// when it detaches. A role that is not attached to a caller's loop attaches to
// a loop of its own on first poll(), so its blocking calls run the same
// handlers as attach() does, never a second poll loop beside them.
// Internal to the library: public headers never include it.
#pragma once

#include <zmqkit/error.hpp>
#include <zmqkit/loop.hpp>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zmqkit::internal {

class loop_attachment {
 public:
  loop_attachment() = default;
  loop_attachment(const loop_attachment&) = delete;
  loop_attachment& operator=(const loop_attachment&) = delete;
  ~loop_attachment() { detach(); }

  bool attached() const noexcept { return loop_ != nullptr; }
  // Attached to the caller's loop (not to the role's own one).
  bool on_callers_loop() const noexcept { return loop_ && loop_ != own_.get(); }
  zmqkit::loop& loop() const noexcept { return *loop_; }

  // Throws: error{bad_config} when attached to a caller's loop already.
  void attach(zmqkit::loop& l, const char* role) {
    if (on_callers_loop())
      throw error(errc::bad_config, "loop", std::string("the ") + role + " is attached to a loop already");
    detach();
    own_.reset();
    loop_ = &l;
  }

  // For poll()/run(): attaches to the role's own loop (made on first use).
  // Returns: true when it attached just now, so the role adds its watches.
  // Throws: error{bad_config} when the role is on a caller's loop: that loop drives it.
  bool attach_own(const zmqkit::clock& clock, const char* role) {
    if (on_callers_loop()) throw driven_elsewhere(role);
    if (loop_) return false;
    if (!own_) own_ = std::make_unique<zmqkit::loop>(clock);
    loop_ = own_.get();
    return true;
  }

  // For a blocking receive(), which has no loop of its own to share.
  // Throws: error{bad_config} when attached to any loop: that loop drives the role.
  void refuse_if_attached(const char* role) const {
    if (attached()) throw driven_elsewhere(role);
  }

  // Cancels every watch and the timer; the role is then driven by nothing.
  void detach() noexcept {
    if (!loop_) return;
    for (const zmqkit::loop::id w : watches_) loop_->cancel(w);
    watches_.clear();
    cancel_timer();
    loop_ = nullptr;
  }

  // Calls on_readable while `socket` is readable. Returns the watch (0 when not attached).
  zmqkit::loop::id watch(zmq::socket_ref socket, zmqkit::loop::handler on_readable) {
    if (!loop_) return 0;
    const zmqkit::loop::id w = loop_->add(socket, std::move(on_readable));
    watches_.push_back(w);
    return w;
  }
  // Calls on_readable while the plain descriptor `fd` is readable (a self-pipe).
  zmqkit::loop::id watch_fd(int fd, zmqkit::loop::handler on_readable) {
    if (!loop_) return 0;
    const zmqkit::loop::id w = loop_->add_fd(fd, std::move(on_readable));
    watches_.push_back(w);
    return w;
  }
  void unwatch(zmqkit::loop::id& w) noexcept {
    if (!w) return;
    if (loop_) loop_->cancel(w);
    watches_.erase(std::remove(watches_.begin(), watches_.end(), w), watches_.end());
    w = 0;
  }

  // The role's one timer: runs on_time at `when` on the role's clock (which may
  // not be the loop's), replacing an earlier setting (the same moment again
  // changes nothing); nullopt cancels it.
  void set_timer(std::optional<steady_time> when, const zmqkit::clock& role_clock, zmqkit::loop::handler on_time) {
    if (!loop_ || when == timer_at_) return;
    cancel_timer();
    if (!when) return;
    timer_at_ = when;
    timer_ = loop_->after(*when - role_clock.now(), [this, on_time = std::move(on_time)] {
      timer_ = 0;
      timer_at_.reset();
      on_time();
    });
  }
  void cancel_timer() noexcept {
    if (timer_ && loop_) loop_->cancel(timer_);
    timer_ = 0;
    timer_at_.reset();
  }

 private:
  static error driven_elsewhere(const char* role) {
    return error(errc::bad_config, "loop", std::string("the ") + role + " is driven by the loop it is attached to");
  }

  zmqkit::loop* loop_ = nullptr;
  std::unique_ptr<zmqkit::loop> own_;
  std::vector<zmqkit::loop::id> watches_;
  zmqkit::loop::id timer_ = 0;
  std::optional<steady_time> timer_at_;
};

}  // namespace zmqkit::internal
