#include <zmqkit/clock.hpp>

#include <limits>

namespace zmqkit {

namespace {
class real_clock final : public clock {
 public:
  steady_time now() const override { return std::chrono::steady_clock::now(); }
  wall_time wall_now() const override {
    return std::chrono::time_point_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now());
  }
};
}  // namespace

const clock& clock::real() noexcept {
  static const real_clock instance;
  return instance;
}

int to_zmq_ms(std::chrono::nanoseconds d) noexcept {
  if (d.count() < 0) return -1;
  // Round up, so a 0.5 ms timeout waits rather than polls.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max() : static_cast<int>(ms);
}

}  // namespace zmqkit
