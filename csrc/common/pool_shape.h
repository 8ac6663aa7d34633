// Host side of the pooling ops, shared by the CPU and CUDA launchers: the per-dim argument
// lists checked and turned into output sizes, the other arguments checked, and the outputs
// allocated. ndops.functional checks the same rules first, with friendlier messages; these
// are the second line of defence for direct torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <optional>
#include <tuple>
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

// max_pool_nd's window, every window checked to pool at least one input element.
inline SlidingWindow max_pool_window(const char* op, c10::IntArrayRef input_sizes,
                                     c10::IntArrayRef kernel, c10::IntArrayRef stride,
                                     c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                     bool ceil_mode) {
  const SlidingWindow w =
      sliding_window(op, input_sizes, kernel, stride, padding, dilation, ceil_mode);
  check_sliding_windows(op, w, true);
  return w;
}

// avg_pool_nd's window (dilation 1) with divisor_override checked. The backward passes
// grad_output's sizes, checked to be those of the pooled input_size.
inline SlidingWindow avg_pool_window(
    const char* op, c10::IntArrayRef input_sizes, c10::IntArrayRef kernel,
    c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
    std::optional<int64_t> divisor_override,
    std::optional<c10::IntArrayRef> grad_output_sizes = std::nullopt) {
  const std::vector<int64_t> ones(kernel.size(), 1);
  const SlidingWindow w =
      sliding_window(op, input_sizes, kernel, stride, padding, ones, ceil_mode);
  TORCH_CHECK(divisor_override.value_or(1) != 0, op, ": divisor_override must not be 0");
  if (grad_output_sizes) {
    const std::vector<int64_t> out_sizes = with_spatial(input_sizes, w.out);
    TORCH_CHECK(*grad_output_sizes == c10::IntArrayRef(out_sizes), op, ": grad_output has ",
                "shape ", *grad_output_sizes, " but pooling input_size ", input_sizes,
                " gives ", c10::IntArrayRef(out_sizes));
  }
  check_sliding_windows(op, w, false);
  return w;
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

// Elements per (b, c) plane of a (B, C, *spatial) shape.
inline int64_t spatial_numel(c10::IntArrayRef sizes) {
  int64_t n = 1;
  for (size_t d = 2; d < sizes.size(); ++d) n *= sizes[d];
  return n;
}

// A pool's grad_output (B, C, *any spatial) for input_size: the same B, C and N.
inline void check_pool_grad_output(const char* op, const at::Tensor& grad_output,
                                   c10::IntArrayRef input_size) {
  const int n = pool_spatial_dims(op, input_size);
  TORCH_CHECK(grad_output.dim() == n + 2 && grad_output.size(0) == input_size[0] &&
                  grad_output.size(1) == input_size[1],
              op, ": grad_output of shape ", grad_output.sizes(), " does not match input_size ",
              input_size);
}

// _adaptive_avg_pool_nd_backward's checks; returns the pooled size (grad_output's spatial
// sizes).
inline c10::IntArrayRef adaptive_avg_backward_size(const char* op,
                                                   const at::Tensor& grad_output,
                                                   c10::IntArrayRef input_size) {
  check_pool_grad_output(op, grad_output, input_size);
  const c10::IntArrayRef output_size = grad_output.sizes().slice(2);
  check_adaptive_output(op, input_size, output_size);
  return output_size;
}

// A max pool's values (B, C, *out_spatial) and indices (the same shape, or (0,) when not
// returned), uninitialized.
inline std::tuple<at::Tensor, at::Tensor> empty_max_pool_results(const at::Tensor& input,
                                                                 c10::IntArrayRef out_spatial,
                                                                 bool return_indices) {
  const std::vector<int64_t> out_sizes = with_spatial(input.sizes(), out_spatial);
  return {at::empty(out_sizes, input.options()),
          at::empty(return_indices ? out_sizes : std::vector<int64_t>{0},
                    input.options().dtype(at::kLong))};
}

// max_unpool_nd's checks and its (B, C, *output_size) output, uninitialized.
inline at::Tensor empty_max_unpool_output(const char* op, const at::Tensor& input,
                                          const at::Tensor& indices,
                                          c10::IntArrayRef output_size) {
  const int n = pool_spatial_dims(op, input.sizes());
  check_per_dim(op, "output_size", output_size, n, 0);
  check_indices(op, indices, input.sizes());
  return at::empty(with_spatial(input.sizes(), output_size), input.options());
}

// _max_unpool_nd_backward's checks and its result (the shape of indices), uninitialized.
inline at::Tensor empty_max_unpool_grad(const char* op, const at::Tensor& grad_output,
                                        const at::Tensor& indices) {
  pool_spatial_dims(op, grad_output.sizes());
  TORCH_CHECK(indices.dim() == grad_output.dim() && indices.size(0) == grad_output.size(0) &&
                  indices.size(1) == grad_output.size(1),
              op, ": indices of shape ", indices.sizes(), " do not match grad_output of shape ",
              grad_output.sizes());
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": indices must be an int64 tensor, got ",
              indices.scalar_type());
  return at::empty(indices.sizes(), grad_output.options());
}

}  // namespace ndops
