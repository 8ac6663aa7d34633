// CUDA kernels of max_pool_nd and adaptive_max_pool_nd (schemas: csrc/ndops.cpp): one thread
// per output element walks its window's taps in row-major order and keeps the maximum by
// torch's rule, as the CPU kernels do; the index is flat in the (b, c) plane. Elements and
// windows: csrc/cuda/pool_window.h. The backward of both is _max_pool_nd_backward
// (csrc/cuda/pool_index.cu).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/launch.cuh"
#include "cuda/pool_window.h"

namespace ndops {
namespace cuda {
namespace {

template <typename scalar_t, bool kIndices>
__global__ void max_pool_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ values,
                                int64_t* __restrict__ indices, int64_t total, WindowArgs a) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    int64_t index;
    values[i] = max_pool_element(in, i, a, &index);
    if constexpr (kIndices) indices[i] = index;
  }
}

void launch_max_pool(const at::Tensor& input, const WindowArgs& a, const at::Tensor& values,
                     const at::Tensor& indices, bool return_indices) {
  const at::Tensor in = input.contiguous();
  const int64_t total = values.numel();
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "max_pool_nd", [&] {
    if (return_indices) {
      max_pool_kernel<scalar_t, true><<<blocks_for(total), kThreads, 0, current_stream()>>>(
          in.const_data_ptr<scalar_t>(), values.mutable_data_ptr<scalar_t>(),
          indices.mutable_data_ptr<int64_t>(), total, a);
    } else {
      max_pool_kernel<scalar_t, false><<<blocks_for(total), kThreads, 0, current_stream()>>>(
          in.const_data_ptr<scalar_t>(), values.mutable_data_ptr<scalar_t>(), nullptr, total,
          a);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::tuple<at::Tensor, at::Tensor> max_pool_nd_cuda(
    const at::Tensor& input, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode, bool return_indices) {
  const char* op = "ndops::max_pool_nd";
  const SlidingWindow w =
      max_pool_window(op, input.sizes(), kernel_size, stride, padding, dilation, ceil_mode);
  check_dims(op, static_cast<int64_t>(w.in.size()));
  const c10::cuda::CUDAGuard guard(input.device());
  auto [values, indices] = empty_max_pool_results(input, w.out, return_indices);
  if (values.numel() > 0) {
    launch_max_pool(input, sliding_args(w), values, indices, return_indices);
  }
  return {values, indices};
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool_nd_cuda(const at::Tensor& input,
                                                             c10::IntArrayRef output_size,
                                                             bool return_indices) {
  const char* op = "ndops::adaptive_max_pool_nd";
  check_adaptive_output(op, input.sizes(), output_size);
  check_dims(op, static_cast<int64_t>(output_size.size()));
  const c10::cuda::CUDAGuard guard(input.device());
  auto [values, indices] = empty_max_pool_results(input, output_size, return_indices);
  if (values.numel() > 0) {
    launch_max_pool(input, adaptive_args(input.sizes().slice(2), output_size), values, indices,
                    return_indices);
  }
  return {values, indices};
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("max_pool_nd", &ndops::cuda::max_pool_nd_cuda);
  m.impl("adaptive_max_pool_nd", &ndops::cuda::adaptive_max_pool_nd_cuda);
}
