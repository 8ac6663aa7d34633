// Pooling windows along one spatial dim, and the rule that picks a window's maximum.
//
// A pooling window is a box: along every spatial dim, output position o reads a set of input
// coordinates that depends on o and that dim alone. These functions give that set (as the
// in-range taps first, first + step, ..., first + (count - 1) * step), the output sizes and the
// average's divisor factors, exactly as torch defines them. Host and device code share them:
// no allocation, no exceptions, 64-bit arithmetic.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace ndops {

// floor(a / b) for b > 0 (C++ division truncates toward zero).
C10_HOST_DEVICE inline int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// torch's output length of a sliding window (kernel k, stride s, padding p, dilation d) over a
// dim of `in` elements; <= 0 when the window does not fit. With ceil_mode the last window may
// run past the padded end, but one that would start inside the right padding is dropped.
C10_HOST_DEVICE inline int64_t pooled_size(int64_t in, int64_t k, int64_t s, int64_t p,
                                           int64_t d, bool ceil_mode) {
  const int64_t span = in + 2 * p - d * (k - 1) - 1;
  int64_t out = floor_div(span + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && out > 0 && (out - 1) * s >= in + p) --out;
  return out;
}

// The in-range taps of one window along one dim: first, first + step, ... (count of them).
struct WindowTaps {
  int64_t first;
  int64_t count;
};

// Sliding window of output position o: taps o * s - p + j * d for j < k, those inside [0, in).
C10_HOST_DEVICE inline WindowTaps sliding_window_taps(int64_t o, int64_t in, int64_t k,
                                                      int64_t s, int64_t p, int64_t d) {
  const int64_t start = o * s - p;
  const int64_t skipped = start < 0 ? (-start + d - 1) / d : 0;  // taps left of 0
  const int64_t first = start + skipped * d;
  const int64_t fitting = first < in ? (in - 1 - first) / d + 1 : 0;  // taps from first on
  const int64_t count = k - skipped < fitting ? k - skipped : fitting;
  return {first, count > 0 ? count : 0};
}

// One dim's factor of an average window's divisor (the divisor is the product over dims):
// the window's length inside the padded input when count_include_pad (a ceil_mode window
// stops counting at the padded end), else inside the input.
C10_HOST_DEVICE inline int64_t avg_window_divisor(int64_t o, int64_t in, int64_t k, int64_t s,
                                                  int64_t p, bool count_include_pad) {
  const int64_t start = o * s - p;
  const int64_t end = start + k < in + p ? start + k : in + p;
  if (count_include_pad) return end - start;
  return (end < in ? end : in) - (start > 0 ? start : 0);
}

// Adaptive window of output position o (of `out`) over `in` elements: [floor(o * in / out),
// ceil((o + 1) * in / out)), computed without forming o * in (it may overflow for huge dims).
C10_HOST_DEVICE inline int64_t adaptive_window_start(int64_t o, int64_t in, int64_t out) {
  return (o / out) * in + ((o % out) * in) / out;
}
C10_HOST_DEVICE inline int64_t adaptive_window_end(int64_t o, int64_t in, int64_t out) {
  const int64_t next = o + 1;
  return (next / out) * in + ((next % out) * in + out - 1) / out;
}
C10_HOST_DEVICE inline WindowTaps adaptive_window_taps(int64_t o, int64_t in, int64_t out) {
  const int64_t first = adaptive_window_start(o, in, out);
  return {first, adaptive_window_end(o, in, out) - first};
}

template <typename T>
C10_HOST_DEVICE inline bool pool_isnan(T v) {
  if constexpr (std::is_integral_v<T>) {
    return false;
  } else {
    return v != v;
  }
}

// a == b but with different sign bits: +0 and -0 (integers: never).
template <typename T>
C10_HOST_DEVICE inline bool pool_zeros_of_both_signs(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    return false;
  } else {
    // copysign (bit operations) rather than signbit, so CPU loops over it vectorize
    return (a == b) & (::copysignf(1.0f, static_cast<float>(a)) !=
                       ::copysignf(1.0f, static_cast<float>(b)));
  }
}

// torch's max rule: the first maximum in row-major window order wins, but a NaN beats every
// number and a later NaN beats an earlier one (NB: as torch's CPU kernels, which take a
// candidate when `candidate > best || isnan(candidate)`).
//
// Streaming form: does `candidate`, visited after `best` in row-major order, replace it?
template <typename T>
C10_HOST_DEVICE inline bool max_pool_replaces(T candidate, T best) {
  return candidate > best || pool_isnan(candidate);
}

// Order-free form of the same rule, for candidates visited in any order: the flat index of a
// tap in its plane is its row-major position, so it settles ties and NaN against NaN.
template <typename T>
C10_HOST_DEVICE inline bool max_pool_prefers(T candidate, int64_t candidate_index, T best,
                                             int64_t best_index) {
  const bool candidate_nan = pool_isnan(candidate), best_nan = pool_isnan(best);
  if (candidate_nan || best_nan) {
    return candidate_nan && (!best_nan || candidate_index > best_index);
  }
  return candidate > best || (candidate == best && candidate_index < best_index);
}

// The same rule for a split order: a candidate's position is (outer, inner) in row-major
// order, and candidates come with increasing inner position; a tie in `outer` is then
// settled by the inner order (the candidate comes later). Written without branches, so a
// loop over many windows vectorizes.
template <typename T>
C10_HOST_DEVICE inline bool max_pool_prefers_split(T candidate, int32_t candidate_outer, T best,
                                                   int32_t best_outer) {
  const bool candidate_nan = pool_isnan(candidate), best_nan = pool_isnan(best);
  const bool later_nan = candidate_nan & (!best_nan | (candidate_outer >= best_outer));
  const bool earlier_max =
      (candidate > best) | ((candidate == best) & (candidate_outer < best_outer));
  return later_nan | (!best_nan & earlier_max);
}

}  // namespace ndops
