// Small helpers shared by the benchmarks: timing, percentiles, and the one
// output format every benchmark prints (zmqkit figure, raw baseline, ratio).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace zmqkit::bench {

using bench_clock = std::chrono::steady_clock;

// Keeps the optimiser from deleting the work being measured.
template <class T>
inline void do_not_optimize(const T& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

// Returns: the p-th percentile (0-100) of `samples` (sorted in place).
inline double percentile(std::vector<double>& samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(samples.size() - 1));
  return samples[i];
}

// Prints one comparison row. `higher_is_better` decides which way the ratio reads:
// the ratio is always zmqkit / raw, and the verdict says whether the target holds.
inline void report(const std::string& what, const std::string& unit, double zmqkit_value, double raw_value,
                   double target_ratio, bool higher_is_better) {
  const double ratio = raw_value == 0 ? 0 : zmqkit_value / raw_value;
  const bool ok = higher_is_better ? ratio >= target_ratio : ratio <= target_ratio;
  std::printf("%-44s zmqkit %12.1f %-8s raw %12.1f %-8s ratio %5.2f (target %s %.2f) %s\n", what.c_str(),
              zmqkit_value, unit.c_str(), raw_value, unit.c_str(), ratio, higher_is_better ? ">=" : "<=",
              target_ratio, ok ? "ok" : "MISSED");
}

}  // namespace zmqkit::bench
