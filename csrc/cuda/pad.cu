// CUDA kernels of pad_nd and _pad_nd_backward (schemas: csrc/ndops.cpp); their elements, with
// the CPU kernels' per-dim map: csrc/cuda/pad_elements.h.
// - forward: one thread per output element, a gather (or the fill value); the copy moves
//   bytes, so it is instantiated per element size, not per dtype.
// - backward: one thread per grad_input element, summing every grad_output element that
//   copied it (a gather: no atomics, a fixed order).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>
#include <string_view>

#include "common/pad_shape.h"
#include "cuda/launch.cuh"
#include "cuda/pad_elements.h"

namespace ndops {
namespace cuda {
namespace {

// Opaque elements of 1, 2, 4, 8 or 16 bytes: the forward only copies.
template <int kBytes>
struct alignas(kBytes) Element {
  unsigned char bytes[kBytes];
};

template <typename element_t>
__global__ void pad_forward_kernel(const element_t* __restrict__ in, element_t* __restrict__ out,
                                   int64_t total, PadArgs a, element_t fill) {
  NDOPS_GRID_STRIDE_LOOP(i, total) { out[i] = pad_forward_element(in, i, a, fill); }
}

template <typename scalar_t>
__global__ void pad_backward_kernel(const scalar_t* __restrict__ grad_out,
                                    scalar_t* __restrict__ grad_in, int64_t total, PadArgs a,
                                    ReaderArgs r, const int64_t* __restrict__ table) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    grad_in[i] = pad_backward_element<scalar_t, at::opmath_type<scalar_t>>(grad_out, i, a, r,
                                                                           table);
  }
}

template <int kBytes>
void launch_forward(const at::Tensor& in, const at::Tensor& out, const PadArgs& a,
                    const void* fill_bytes) {
  using element_t = Element<kBytes>;
  element_t fill;
  std::memcpy(&fill, fill_bytes, kBytes);
  const int64_t total = out.numel();
  pad_forward_kernel<element_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
      static_cast<const element_t*>(in.const_data_ptr()),
      static_cast<element_t*>(out.mutable_data_ptr()), total, a, fill);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor pad_nd_cuda(const at::Tensor& input, c10::IntArrayRef pad, std::string_view mode,
                       double value) {
  const PadMode pad_mode = parse_pad_mode(mode);
  const PadGeometry g = pad_geometry(input.sizes(), pad, pad_mode);
  if (g.ndim == 0) return input.clone(at::MemoryFormat::Contiguous);
  check_dims("ndops::pad_nd", g.ndim);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = empty_padded(input, g);
  if (out.numel() == 0) return out;
  const at::Tensor in = input.contiguous();
  unsigned char fill[16] = {};
  AT_DISPATCH_ALL_TYPES_AND_COMPLEX_AND3(
      at::kHalf, at::kBFloat16, at::kBool, in.scalar_type(), "pad_nd", [&] {
        static_assert(sizeof(scalar_t) <= sizeof(fill));
        const scalar_t v = pad_fill_value<scalar_t>(pad_mode, value);
        std::memcpy(fill, &v, sizeof(scalar_t));
      });
  const PadArgs a = pad_args(g, pad_mode);
  switch (in.element_size()) {
    case 1: launch_forward<1>(in, out, a, fill); break;
    case 2: launch_forward<2>(in, out, a, fill); break;
    case 4: launch_forward<4>(in, out, a, fill); break;
    case 8: launch_forward<8>(in, out, a, fill); break;
    default: launch_forward<16>(in, out, a, fill); break;
  }
  return out;
}

at::Tensor pad_nd_backward_cuda(const at::Tensor& grad_output, c10::IntArrayRef input_size,
                                c10::IntArrayRef pad, std::string_view mode) {
  const PadMode pad_mode = parse_pad_mode(mode);
  const PadGeometry g = pad_backward_geometry(grad_output.sizes(), input_size, pad, pad_mode);
  if (g.ndim == 0) return grad_output.clone(at::MemoryFormat::Contiguous);
  check_dims("ndops::_pad_nd_backward", g.ndim);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_input = at::empty(input_size, grad_output.options());
  if (grad_input.numel() == 0) return grad_input;
  const at::Tensor grad = grad_output.contiguous();
  const PadArgs a = pad_args(g, pad_mode);
  const ReaderTables readers = pad_readers(g, pad_mode);
  const ReaderArgs r = reader_args(readers, g.in_sizes);
  const at::Tensor table = index_table(readers, grad.device());
  const int64_t total = grad_input.numel();
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "_pad_nd_backward", [&] {
        pad_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
            grad.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(), total, a, r,
            table.const_data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad_input;
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("pad_nd", &ndops::cuda::pad_nd_cuda);
  m.impl("_pad_nd_backward", &ndops::cuda::pad_nd_backward_cuda);
}
