// Source coordinates of nearest and linear interpolation along one dim, torch's rules.
//
// Interpolation is separable: an output coordinate o of one dim reads input coordinates of that
// dim only (one for nearest, two taps for linear), and an N-d output element reads the tensor
// product of its per-dim taps (the 2^N corners for linear, weights multiplied). These functions
// give the per-dim maps; shared verbatim by the CPU and CUDA kernels. T is the type the
// coordinates are computed in: torch's CPU kernels use the input's opmath type (double for
// double input, float otherwise), its CUDA kernels float.
#pragma once

#include <c10/macros/Macros.h>

#include <math.h>

#include <cstdint>

namespace ndops {

enum class InterpMode : int32_t { kNearest, kNearestExact, kLinear };

// Input pixels per output pixel (ATen's area_pixel_compute_scale). `scale` is the user's
// scale factor, or <= 0 when none was given (the ratio is then in/out); align_corners maps the
// corner pixel centers onto each other instead.
template <typename T>
C10_HOST_DEVICE inline T interp_ratio(int64_t in_size, int64_t out_size, bool align_corners,
                                      double scale) {
  if (align_corners) {
    return out_size > 1 ? static_cast<T>(in_size - 1) / static_cast<T>(out_size - 1) : T(0);
  }
  return scale > 0 ? static_cast<T>(1.0 / scale) : static_cast<T>(in_size) / out_size;
}

// torch floors source coordinates in float (floorf), whatever T is; so does ndops.
template <typename T>
C10_HOST_DEVICE inline int64_t floor_as_float(T x) {
  return static_cast<int64_t>(floorf(static_cast<float>(x)));
}

// The input coordinate that output coordinate o copies (nearest), or that it rounds to
// (nearest-exact: pixel centers, src = floor(ratio * (o + 0.5) - 0.5 + 0.5) with the center
// clamped at 0), both clamped to in_size - 1.
template <typename T>
C10_HOST_DEVICE inline int64_t nearest_source_index(T ratio, int64_t o, int64_t in_size,
                                                    bool exact) {
  int64_t src;
  if (exact) {
    T center = ratio * (static_cast<T>(o) + T(0.5)) - T(0.5);
    if (center < T(0)) center = T(0);
    src = floor_as_float(static_cast<double>(center) + 0.5);
  } else {
    src = floor_as_float(ratio * static_cast<T>(o));
  }
  return src < in_size - 1 ? src : in_size - 1;
}

// The two taps of linear interpolation at output coordinate o: input coordinates index0 <=
// index1 (equal at the last input pixel) with weights weight0 + weight1 = 1. A dim whose size
// does not change is copied (torch does so whatever the scale factor).
template <typename T>
C10_HOST_DEVICE inline void linear_taps(T ratio, int64_t o, int64_t in_size, int64_t out_size,
                                        bool align_corners, int64_t* index0, int64_t* index1,
                                        T* weight0, T* weight1) {
  if (in_size == out_size) {
    *index0 = *index1 = o;
    *weight0 = T(1);
    *weight1 = T(0);
    return;
  }
  // The source coordinate: pixel centers map onto pixel centers (align_corners: corners onto
  // corners); left of the first center it is clamped to 0.
  T src = align_corners ? ratio * static_cast<T>(o)
                        : ratio * (static_cast<T>(o) + T(0.5)) - T(0.5);
  if (!align_corners && src < T(0)) src = T(0);
  int64_t left = floor_as_float(src);
  if (left > in_size - 1) left = in_size - 1;
  T lambda = src - static_cast<T>(left);
  lambda = lambda < T(0) ? T(0) : (lambda > T(1) ? T(1) : lambda);
  *index0 = left;
  *index1 = left < in_size - 1 ? left + 1 : left;
  *weight0 = T(1) - lambda;
  *weight1 = lambda;
}

// The taps of output coordinate o of one dim; coinciding taps (nearest, a dim that keeps its
// size, the last input pixel) are merged into one (count 1, weight1 = 0).
template <typename T>
struct Tap {
  int64_t index0, index1;
  T weight0, weight1;
  int count;
  C10_HOST_DEVICE bool is_copy() const { return count == 1 && weight0 == T(1); }
};

template <typename T>
C10_HOST_DEVICE inline Tap<T> interp_taps(InterpMode mode, T ratio, int64_t o, int64_t in_size,
                                          int64_t out_size, bool align_corners) {
  Tap<T> t;
  if (mode == InterpMode::kLinear) {
    linear_taps<T>(ratio, o, in_size, out_size, align_corners, &t.index0, &t.index1,
                   &t.weight0, &t.weight1);
  } else {
    t.index0 = t.index1 =
        nearest_source_index<T>(ratio, o, in_size, mode == InterpMode::kNearestExact);
    t.weight0 = T(1);
    t.weight1 = T(0);
  }
  t.count = t.index0 == t.index1 ? 1 : 2;
  if (t.count == 1) {
    t.weight0 += t.weight1;
    t.weight1 = T(0);
  }
  return t;
}

}  // namespace ndops
