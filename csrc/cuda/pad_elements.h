// One element of pad_nd's CUDA kernels (csrc/cuda/pad.cu), host-compilable (see per_dim.h):
// the same per-dim map as the CPU kernels, pad_source_index (csrc/common/pad_index.h), on the
// device for the forward; tabulated on the host (pad_source_tables, pad_shape.h) and inverted
// for the backward's gather.
#pragma once

#include <cstdint>

#include "common/pad_index.h"
#include "common/pad_shape.h"
#include "cuda/per_dim.h"

namespace ndops {
namespace cuda {

// The planes: the padded dims, one pair per lead index.
struct PadArgs : PlaneArgs {
  PadMode mode;
  PerDim<int64_t> pad_left, pad_right;
};

inline PadArgs pad_args(const PadGeometry& g, PadMode mode) {
  PadArgs a{plane_args(g.in_sizes, g.out_sizes)};
  a.mode = mode;
  a.pad_left = per_dim<int64_t>(g.pad_left);
  a.pad_right = per_dim<int64_t>(g.pad_right);
  return a;
}

// Output element i: in[the offset it copies], or `fill`.
template <typename element_t>
C10_HOST_DEVICE inline element_t pad_forward_element(const element_t* in, int64_t i,
                                                     const PadArgs& a, element_t fill) {
  const int64_t lead = i / a.out_plane;
  int64_t rest = i - lead * a.out_plane, offset = lead * a.in_plane;
  bool inside = true;
  NDOPS_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < a.ndim) {
      const int64_t o = rest % a.out_sizes.v[d];
      rest /= a.out_sizes.v[d];
      const int64_t s =
          pad_source_index(a.mode, o, a.in_sizes.v[d], a.pad_left.v[d], a.pad_right.v[d]);
      inside = inside && s >= 0;
      offset += s * a.in_strides.v[d];
    }
  }
  return inside ? in[offset] : fill;
}

// Per dim, the output coordinates that copy each input coordinate, as offsets in the output
// plane.
inline ReaderTables pad_readers(const PadGeometry& g, PadMode mode) {
  const auto source = pad_source_tables(g, mode);
  return plane_readers(plane_args(g.in_sizes, g.out_sizes),
                       [&](int d, int64_t o, const auto& emit) {
                         if (source[d][o] >= 0) emit(source[d][o], 1.0, 1);
                       });
}

// grad_input element i: the sum of the grad_output elements that copied it.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline scalar_t pad_backward_element(const scalar_t* grad_out, int64_t i,
                                                     const PadArgs& a, const ReaderArgs& r,
                                                     const int64_t* table) {
  return sum_of_readers<scalar_t, acc_t>(grad_out, i, a.in_plane, a.out_plane, r, table);
}

}  // namespace cuda
}  // namespace ndops
