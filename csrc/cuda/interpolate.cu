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

#include <type_traits>

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

// The resample of interpolate_nd_host (csrc/common/interp_shape.h), as on the CPU.
at::Tensor forward_contiguous(const at::Tensor& in, const InterpGeometry& g) {
  check_dims("ndops::interpolate_nd", g.ndim);
  const c10::cuda::CUDAGuard guard(in.device());
  at::Tensor out = at::empty(interp_output_sizes(in.sizes(), g), in.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, in.scalar_type(),
                                  "interpolate_nd", [&] { launch_forward<scalar_t>(in, out, g); });
  return out;
}

at::Tensor backward_contiguous(const at::Tensor& grad, c10::IntArrayRef input_size,
                               const InterpGeometry& g) {
  check_dims("ndops::_interpolate_nd_backward", g.ndim);
  const c10::cuda::CUDAGuard guard(grad.device());
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

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  using namespace ndops::cuda;
  m.impl("interpolate_nd", &ndops::interpolate_nd_host<forward_contiguous>);
  m.impl("_interpolate_nd_backward",
         &ndops::interpolate_nd_backward_host<backward_contiguous>);
}
