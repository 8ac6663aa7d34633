// The innermost loops of the pooling engine (csrc/cpu/pool_engine.cpp): over the elements of a
// row (vertical folds) or over the outputs of a regular run (DimTaps::find_regular_run). They
// are always inlined into the engine's row kernels, so each instruction-set copy of a kernel
// vectorizes them with its own vectors; restrict pointers let the compiler do so.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>
#include <type_traits>

#include "common/window.h"

namespace ndops {
namespace pool_cpu {

// kStride (in the run loops) is the compile-time stride of a run's windows (0: the runtime
// `stride`), so that strides 1 and 2 load with shuffles rather than element by element.

// Vertical folds take up to 4 rows per pass over the reduced row, so it is loaded and
// stored once per 4 input rows. Rows r0..r{kRows-1} are outer taps t0, t0 + 1, ...; with
// kFirst, r0 starts the fold (acc and tap are only written).
template <typename scalar_t>
C10_ALWAYS_INLINE void fold_max(scalar_t v, int32_t t, scalar_t& best, int32_t& best_tap) {
  const bool take = max_pool_replaces(v, best);
  best = take ? v : best;
  best_tap = take ? t : best_tap;
}

// With kTaps false (values only: no indices wanted) the outer taps are not tracked.
template <int kRows, bool kFirst, bool kTaps, typename scalar_t>
C10_ALWAYS_INLINE void max_fold(const scalar_t* __restrict r0, const scalar_t* __restrict r1,
                                const scalar_t* __restrict r2, const scalar_t* __restrict r3,
                                int32_t t0, int64_t len, scalar_t* __restrict acc,
                                int32_t* __restrict tap) {
  for (int64_t i = 0; i < len; ++i) {
    scalar_t best = kFirst ? r0[i] : acc[i];
    int32_t best_tap = 0;
    if constexpr (kTaps) best_tap = kFirst ? t0 : tap[i];
    auto fold = [&](scalar_t v, int32_t t) C10_ALWAYS_INLINE_ATTRIBUTE {
      if constexpr (kTaps) {
        fold_max(v, t, best, best_tap);
      } else {
        best = max_pool_replaces(v, best) ? v : best;
      }
    };
    if constexpr (!kFirst) fold(r0[i], t0);
    if constexpr (kRows > 1) fold(r1[i], t0 + 1);
    if constexpr (kRows > 2) fold(r2[i], t0 + 2);
    if constexpr (kRows > 3) fold(r3[i], t0 + 3);
    acc[i] = best;
    if constexpr (kTaps) tap[i] = best_tap;
  }
}

template <int kRows, bool kFirst, typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE void sum_fold(const scalar_t* __restrict r0, const scalar_t* __restrict r1,
                                const scalar_t* __restrict r2, const scalar_t* __restrict r3,
                                int64_t len, acc_t* __restrict acc) {
  for (int64_t i = 0; i < len; ++i) {
    acc_t sum = kFirst ? acc_t(0) : acc[i];
    sum += static_cast<acc_t>(r0[i]);
    if constexpr (kRows > 1) sum += static_cast<acc_t>(r1[i]);
    if constexpr (kRows > 2) sum += static_cast<acc_t>(r2[i]);
    if constexpr (kRows > 3) sum += static_cast<acc_t>(r3[i]);
    acc[i] = sum;
  }
}

// Calls fold(kRows, kFirst, t) for groups of kRows <= 4 rows starting at row t, covering rows
// [0, count) in order; kFirst marks the group of row 0. Callers' lambdas must be always-inline
// (C10_ALWAYS_INLINE_ATTRIBUTE) so their loops are compiled for the kernel's instruction set.
template <typename Fold>
C10_ALWAYS_INLINE void fold_rows(int32_t count, const Fold& fold) {
  using Four = std::integral_constant<int, 4>;
  int32_t t = 0;
  if (count >= 4) {
    fold(Four{}, std::true_type{}, 0);
    for (t = 4; t + 4 <= count; t += 4) fold(Four{}, std::false_type{}, t);
  }
  auto rest = [&](auto first) C10_ALWAYS_INLINE_ATTRIBUTE {
    switch (count - t) {
      case 1: fold(std::integral_constant<int, 1>{}, first, t); break;
      case 2: fold(std::integral_constant<int, 2>{}, first, t); break;
      case 3: fold(std::integral_constant<int, 3>{}, first, t); break;
      default: break;
    }
  };
  if (t == 0) {
    rest(std::true_type{});
  } else {
    rest(std::false_type{});
  }
}

template <int64_t kStride, bool kTaps, typename scalar_t>
C10_ALWAYS_INLINE void start_run(const scalar_t* __restrict values,
                                 const int32_t* __restrict taps, int64_t stride, int64_t n,
                                 scalar_t* __restrict best, int32_t* __restrict best_tap,
                                 int32_t* __restrict best_j) {
  const int64_t s = kStride > 0 ? kStride : stride;
  for (int64_t o = 0; o < n; ++o) {
    best[o] = values[o * s];
    if constexpr (kTaps) {
      best_tap[o] = taps[o * s];
      best_j[o] = 0;
    }
  }
}

// Merge tap j of n windows (values[o * stride], from outer tap taps[o * stride]). Without
// kTaps, values only: the first maximum in visiting order (or a NaN) is kept, and the result
// is nonzero if +0 and -0 tied for some window, whose winner the visiting order cannot tell
// (one flag for the run rather than one per window: the loop stays vectorized, and such ties
// are rare).
template <int64_t kStride, bool kTaps, typename scalar_t>
C10_ALWAYS_INLINE int32_t merge_run(const scalar_t* __restrict values,
                                    const int32_t* __restrict taps, int64_t stride, int64_t n,
                                    int32_t j, scalar_t* __restrict best,
                                    int32_t* __restrict best_tap, int32_t* __restrict best_j) {
  const int64_t s = kStride > 0 ? kStride : stride;
  int32_t zero_tie = 0;
  for (int64_t o = 0; o < n; ++o) {
    const scalar_t v = values[o * s];
    if constexpr (kTaps) {
      const int32_t t = taps[o * s];
      const bool take = max_pool_prefers_split(v, t, best[o], best_tap[o]);
      best[o] = take ? v : best[o];
      best_tap[o] = take ? t : best_tap[o];
      best_j[o] = take ? j : best_j[o];
    } else {
      zero_tie |= static_cast<int32_t>(pool_zeros_of_both_signs(v, best[o]));
      best[o] = max_pool_replaces(v, best[o]) ? v : best[o];
    }
  }
  return zero_tie;
}

// start_run and merge_run for all kWidth taps of n windows that tile a run
// (with_tiled_width), in one pass.
template <int kWidth, bool kTaps, typename scalar_t>
C10_ALWAYS_INLINE int32_t tiled_run(const scalar_t* __restrict values,
                                    const int32_t* __restrict taps, int64_t n,
                                    scalar_t* __restrict best, int32_t* __restrict best_tap,
                                    int32_t* __restrict best_j) {
  static_assert(kWidth == 2 || kWidth == 3, "tiled_run: windows of 2 or 3 taps");
  int32_t zero_tie = 0;
  for (int64_t o = 0; o < n; ++o) {
    scalar_t max = values[o * kWidth];
    int32_t max_tap = kTaps ? taps[o * kWidth] : 0, max_j = 0;
    // spelled out rather than a loop over j, which the vectorizer does not see through
    auto merge = [&](int32_t j) C10_ALWAYS_INLINE_ATTRIBUTE {
      const scalar_t v = values[o * kWidth + j];
      if constexpr (kTaps) {
        const int32_t t = taps[o * kWidth + j];
        const bool take = max_pool_prefers_split(v, t, max, max_tap);
        max = take ? v : max;
        max_tap = take ? t : max_tap;
        max_j = take ? j : max_j;
      } else {
        zero_tie |= static_cast<int32_t>(pool_zeros_of_both_signs(v, max));
        max = max_pool_replaces(v, max) ? v : max;
      }
    };
    merge(1);
    if constexpr (kWidth == 3) merge(2);
    best[o] = max;
    if constexpr (kTaps) {
      best_tap[o] = max_tap;
      best_j[o] = max_j;
    }
  }
  return zero_tie;
}

template <int64_t kStride, typename acc_t>
C10_ALWAYS_INLINE void sum_run(const acc_t* __restrict values, int64_t stride, int64_t n,
                               acc_t* __restrict sum) {
  const int64_t s = kStride > 0 ? kStride : stride;
  for (int64_t o = 0; o < n; ++o) sum[o] += values[o * s];
}

template <int64_t kStride, typename acc_t>
C10_ALWAYS_INLINE void spread_run(const acc_t* __restrict share, int64_t stride, int64_t n,
                                  acc_t* __restrict target) {
  const int64_t s = kStride > 0 ? kStride : stride;
  for (int64_t o = 0; o < n; ++o) target[o * s] += share[o];
}

// spread_run for all kWidth taps of n windows that tile a run (with_tiled_width), in one pass.
template <int kWidth, typename acc_t>
C10_ALWAYS_INLINE void tiled_spread_run(const acc_t* __restrict share, int64_t n,
                                        acc_t* __restrict target) {
  for (int64_t o = 0; o < n; ++o) {
    target[o * kWidth] += share[o];
    target[o * kWidth + 1] += share[o];
    if constexpr (kWidth == 3) target[o * kWidth + 2] += share[o];
  }
}

template <typename out_t, typename acc_t>
C10_ALWAYS_INLINE void divide(const acc_t* __restrict sum, const acc_t* __restrict divisor,
                              int64_t n, out_t* __restrict out) {
  for (int64_t x = 0; x < n; ++x) out[x] = static_cast<out_t>(sum[x] / divisor[x]);
}

// index[x] = flat plane index of the winning tap of window x, the row's tap rows lying
// `offset` elements after tap_rows.
C10_ALWAYS_INLINE void flat_indices(const int64_t* __restrict tap_rows,
                                    const int32_t* __restrict best_tap,
                                    const int64_t* __restrict first,
                                    const int32_t* __restrict best_j, int64_t step,
                                    int64_t offset, int64_t n, int64_t* __restrict index) {
  for (int64_t x = 0; x < n; ++x) {
    index[x] = tap_rows[best_tap[x]] + offset + first[x] + best_j[x] * step;
  }
}

// Calls fn(kWidth) when the windows of a regular run tile it: count taps of step 1 and
// windows stride = count apart, with count 2 or 3 (non-overlapping pooling, the common case);
// returns whether it did. Loops over such runs read (or write) each window's neighbouring
// elements in one iteration, so their vectors stay whole: a tap-at-a-time pass touches every
// kWidth-th element, and the compiler then peels scalar iterations off each pass's end.
template <typename Fn>
C10_ALWAYS_INLINE bool with_tiled_width(int64_t count, int64_t stride, int64_t step,
                                        const Fn& fn) {
  if (step != 1 || count != stride) return false;
  if (count == 2) {
    fn(std::integral_constant<int, 2>{});
  } else if (count == 3) {
    fn(std::integral_constant<int, 3>{});
  } else {
    return false;
  }
  return true;
}

template <typename Fn>
C10_ALWAYS_INLINE void with_static_stride(int64_t stride, const Fn& fn) {
  if (stride == 1) {
    fn(std::integral_constant<int64_t, 1>{});
  } else if (stride == 2) {
    fn(std::integral_constant<int64_t, 2>{});
  } else {
    fn(std::integral_constant<int64_t, 0>{});
  }
}

}  // namespace pool_cpu
}  // namespace ndops
