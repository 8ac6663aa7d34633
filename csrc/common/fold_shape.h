// Host side of unfold_nd / fold_nd, shared by the CPU and CUDA launchers: the per-dim
// arguments checked and turned into block counts. ndops.functional.fold checks the same rules
// first, with friendlier messages; these are the second line of defence for direct
// torch.ops calls.
#pragma once

#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <vector>

#include "common/fold_index.h"

namespace ndops {

// One (b, c) plane of a call: the image side (unfold's input, fold's output) of spatial
// `size`, the column side (taps, length); the per-dim arguments have one entry per dim.
struct FoldGeometry {
  int ndim = 0;
  std::vector<int64_t> size, kernel, dilation, padding, stride, blocks;
  int64_t taps = 1, length = 1;  // prod(kernel), prod(blocks)

  int64_t image_plane() const {
    int64_t n = 1;
    for (const int64_t s : size) n *= s;
    return n;
  }
};

inline void check_fold_per_dim(const char* op, const char* name, c10::IntArrayRef values,
                               size_t n, int64_t lowest) {
  TORCH_CHECK(values.size() == n, op, ": ", name, " must have one entry per spatial dim (", n,
              "), got ", values);
  for (const int64_t v : values) {
    TORCH_CHECK(v >= lowest, op, ": ", name, " must be >= ", lowest, " in every dim, got ",
                values);
  }
}

// `size_name` names the image's spatial size in messages (fold: "output_size").
inline FoldGeometry fold_geometry(const char* op, const char* size_name, c10::IntArrayRef size,
                                  c10::IntArrayRef kernel, c10::IntArrayRef dilation,
                                  c10::IntArrayRef padding, c10::IntArrayRef stride) {
  const size_t n = size.size();
  TORCH_CHECK(n >= 1, op, ": at least one spatial dim is needed");
  check_fold_per_dim(op, size_name, size, n, 1);
  check_fold_per_dim(op, "kernel_size", kernel, n, 1);
  check_fold_per_dim(op, "dilation", dilation, n, 1);
  check_fold_per_dim(op, "padding", padding, n, 0);
  check_fold_per_dim(op, "stride", stride, n, 1);
  FoldGeometry g;
  g.ndim = static_cast<int>(n);
  g.size = size.vec();
  g.kernel = kernel.vec();
  g.dilation = dilation.vec();
  g.padding = padding.vec();
  g.stride = stride.vec();
  for (size_t d = 0; d < n; ++d) {
    g.blocks.push_back(block_count(size[d], kernel[d], dilation[d], padding[d], stride[d]));
    g.taps *= kernel[d];
    g.length *= g.blocks[d];
  }
  for (const int64_t b : g.blocks) {
    TORCH_CHECK(b >= 1, op, ": given ", size_name, " ", size, ", kernel_size ", kernel,
                ", dilation ", dilation, ", padding ", padding, " and stride ", stride,
                ", the array of sliding blocks would be empty (", c10::IntArrayRef(g.blocks),
                ")");
  }
  return g;
}

// unfold_nd's geometry, its input checked: (B, C, *spatial) with at least one spatial dim.
inline FoldGeometry unfold_geometry(c10::IntArrayRef input_sizes, c10::IntArrayRef kernel,
                                    c10::IntArrayRef dilation, c10::IntArrayRef padding,
                                    c10::IntArrayRef stride) {
  const char* op = "ndops::unfold_nd";
  TORCH_CHECK(input_sizes.size() >= 3, op, ": input must have shape (B, C, *spatial) with at ",
              "least one spatial dim, got ", input_sizes);
  return fold_geometry(op, "input spatial size", input_sizes.slice(2), kernel, dilation, padding,
                       stride);
}

// unfold_nd's output sizes: (B, C * taps, L).
inline std::vector<int64_t> unfold_output_sizes(c10::IntArrayRef input_sizes,
                                                const FoldGeometry& g) {
  return {input_sizes[0], input_sizes[1] * g.taps, g.length};
}

// fold_nd's geometry, its input (B, C * taps, L) checked against it.
inline FoldGeometry fold_nd_geometry(c10::IntArrayRef input_sizes, c10::IntArrayRef output_size,
                                     c10::IntArrayRef kernel, c10::IntArrayRef dilation,
                                     c10::IntArrayRef padding, c10::IntArrayRef stride) {
  const char* op = "ndops::fold_nd";
  TORCH_CHECK(input_sizes.size() == 3, op, ": input must have shape (B, C * prod(kernel_size), ",
              "L), got ", input_sizes);
  FoldGeometry g =
      fold_geometry(op, "output_size", output_size, kernel, dilation, padding, stride);
  TORCH_CHECK(input_sizes[1] % g.taps == 0, op, ": input's dimension 1 must be a multiple of ",
              "prod(kernel_size) = ", g.taps, ", got ", input_sizes);
  TORCH_CHECK(input_sizes[2] == g.length, op, ": input's dimension 2 (L) must match the number ",
              "of sliding blocks ", g.length, " (", c10::IntArrayRef(g.blocks), "), got ",
              input_sizes);
  return g;
}

// fold_nd's output sizes: (B, C, *output_size).
inline std::vector<int64_t> fold_output_sizes(c10::IntArrayRef input_sizes,
                                              const FoldGeometry& g) {
  std::vector<int64_t> sizes{input_sizes[0], input_sizes[1] / g.taps};
  sizes.insert(sizes.end(), g.size.begin(), g.size.end());
  return sizes;
}

}  // namespace ndops
