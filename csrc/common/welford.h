// Welford's running mean and sum of squared deviations, and the merge of two partial results
// (Chan, Golub & LeVeque): the numerically stable way to build per-channel statistics from
// per-thread (per-block) pieces, with no catastrophic cancellation of sum(x^2) - n * mean^2.
// Shared verbatim by the CPU and CUDA kernels.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace ndops {

// Mean and M2 = sum((v - mean)^2) of `count` values.
template <typename acc_t>
struct WelfordStats {
  acc_t mean = 0;
  acc_t m2 = 0;
  int64_t count = 0;
};

// Fold one more value into `stats`.
template <typename acc_t>
C10_HOST_DEVICE inline void welford_update(WelfordStats<acc_t>& stats, acc_t value) {
  stats.count += 1;
  const acc_t delta = value - stats.mean;
  stats.mean += delta / static_cast<acc_t>(stats.count);
  stats.m2 += delta * (value - stats.mean);
}

// Statistics of the union of the values behind `a` and `b`. With delta = mean_b - mean_a:
// mean = mean_a + delta * n_b / n, M2 = M2_a + M2_b + delta^2 * n_a * n_b / n.
template <typename acc_t>
C10_HOST_DEVICE inline WelfordStats<acc_t> welford_merge(const WelfordStats<acc_t>& a,
                                                         const WelfordStats<acc_t>& b) {
  if (a.count == 0) return b;
  if (b.count == 0) return a;
  WelfordStats<acc_t> merged;
  merged.count = a.count + b.count;
  const acc_t delta = b.mean - a.mean;
  const acc_t b_share = static_cast<acc_t>(b.count) / static_cast<acc_t>(merged.count);
  merged.mean = a.mean + delta * b_share;
  merged.m2 = a.m2 + b.m2 + delta * delta * static_cast<acc_t>(a.count) * b_share;
  return merged;
}

// The biased variance M2 / n (what batch norm normalizes with); 0 for no values.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t welford_biased_var(const WelfordStats<acc_t>& stats) {
  return stats.count > 0 ? stats.m2 / static_cast<acc_t>(stats.count) : acc_t(0);
}

// The unbiased variance M2 / (n - 1) (what the running variance tracks); needs n >= 2.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t welford_unbiased_var(const WelfordStats<acc_t>& stats) {
  return stats.m2 / static_cast<acc_t>(stats.count - 1);
}

}  // namespace ndops
