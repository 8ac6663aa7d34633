// One element of unfold_nd's and fold_nd's CUDA kernels (csrc/cuda/fold.cu), host-compilable
// (see per_dim.h). Along every dim, tap t of block l meets image coordinate
// block_tap_coordinate(l, t) (csrc/common/fold_index.h, the CPU kernels' map):
// - unfold: a column element reads that coordinate (zero in the padding);
// - fold: an image element sums every column element that unfold would read from it, through
//   per-dim inverted tables (a gather: no atomics; terms in increasing tap order, the CPU
//   kernel's order).
// Columns are (plane, t_0, ..., t_{N-1}, l_0, ..., l_{N-1}) row-major; the image is
// (plane, x_0, ..., x_{N-1}); a plane is one (b, c).
#pragma once

#include <cstdint>

#include "common/fold_index.h"
#include "common/fold_shape.h"
#include "cuda/per_dim.h"

namespace ndops {
namespace cuda {

struct FoldArgs {
  int ndim;
  int64_t image_plane, column_plane, length;  // elements per plane; blocks per tap
  PerDim<int64_t> size, kernel, dilation, padding, stride, blocks;
};

inline FoldArgs fold_args(const FoldGeometry& g) {
  FoldArgs a{};
  a.ndim = g.ndim;
  a.image_plane = g.image_plane();
  a.column_plane = g.taps * g.length;
  a.length = g.length;
  a.size = per_dim<int64_t>(g.size);
  a.kernel = per_dim<int64_t>(g.kernel);
  a.dilation = per_dim<int64_t>(g.dilation);
  a.padding = per_dim<int64_t>(g.padding);
  a.stride = per_dim<int64_t>(g.stride);
  a.blocks = per_dim<int64_t>(g.blocks);
  return a;
}

// Column element i: the image element that its tap of its block reads, or zero.
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t unfold_element(const scalar_t* image, int64_t i,
                                               const FoldArgs& a) {
  const int64_t plane = i / a.column_plane;
  const int64_t rest = i - plane * a.column_plane;
  int64_t tap = rest / a.length, block = rest - tap * a.length;
  int64_t offset = plane * a.image_plane, image_stride = 1;
  bool inside = true;
  NDOPS_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < a.ndim) {
      const int64_t t = tap % a.kernel.v[d], l = block % a.blocks.v[d];
      tap /= a.kernel.v[d];
      block /= a.blocks.v[d];
      const int64_t x =
          block_tap_coordinate(l, t, a.dilation.v[d], a.padding.v[d], a.stride.v[d]);
      inside = inside && x >= 0 && x < a.size.v[d];
      offset += x * image_stride;
      image_stride *= a.size.v[d];
    }
  }
  return inside ? image[offset] : scalar_t(0);
}

// Per dim, the (tap, block) pairs that meet each image coordinate, stored as their offset in
// a column plane, in increasing tap order.
inline ReaderTables fold_readers(const FoldGeometry& g) {
  ReaderTablesBuilder tables;
  int64_t tap_stride = g.taps, block_stride = g.length;
  for (int d = 0; d < g.ndim; ++d) {
    tap_stride /= g.kernel[d];
    block_stride /= g.blocks[d];
    const int64_t blocks = g.blocks[d];
    tables.add_dim(
        g.size[d], g.kernel[d] * blocks,
        [&](int64_t o, const auto& emit) {  // o = t * blocks + l
          const int64_t x = block_tap_coordinate(o % blocks, o / blocks, g.dilation[d],
                                                 g.padding[d], g.stride[d]);
          if (x >= 0 && x < g.size[d]) emit(x, 1.0, 1);
        },
        [&](int64_t o) { return o / blocks * tap_stride * g.length + o % blocks * block_stride; });
  }
  return tables.finish();
}

// Image element i: the sum of the column elements that meet it.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline scalar_t fold_element(const scalar_t* columns, int64_t i,
                                             const FoldArgs& a, const ReaderArgs& r,
                                             const int64_t* table) {
  return sum_of_readers<scalar_t, acc_t>(columns, i, a.image_plane, a.column_plane, r, table);
}

}  // namespace cuda
}  // namespace ndops
