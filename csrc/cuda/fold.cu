// CUDA kernels of unfold_nd and fold_nd (schemas: csrc/ndops.cpp; shapes and checks:
// csrc/common/fold_shape.h, shared with the CPU kernels; elements: csrc/cuda/fold_elements.h).
// Each op is the other's backward (ndops/_ops/fold.py).
// - unfold: one thread per column element, a gather from the image (or zero);
// - fold: one thread per image element, summing the column elements that meet it (a gather
//   through per-dim tables built on the host: no atomics, a fixed order).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/fold_shape.h"
#include "cuda/fold_elements.h"
#include "cuda/launch.cuh"

namespace ndops {
namespace cuda {
namespace {

template <typename scalar_t>
__global__ void unfold_kernel(const scalar_t* __restrict__ image, scalar_t* __restrict__ columns,
                              int64_t total, FoldArgs a) {
  NDOPS_GRID_STRIDE_LOOP(i, total) { columns[i] = unfold_element(image, i, a); }
}

template <typename scalar_t>
__global__ void fold_kernel(const scalar_t* __restrict__ columns, scalar_t* __restrict__ image,
                            int64_t total, FoldArgs a, ReaderArgs r,
                            const int64_t* __restrict__ table) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    image[i] = fold_element<scalar_t, at::opmath_type<scalar_t>>(columns, i, a, r, table);
  }
}

at::Tensor unfold_nd_cuda(const at::Tensor& input, c10::IntArrayRef kernel_size,
                          c10::IntArrayRef dilation, c10::IntArrayRef padding,
                          c10::IntArrayRef stride) {
  const FoldGeometry g = unfold_geometry(input.sizes(), kernel_size, dilation, padding, stride);
  check_dims("ndops::unfold_nd", g.ndim);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = at::empty(unfold_output_sizes(input.sizes(), g), input.options());
  if (out.numel() == 0) return out;
  const at::Tensor in = input.contiguous();
  const FoldArgs a = fold_args(g);
  const int64_t total = out.numel();
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "unfold_nd", [&] {
        unfold_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
            in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), total, a);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

at::Tensor fold_nd_cuda(const at::Tensor& input, c10::IntArrayRef output_size,
                        c10::IntArrayRef kernel_size, c10::IntArrayRef dilation,
                        c10::IntArrayRef padding, c10::IntArrayRef stride) {
  const FoldGeometry g =
      fold_nd_geometry(input.sizes(), output_size, kernel_size, dilation, padding, stride);
  check_dims("ndops::fold_nd", g.ndim);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = at::empty(fold_output_sizes(input.sizes(), g), input.options());
  if (out.numel() == 0) return out;
  const at::Tensor in = input.contiguous();
  const FoldArgs a = fold_args(g);
  const ReaderTables readers = fold_readers(g);
  const ReaderArgs r = reader_args(readers, g.size);
  const at::Tensor table = index_table(readers, in.device());
  const int64_t total = out.numel();
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "fold_nd", [&] {
        fold_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
            in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), total, a, r,
            table.const_data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("unfold_nd", &ndops::cuda::unfold_nd_cuda);
  m.impl("fold_nd", &ndops::cuda::fold_nd_cuda);
}
