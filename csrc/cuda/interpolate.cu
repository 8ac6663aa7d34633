// CUDA kernels of interpolate_nd and _interpolate_nd_backward (schemas: csrc/ndops.cpp) for
// nearest, nearest-exact and linear (multilinear), any number of interpolated dims.
//
// Their elements, with the CPU kernels' per-dim taps: csrc/cuda/interp_elements.h.
// - forward: one thread per output element; each dim's taps computed on the device, then the
//   tensor product of the taps (2^N corners for linear, fewer where a dim has one tap).
// - backward: one thread per grad_input element, a gather over the outputs reading it (per-dim
//   taps tabulated on the host and inverted). No atomics; the sums run in a fixed order.
// A channels-last (B, C, *spatial) tensor runs as the contiguous (B, *spatial, C) with C an
// extra, unchanged last dim (as on the CPU), and gives a channels-last result.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/interp_shape.h"
#include "cuda/interp_elements.h"
#include "cuda/launch.cuh"

namespace ndops {
namespace cuda {
namespace {

template <typename scalar_t, typename coord_t, bool kLinear>
__global__ void interp_forward_kernel(const scalar_t* __restrict__ in,
                                      scalar_t* __restrict__ out, int64_t total, InterpArgs a) {
  using acc_t = std::conditional_t<kLinear, at::opmath_type<scalar_t>, float>;
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    out[i] = interp_forward_element<scalar_t, coord_t, acc_t, kLinear>(in, i, a);
  }
}

template <typename scalar_t>
__global__ void interp_backward_kernel(const scalar_t* __restrict__ grad_out,
                                       scalar_t* __restrict__ grad_in, int64_t total,
                                       InterpArgs a, ReaderArgs r,
                                       const int64_t* __restrict__ table,
                                       const at::opmath_type<scalar_t>* __restrict__ weights) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    grad_in[i] = interp_backward_element<scalar_t, at::opmath_type<scalar_t>>(grad_out, i, a, r,
                                                                              table, weights);
  }
}

template <typename scalar_t, bool kLinear>
void launch_forward_kernel(const at::Tensor& in, const at::Tensor& out,
                           const InterpGeometry& g) {
  using coord_t = interp_coord_type<scalar_t>;
  const int64_t total = out.numel();
  interp_forward_kernel<scalar_t, coord_t, kLinear>
      <<<blocks_for(total), kThreads, 0, current_stream()>>>(
          in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), total,
          interp_args<coord_t>(g));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// uint8 runs the nearest modes only (check_interp_dtype).
template <typename scalar_t>
void launch_forward(const at::Tensor& in, const at::Tensor& out, const InterpGeometry& g) {
  if constexpr (std::is_same_v<scalar_t, uint8_t>) {
    launch_forward_kernel<scalar_t, false>(in, out, g);
  } else if (g.mode == InterpMode::kLinear) {
    launch_forward_kernel<scalar_t, true>(in, out, g);
  } else {
    launch_forward_kernel<scalar_t, false>(in, out, g);
  }
}

at::Tensor forward_contiguous(const at::Tensor& in, const InterpGeometry& g) {
  check_dims("ndops::interpolate_nd", g.ndim);
  at::Tensor out = at::empty(interp_output_sizes(in.sizes(), g), in.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, in.scalar_type(),
                                  "interpolate_nd", [&] { launch_forward<scalar_t>(in, out, g); });
  return out;
}

at::Tensor backward_contiguous(const at::Tensor& grad, c10::IntArrayRef input_size,
                               const InterpGeometry& g) {
  check_dims("ndops::_interpolate_nd_backward", g.ndim);
  at::Tensor grad_input = at::empty(input_size, grad.options());
  if (grad_input.numel() == 0) return grad_input;
  const int64_t total = grad_input.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                  "_interpolate_nd_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const InterpArgs a = interp_args<acc_t>(g);
    const ReaderTables readers = interp_readers<acc_t>(g);
    const at::Tensor index = index_table(readers, grad.device());
    const at::Tensor weights =
        weight_table(readers, c10::CppTypeToScalarType<acc_t>::value, grad.device());
    interp_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        grad.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(), total, a,
        reader_args(readers, g.in_sizes), index.const_data_ptr<int64_t>(),
        weights.const_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input;
}

at::Tensor interpolate_nd_cuda(const at::Tensor& input, c10::IntArrayRef output_size,
                               std::optional<c10::ArrayRef<double>> scales,
                               std::string_view mode, bool align_corners, bool antialias) {
  TORCH_CHECK(!antialias, "ndops::interpolate_nd: antialias=True has no compiled kernel; ",
              "ndops.interpolate_nd runs its fallback for it");
  const InterpMode interp_mode = parse_interp_mode(mode);
  std::vector<double> scale = interp_scale_list(scales);
  const InterpGeometry g = interp_geometry(input.sizes(), output_size, scale, interp_mode,
                                           align_corners);
  check_interp_dtype(input, interp_mode != InterpMode::kLinear, "interpolate_nd", "input");
  const c10::cuda::CUDAGuard guard(input.device());
  if (!interp_channels_last(input, g.ndim)) return forward_contiguous(input.contiguous(), g);
  const at::Tensor moved = input.movedim(1, -1);  // (B, *spatial, C), contiguous
  if (!scale.empty()) scale.push_back(-1.0);
  const std::vector<int64_t> sizes = interp_with_channels(output_size, input.size(1));
  return forward_contiguous(moved, interp_geometry(moved.sizes(), sizes, scale, interp_mode,
                                                   align_corners))
      .movedim(-1, 1);
}

at::Tensor interpolate_nd_backward_cuda(const at::Tensor& grad_output,
                                        c10::IntArrayRef output_size,
                                        c10::IntArrayRef input_size,
                                        std::optional<c10::ArrayRef<double>> scales,
                                        std::string_view mode, bool align_corners) {
  const InterpMode interp_mode = parse_interp_mode(mode);
  std::vector<double> scale = interp_scale_list(scales);
  const InterpGeometry g = interp_geometry(input_size, output_size, scale, interp_mode,
                                           align_corners);
  const std::vector<int64_t> expected = interp_output_sizes(input_size, g);
  TORCH_CHECK(grad_output.sizes() == c10::IntArrayRef(expected), "ndops::",
              "_interpolate_nd_backward: grad_output has shape ", grad_output.sizes(),
              " but interpolating input_size ", input_size, " to output_size ", output_size,
              " gives ", c10::IntArrayRef(expected));
  check_interp_dtype(grad_output, false, "_interpolate_nd_backward", "grad_output");
  const c10::cuda::CUDAGuard guard(grad_output.device());
  if (!interp_channels_last(grad_output, g.ndim)) {
    return backward_contiguous(grad_output.contiguous(), input_size, g);
  }
  const at::Tensor moved = grad_output.movedim(1, -1);
  std::vector<int64_t> moved_input(input_size.begin(), input_size.end());
  std::rotate(moved_input.begin() + 1, moved_input.begin() + 2, moved_input.end());
  if (!scale.empty()) scale.push_back(-1.0);
  const std::vector<int64_t> sizes = interp_with_channels(output_size, input_size[1]);
  return backward_contiguous(moved, moved_input,
                             interp_geometry(moved_input, sizes, scale, interp_mode,
                                             align_corners))
      .movedim(-1, 1);
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("interpolate_nd", &ndops::cuda::interpolate_nd_cuda);
  m.impl("_interpolate_nd_backward", &ndops::cuda::interpolate_nd_backward_cuda);
}
