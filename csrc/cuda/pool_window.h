// One element of the box-window pooling CUDA kernels (csrc/cuda/pool_max.cu, pool_avg.cu),
// host-compilable (see per_dim.h). Per spatial dim, output position o reads the taps
// first + j * step (j < count) given by the functions the CPU kernels use
// (sliding_window_taps, adaptive_window_taps, avg_window_divisor: csrc/common/window.h); an
// output element walks its window's taps in row-major order (the order of torch's max rule,
// max_pool_replaces). The average's backward gathers through the same windows, inverted.
#pragma once

#include <cstdint>
#include <vector>

#include "common/pool_shape.h"
#include "common/window.h"
#include "cuda/per_dim.h"

namespace ndops {
namespace cuda {

struct WindowArgs : PlaneArgs {
  bool adaptive = false;
  bool count_include_pad = false;  // sliding averages only
  int64_t divisor_override = 0;    // 0: none
  PerDim<int64_t> kernel{}, stride{}, padding{}, dilation{};
};

// A sliding window (dilation 1 for averages), with the average's divisor options.
inline WindowArgs sliding_args(const SlidingWindow& w, bool count_include_pad = false,
                               int64_t divisor_override = 0) {
  WindowArgs a{plane_args(w.in, w.out)};
  a.kernel = per_dim<int64_t>(w.kernel);
  a.stride = per_dim<int64_t>(w.stride);
  a.padding = per_dim<int64_t>(w.padding);
  a.dilation = per_dim<int64_t>(w.dilation);
  a.count_include_pad = count_include_pad;
  a.divisor_override = divisor_override;
  return a;
}

inline WindowArgs adaptive_args(c10::IntArrayRef in_spatial, c10::IntArrayRef out_spatial) {
  WindowArgs a{plane_args(in_spatial, out_spatial)};
  a.adaptive = true;
  for (int d = 0; d < a.ndim; ++d) a.dilation.v[d] = 1;
  return a;
}

// The taps of output position o along dim d.
C10_HOST_DEVICE inline WindowTaps window_taps(const WindowArgs& a, int d, int64_t o) {
  return a.adaptive ? adaptive_window_taps(o, a.in_sizes.v[d], a.out_sizes.v[d])
                    : sliding_window_taps(o, a.in_sizes.v[d], a.kernel.v[d], a.stride.v[d],
                                          a.padding.v[d], a.dilation.v[d]);
}

// Dim d's factor of an average window's divisor (the divisor is their product).
C10_HOST_DEVICE inline int64_t divisor_factor(const WindowArgs& a, int d, int64_t o,
                                              WindowTaps taps) {
  return a.adaptive ? taps.count
                    : avg_window_divisor(o, a.in_sizes.v[d], a.kernel.v[d], a.stride.v[d],
                                         a.padding.v[d], a.count_include_pad);
}

// One output element's window: the in-plane offset of its first tap, the number of taps, the
// average's divisor, and per dim the tap count and the offset step between taps.
struct BoxWindow {
  int64_t first, taps, divisor;
  int64_t count[kMaxDims], step[kMaxDims];
};

// The window of the output element at in-plane position `position`.
C10_HOST_DEVICE inline BoxWindow box_window(const WindowArgs& a, int64_t position) {
  BoxWindow w;
  w.first = 0;
  w.taps = 1;
  w.divisor = 1;
  NDOPS_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    w.count[d] = 1;
    w.step[d] = 0;
    if (d < a.ndim) {
      const int64_t o = position % a.out_sizes.v[d];
      position /= a.out_sizes.v[d];
      const WindowTaps t = window_taps(a, d, o);
      w.first += t.first * a.in_strides.v[d];
      w.count[d] = t.count;
      w.step[d] = a.dilation.v[d] * a.in_strides.v[d];
      w.taps *= t.count;
      w.divisor *= divisor_factor(a, d, o, t);
    }
  }
  if (a.divisor_override != 0) w.divisor = a.divisor_override;
  return w;
}

// Steps `offset` to the window's next tap in row-major order (pick: the per-dim tap numbers,
// all 0 at the first tap).
C10_HOST_DEVICE inline void next_tap(const BoxWindow& w, int64_t (&pick)[kMaxDims],
                                     int64_t& offset) {
  bool carry = true;
  NDOPS_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (carry) {
      if (++pick[d] < w.count[d]) {
        offset += w.step[d];
        carry = false;
      } else {
        offset -= (w.count[d] - 1) * w.step[d];
        pick[d] = 0;
      }
    }
  }
}

// Output element i: the window's maximum by torch's rule and its flat index in the plane.
// Every window holds at least one tap (checked on the host).
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t max_pool_element(const scalar_t* in, int64_t i,
                                                 const WindowArgs& a, int64_t* index) {
  const int64_t plane = i / a.out_plane;
  const BoxWindow w = box_window(a, i - plane * a.out_plane);
  const scalar_t* source = in + plane * a.in_plane;
  int64_t pick[kMaxDims] = {};
  int64_t offset = w.first, best_offset = w.first;
  scalar_t best = source[offset];
  for (int64_t k = 1; k < w.taps; ++k) {
    next_tap(w, pick, offset);
    const scalar_t v = source[offset];
    if (max_pool_replaces(v, best)) {
      best = v;
      best_offset = offset;
    }
  }
  *index = best_offset;
  return best;
}

// Output element i: the window's sum divided by its divisor.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline scalar_t avg_pool_element(const scalar_t* in, int64_t i,
                                                 const WindowArgs& a) {
  const int64_t plane = i / a.out_plane;
  const BoxWindow w = box_window(a, i - plane * a.out_plane);
  const scalar_t* source = in + plane * a.in_plane;
  int64_t pick[kMaxDims] = {};
  int64_t offset = w.first;
  acc_t sum = acc_t(0);
  for (int64_t k = 0; k < w.taps; ++k) {
    if (k > 0) next_tap(w, pick, offset);
    sum += static_cast<acc_t>(source[offset]);
  }
  return static_cast<scalar_t>(sum / static_cast<acc_t>(w.divisor));
}

// Per dim, the outputs whose windows read each input coordinate (as offsets in the output
// plane), with the dims' divisor factors.
inline ReaderTables window_readers(const WindowArgs& a) {
  return plane_readers(a, [&](int d, int64_t o, const auto& emit) {
    const WindowTaps t = window_taps(a, d, o);
    const int64_t factor = divisor_factor(a, d, o, t);
    for (int64_t j = 0; j < t.count; ++j) emit(t.first + j * a.dilation.v[d], 1.0, factor);
  });
}

// grad_input element i: the sum of grad / divisor over the outputs whose windows read it.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline scalar_t avg_pool_backward_element(const scalar_t* grad_out, int64_t i,
                                                          const WindowArgs& a,
                                                          const ReaderArgs& r,
                                                          const int64_t* table) {
  const int64_t plane = i / a.in_plane;
  const scalar_t* source = grad_out + plane * a.out_plane;
  acc_t sum = acc_t(0);
  for_each_reader<acc_t>(i - plane * a.in_plane, r, table, nullptr,
                         [&](int64_t offset, acc_t, int64_t factor) {
                           const int64_t divisor =
                               a.divisor_override != 0 ? a.divisor_override : factor;
                           sum += static_cast<acc_t>(source[offset]) / static_cast<acc_t>(divisor);
                         });
  return static_cast<scalar_t>(sum);
}

}  // namespace cuda
}  // namespace ndops
