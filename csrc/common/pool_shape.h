// Host side of the pooling ops, shared by the CPU and CUDA launchers: the per-dim argument
// lists checked and turned into output sizes. ndops.functional checks the same rules first,
// with friendlier messages; these are the second line of defence for direct torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <vector>

#include "common/window.h"

namespace ndops {

// N of a batched (B, C, *spatial) input.
inline int pool_spatial_dims(const char* op, c10::IntArrayRef input_sizes) {
  TORCH_CHECK(input_sizes.size() >= 3, op, ": input must have shape (B, C, *spatial) with at ",
              "least one spatial dim, got ", input_sizes);
  return static_cast<int>(input_sizes.size()) - 2;
}

inline void check_per_dim(const char* op, const char* name, c10::IntArrayRef values, int n,
                          int64_t lowest) {
  TORCH_CHECK(static_cast<int>(values.size()) == n, op, ": ", name, " must have one entry per ",
              "spatial dim (", n, "), got ", values);
  for (const int64_t v : values) {
    TORCH_CHECK(v >= lowest, op, ": ", name, " must be >= ", lowest, " in every dim, got ",
                values);
  }
}

// A sliding-window pool's per-dim arguments and sizes (dilation 1 for average pooling).
struct SlidingWindow {
  std::vector<int64_t> in, out, kernel, stride, padding, dilation;
};

inline SlidingWindow sliding_window(const char* op, c10::IntArrayRef input_sizes,
                                    c10::IntArrayRef kernel, c10::IntArrayRef stride,
                                    c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                    bool ceil_mode) {
  const int n = pool_spatial_dims(op, input_sizes);
  check_per_dim(op, "kernel_size", kernel, n, 1);
  check_per_dim(op, "stride", stride, n, 1);
  check_per_dim(op, "padding", padding, n, 0);
  check_per_dim(op, "dilation", dilation, n, 1);
  SlidingWindow w;
  w.in.assign(input_sizes.end() - n, input_sizes.end());
  w.kernel = kernel.vec();
  w.stride = stride.vec();
  w.padding = padding.vec();
  w.dilation = dilation.vec();
  for (int d = 0; d < n; ++d) {
    TORCH_CHECK(padding[d] <= kernel[d] / 2, op, ": padding must be at most half of ",
                "kernel_size in every dim, got padding ", padding, " and kernel_size ", kernel);
    w.out.push_back(pooled_size(w.in[d], kernel[d], stride[d], padding[d], dilation[d],
                                ceil_mode));
    TORCH_CHECK(w.out[d] >= 1, op, ": the output would be empty (input size ",
                c10::IntArrayRef(w.in), ", kernel_size ", kernel, ")");
  }
  return w;
}

// A sliding pool needs a non-empty input, and every max window at least one input element
// (with dilation and padding, one might hold only padding).
inline void check_sliding_windows(const char* op, const SlidingWindow& w, bool is_max) {
  for (size_t d = 0; d < w.in.size(); ++d) {
    TORCH_CHECK(w.in[d] > 0, op, ": input must have non-zero spatial sizes, got ",
                c10::IntArrayRef(w.in));
    for (int64_t o = 0; is_max && o < w.out[d]; ++o) {
      const WindowTaps taps = sliding_window_taps(o, w.in[d], w.kernel[d], w.stride[d],
                                                  w.padding[d], w.dilation[d]);
      TORCH_CHECK(taps.count > 0, op, ": with dilation ", c10::IntArrayRef(w.dilation),
                  " and padding ", c10::IntArrayRef(w.padding), ", output position ", o,
                  " of spatial dim ", d, " pools no input element");
    }
  }
}

// (B, C, *spatial) with the spatial sizes of `input_sizes` replaced by `spatial`.
inline std::vector<int64_t> with_spatial(c10::IntArrayRef input_sizes,
                                         c10::IntArrayRef spatial) {
  std::vector<int64_t> sizes{input_sizes[0], input_sizes[1]};
  sizes.insert(sizes.end(), spatial.begin(), spatial.end());
  return sizes;
}

inline void check_adaptive_output(const char* op, c10::IntArrayRef input_sizes,
                                  c10::IntArrayRef output_size) {
  const int n = pool_spatial_dims(op, input_sizes);
  check_per_dim(op, "output_size", output_size, n, 0);
  for (int d = 0; d < n; ++d) {
    TORCH_CHECK(input_sizes[2 + d] > 0 || output_size[d] == 0, op, ": input must have ",
                "non-zero spatial sizes, got ", input_sizes);
  }
}

inline void check_indices(const char* op, const at::Tensor& indices, c10::IntArrayRef shape) {
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": indices must be an int64 tensor, got ",
              indices.scalar_type());
  TORCH_CHECK(indices.sizes() == shape, op, ": indices must have shape ", shape, ", got ",
              indices.sizes());
}

}  // namespace ndops
