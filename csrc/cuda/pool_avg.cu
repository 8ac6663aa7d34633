// CUDA kernels of avg_pool_nd, adaptive_avg_pool_nd and their backward passes (schemas:
// csrc/ndops.cpp). Windows and divisors are the CPU kernels' (csrc/common/window.h); elements:
// csrc/cuda/pool_window.h.
// - forward: one thread per output element sums its window (opmath accumulation) and divides
//   by divisor_override or the product of the per-dim divisor factors;
// - backward: one thread per grad_input element gathers grad / divisor from every output whose
//   window reads it (per-dim reader tables built on the host from the same window functions):
//   no atomics, a fixed summation order.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>

#include "cuda/launch.cuh"
#include "cuda/pool_window.h"

namespace ndops {
namespace cuda {
namespace {

template <typename scalar_t>
__global__ void avg_pool_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ out,
                                int64_t total, WindowArgs a) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    out[i] = avg_pool_element<scalar_t, at::opmath_type<scalar_t>>(in, i, a);
  }
}

template <typename scalar_t>
__global__ void avg_pool_backward_kernel(const scalar_t* __restrict__ grad_out,
                                         scalar_t* __restrict__ grad_in, int64_t total,
                                         WindowArgs a, ReaderArgs r,
                                         const int64_t* __restrict__ table) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    grad_in[i] =
        avg_pool_backward_element<scalar_t, at::opmath_type<scalar_t>>(grad_out, i, a, r, table);
  }
}

at::Tensor avg_forward(const at::Tensor& input, const WindowArgs& a,
                       c10::IntArrayRef out_spatial) {
  at::Tensor out = at::empty(with_spatial(input.sizes(), out_spatial), input.options());
  if (out.numel() == 0) return out;
  const at::Tensor in = input.contiguous();
  const int64_t total = out.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "avg_pool", [&] {
    avg_pool_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), total, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor avg_backward(const at::Tensor& grad_output, const WindowArgs& a,
                        c10::IntArrayRef input_size) {
  at::Tensor grad_input = at::empty(input_size, grad_output.options());
  if (grad_input.numel() == 0) return grad_input;
  const at::Tensor grad = grad_output.contiguous();
  const ReaderTables readers = window_readers(a);
  const at::Tensor table = index_table(readers, grad.device());
  const ReaderArgs r = reader_args(readers, c10::IntArrayRef(a.in_sizes.v, a.ndim));
  const int64_t total = grad_input.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "avg_pool_backward", [&] {
        avg_pool_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
            grad.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(), total, a, r,
            table.const_data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad_input;
}

at::Tensor avg_pool_nd_cuda(const at::Tensor& input, c10::IntArrayRef kernel_size,
                            c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
                            bool count_include_pad, std::optional<int64_t> divisor_override) {
  const char* op = "ndops::avg_pool_nd";
  const SlidingWindow w = avg_pool_window(op, input.sizes(), kernel_size, stride, padding,
                                          ceil_mode, divisor_override);
  check_dims(op, static_cast<int64_t>(w.in.size()));
  const c10::cuda::CUDAGuard guard(input.device());
  const WindowArgs a = sliding_args(w, count_include_pad, divisor_override.value_or(0));
  return avg_forward(input, a, w.out);
}

at::Tensor avg_pool_nd_backward_cuda(const at::Tensor& grad_output, c10::IntArrayRef input_size,
                                     c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                     c10::IntArrayRef padding, bool ceil_mode,
                                     bool count_include_pad,
                                     std::optional<int64_t> divisor_override) {
  const char* op = "ndops::_avg_pool_nd_backward";
  const SlidingWindow w = avg_pool_window(op, input_size, kernel_size, stride, padding,
                                          ceil_mode, divisor_override, grad_output.sizes());
  check_dims(op, static_cast<int64_t>(w.in.size()));
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const WindowArgs a = sliding_args(w, count_include_pad, divisor_override.value_or(0));
  return avg_backward(grad_output, a, input_size);
}

at::Tensor adaptive_avg_pool_nd_cuda(const at::Tensor& input, c10::IntArrayRef output_size) {
  const char* op = "ndops::adaptive_avg_pool_nd";
  check_adaptive_output(op, input.sizes(), output_size);
  check_dims(op, static_cast<int64_t>(output_size.size()));
  const c10::cuda::CUDAGuard guard(input.device());
  return avg_forward(input, adaptive_args(input.sizes().slice(2), output_size), output_size);
}

at::Tensor adaptive_avg_pool_nd_backward_cuda(const at::Tensor& grad_output,
                                              c10::IntArrayRef input_size) {
  const char* op = "ndops::_adaptive_avg_pool_nd_backward";
  const c10::IntArrayRef output_size = adaptive_avg_backward_size(op, grad_output, input_size);
  check_dims(op, static_cast<int64_t>(output_size.size()));
  const c10::cuda::CUDAGuard guard(grad_output.device());
  if (grad_output.numel() == 0) {
    return at::empty(input_size, grad_output.options()).zero_();
  }
  return avg_backward(grad_output, adaptive_args(input_size.slice(2), output_size), input_size);
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("avg_pool_nd", &ndops::cuda::avg_pool_nd_cuda);
  m.impl("_avg_pool_nd_backward", &ndops::cuda::avg_pool_nd_backward_cuda);
  m.impl("adaptive_avg_pool_nd", &ndops::cuda::adaptive_avg_pool_nd_cuda);
  m.impl("_adaptive_avg_pool_nd_backward", &ndops::cuda::adaptive_avg_pool_nd_backward_cuda);
}
