// One element of interpolate_nd's CUDA kernels (csrc/cuda/interpolate.cu), host-compilable
// (see per_dim.h). The per-dim taps are the CPU kernels' (interp_ratio, interp_taps:
// csrc/common/interp.h) in the same coordinate type: computed per element for the forward, and
// tabulated on the host (tabulate_taps, csrc/common/interp_shape.h) and inverted for the
// backward's gather.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/interp.h"
#include "common/interp_shape.h"
#include "cuda/per_dim.h"

namespace ndops {
namespace cuda {

struct InterpArgs : PlaneArgs {
  InterpMode mode;
  bool align_corners;
  PerDim<double> ratio;  // interp_ratio<coord_t>, exact in double
};

// Coordinates in double for double, else in float (as the CPU kernels and torch's).
template <typename scalar_t>
using interp_coord_type =
    std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

template <typename coord_t>
InterpArgs interp_args(const InterpGeometry& g) {
  InterpArgs a{plane_args(g.in_sizes, g.out_sizes)};
  a.mode = g.mode;
  a.align_corners = g.align_corners;
  for (int d = 0; d < g.ndim; ++d) {
    a.ratio.v[d] = static_cast<double>(
        interp_ratio<coord_t>(g.in_sizes[d], g.out_sizes[d], g.align_corners, g.scales[d]));
  }
  return a;
}

// Output element i: the tensor product of its per-dim taps (one tap per dim for the nearest
// modes, a copy; up to 2^N weighted corners for linear, fewer where a dim has one tap).
template <typename scalar_t, typename coord_t, typename acc_t, bool kLinear>
C10_HOST_DEVICE inline scalar_t interp_forward_element(const scalar_t* in, int64_t i,
                                                       const InterpArgs& a) {
  const int64_t plane = i / a.out_plane;
  int64_t rest = i - plane * a.out_plane, base = plane * a.in_plane, corners = 1;
  int64_t delta[kMaxDims];  // offset of the second tap from the first
  acc_t w0[kMaxDims], w1[kMaxDims];
  bool two[kMaxDims];
  NDOPS_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    delta[d] = 0;
    w0[d] = acc_t(1);
    w1[d] = acc_t(0);
    two[d] = false;
    if (d < a.ndim) {
      const int64_t o = rest % a.out_sizes.v[d];
      rest /= a.out_sizes.v[d];
      const Tap<coord_t> t = interp_taps<coord_t>(a.mode, static_cast<coord_t>(a.ratio.v[d]), o,
                                                  a.in_sizes.v[d], a.out_sizes.v[d],
                                                  a.align_corners);
      base += t.index0 * a.in_strides.v[d];
      delta[d] = (t.index1 - t.index0) * a.in_strides.v[d];
      w0[d] = static_cast<acc_t>(t.weight0);
      w1[d] = static_cast<acc_t>(t.weight1);
      two[d] = t.count == 2;
      corners *= t.count;
    }
  }
  if constexpr (!kLinear) {
    (void)corners, (void)delta, (void)w0, (void)w1, (void)two;
    return in[base];
  } else {
    acc_t sum = acc_t(0);
    for (int64_t k = 0; k < corners; ++k) {
      int64_t bits = k, offset = base;  // bit b of k: the tap of the b-th two-tap dim (last first)
      acc_t weight = acc_t(1);
      NDOPS_UNROLL
      for (int d = kMaxDims - 1; d >= 0; --d) {
        if (d < a.ndim) {
          const bool second = two[d] && (bits & 1);
          if (two[d]) bits >>= 1;
          offset += second ? delta[d] : 0;
          weight *= second ? w1[d] : w0[d];
        }
      }
      sum += weight * static_cast<acc_t>(in[offset]);
    }
    return static_cast<scalar_t>(sum);
  }
}

// Per dim, the output coordinates reading each input coordinate (as offsets in the output
// plane) and the taps' weights; acc_t: the coordinate and weight type of the backward.
template <typename acc_t>
ReaderTables interp_readers(const InterpGeometry& g) {
  std::vector<std::vector<Tap<acc_t>>> taps;
  for (int d = 0; d < g.ndim; ++d) taps.push_back(tabulate_taps<acc_t>(g, d));
  return plane_readers(plane_args(g.in_sizes, g.out_sizes),
                       [&](int d, int64_t o, const auto& emit) {
                         const Tap<acc_t>& t = taps[d][o];
                         emit(t.index0, static_cast<double>(t.weight0), 1);
                         if (t.count == 2) emit(t.index1, static_cast<double>(t.weight1), 1);
                       });
}

// grad_input element i: the sum over the outputs reading it of grad_output times the product
// of the taps' weights.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline scalar_t interp_backward_element(const scalar_t* grad_out, int64_t i,
                                                        const InterpArgs& a,
                                                        const ReaderArgs& r,
                                                        const int64_t* table,
                                                        const acc_t* weights) {
  const int64_t plane = i / a.in_plane;
  const scalar_t* source = grad_out + plane * a.out_plane;
  acc_t sum = acc_t(0);
  for_each_reader<acc_t>(i - plane * a.in_plane, r, table, weights,
                         [&](int64_t offset, acc_t weight, int64_t) {
                           sum += weight * static_cast<acc_t>(source[offset]);
                         });
  return static_cast<scalar_t>(sum);
}

}  // namespace cuda
}  // namespace ndops
