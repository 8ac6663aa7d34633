// CUDA kernels of the pooling ops that move values by index (schemas: csrc/ndops.cpp); indices
// are flat in each (b, c) plane, as on the CPU (csrc/cpu/pool.cpp):
// - _max_pool_nd_backward: grad_input[p, idx] += grad_output[p, o]. Its schema carries no
//   window, so the outputs reading an input element are unknown and a gather is impossible:
//   atomic adds (into a float32 buffer for half/bfloat16), hence not deterministic where
//   windows overlap (flagged to torch.use_deterministic_algorithms).
// - max_unpool_nd: out[p, idx] = input[p, i], the last i winning among equal indices (as on the
//   CPU): an atomic max per output element picks the winner, then a gather writes every output
//   element once (deterministic).
// - _max_unpool_nd_backward: a gather by index.
// An index out of range raises the CPU kernels' error (read back from a device flag).
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <type_traits>

#include "common/pool_shape.h"
#include "cuda/launch.cuh"

namespace ndops {
namespace cuda {
namespace {

template <int kBytes>
struct alignas(kBytes) Element {
  unsigned char bytes[kBytes];
};

// The flat position that element i of the index tensor (planes of `index_plane` elements)
// names in the other tensor (planes of `other_plane`), or -1, setting `error`, when its index
// is out of range.
__device__ inline int64_t indexed_position(const int64_t* index, int64_t i, int64_t index_plane,
                                           int64_t other_plane, int32_t* error) {
  const int64_t j = index[i];
  if (j < 0 || j >= other_plane) {
    *error = 1;
    return -1;
  }
  return (i / index_plane) * other_plane + j;
}

template <typename scalar_t, typename acc_t>
__global__ void scatter_add_kernel(const scalar_t* __restrict__ grad,
                                   const int64_t* __restrict__ index, acc_t* __restrict__ target,
                                   int64_t total, int64_t source_plane, int64_t target_plane,
                                   int32_t* __restrict__ error) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    const int64_t t = indexed_position(index, i, source_plane, target_plane, error);
    if (t >= 0) atomicAdd(target + t, static_cast<acc_t>(grad[i]));
  }
}

// winner[p, idx[p, i]] = the largest flat source position i that targets it.
__global__ void unpool_winner_kernel(const int64_t* __restrict__ index,
                                     long long* __restrict__ winner, int64_t total,
                                     int64_t source_plane, int64_t target_plane,
                                     int32_t* __restrict__ error) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    const int64_t t = indexed_position(index, i, source_plane, target_plane, error);
    if (t >= 0) atomicMax(winner + t, static_cast<long long>(i));
  }
}

template <typename element_t>
__global__ void unpool_gather_kernel(const element_t* __restrict__ source,
                                     const long long* __restrict__ winner,
                                     element_t* __restrict__ out, int64_t total) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    const long long w = winner[i];
    element_t value{};  // zero bits: zero in every dtype
    if (w >= 0) value = source[w];
    out[i] = value;
  }
}

// result[p, i] = grad[p, idx[p, i]].
template <typename element_t>
__global__ void gather_kernel(const element_t* __restrict__ grad,
                              const int64_t* __restrict__ index, element_t* __restrict__ result,
                              int64_t total, int64_t result_plane, int64_t grad_plane,
                              int32_t* __restrict__ error) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    const int64_t t = indexed_position(index, i, result_plane, grad_plane, error);
    element_t value{};
    if (t >= 0) value = grad[t];
    result[i] = value;
  }
}

// The CPU kernels' dtypes: integers and floating point, not bool or complex.
void check_unpool_dtype(const char* op, const at::Tensor& t) {
  const at::ScalarType type = t.scalar_type();
  TORCH_CHECK(at::isFloatingType(type) || at::isIntegralType(type, /*includeBool=*/false), op,
              ": unsupported dtype ", type);
}

// Runs body(Element<size>{}) for the element size of `t`.
template <typename Body>
void dispatch_element_size(const at::Tensor& t, const Body& body) {
  switch (t.element_size()) {
    case 1: return body(Element<1>{});
    case 2: return body(Element<2>{});
    case 4: return body(Element<4>{});
    case 8: return body(Element<8>{});
    default: TORCH_CHECK(false, "ndops: unsupported dtype ", t.scalar_type());
  }
}

at::Tensor max_pool_nd_backward_cuda(const at::Tensor& grad_output, const at::Tensor& indices,
                                     c10::IntArrayRef input_size) {
  const char* op = "ndops::_max_pool_nd_backward";
  check_pool_grad_output(op, grad_output, input_size);
  check_indices(op, indices, grad_output.sizes());
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_input = at::empty(input_size, grad_output.options());
  if (grad_input.numel() == 0) return grad_input;
  grad_input.zero_();
  if (grad_output.numel() == 0) return grad_input;
  at::globalContext().alertNotDeterministic("ndops::_max_pool_nd_backward (CUDA)");
  const at::Tensor grad = grad_output.contiguous(), index = indices.contiguous();
  const at::Tensor error = error_flag(grad.device());
  const int64_t total = grad.numel();
  const int64_t source_plane = spatial_numel(indices.sizes());
  const int64_t target_plane = spatial_numel(input_size);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "_max_pool_nd_backward", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr bool kInPlace = std::is_same_v<acc_t, scalar_t>;
        const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
        at::Tensor target =
            kInPlace ? grad_input : at::zeros(input_size, grad.options().dtype(acc_type));
        scatter_add_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
            grad.const_data_ptr<scalar_t>(), index.const_data_ptr<int64_t>(),
            target.mutable_data_ptr<acc_t>(), total, source_plane, target_plane,
            error.mutable_data_ptr<int32_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (!kInPlace) grad_input.copy_(target);
      });
  check_error_flag(error, "ndops::_max_pool_nd_backward: an index is out of range for a plane "
                          "of the input");
  return grad_input;
}

at::Tensor max_unpool_nd_cuda(const at::Tensor& input, const at::Tensor& indices,
                              c10::IntArrayRef output_size) {
  const char* op = "ndops::max_unpool_nd";
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = empty_max_unpool_output(op, input, indices, output_size);
  check_unpool_dtype(op, input);
  if (input.size(0) * input.size(1) == 0) return out;
  const at::Tensor values = input.contiguous(), index = indices.contiguous();
  at::Tensor winner = at::empty(out.sizes(), out.options().dtype(at::kLong)).fill_(-1);
  const at::Tensor error = error_flag(values.device());
  const int64_t in_plane = spatial_numel(input.sizes()), out_plane = spatial_numel(out.sizes());
  if (values.numel() > 0) {
    unpool_winner_kernel<<<blocks_for(values.numel()), kThreads, 0, current_stream()>>>(
        index.const_data_ptr<int64_t>(),
        reinterpret_cast<long long*>(winner.mutable_data_ptr<int64_t>()), values.numel(),
        in_plane, out_plane, error.mutable_data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const int64_t total = out.numel();
  dispatch_element_size(values, [&](auto tag) {
    using element_t = decltype(tag);
    unpool_gather_kernel<element_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        static_cast<const element_t*>(values.const_data_ptr()),
        reinterpret_cast<const long long*>(winner.const_data_ptr<int64_t>()),
        static_cast<element_t*>(out.mutable_data_ptr()), total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  check_error_flag(error, "ndops::max_unpool_nd: an index is out of range for an output plane");
  return out;
}

at::Tensor max_unpool_nd_backward_cuda(const at::Tensor& grad_output, const at::Tensor& indices) {
  const char* op = "ndops::_max_unpool_nd_backward";
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor result = empty_max_unpool_grad(op, grad_output, indices);
  check_unpool_dtype(op, grad_output);
  if (result.numel() == 0) return result;
  const at::Tensor grad = grad_output.contiguous(), index = indices.contiguous();
  const at::Tensor error = error_flag(grad.device());
  const int64_t total = result.numel();
  const int64_t result_plane = spatial_numel(indices.sizes());
  const int64_t grad_plane = spatial_numel(grad_output.sizes());
  dispatch_element_size(grad, [&](auto tag) {
    using element_t = decltype(tag);
    gather_kernel<element_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        static_cast<const element_t*>(grad.const_data_ptr()), index.const_data_ptr<int64_t>(),
        static_cast<element_t*>(result.mutable_data_ptr()), total, result_plane, grad_plane,
        error.mutable_data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  check_error_flag(error, "ndops::_max_unpool_nd_backward: an index is out of range for a plane "
                          "of grad_output");
  return result;
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("_max_pool_nd_backward", &ndops::cuda::max_pool_nd_backward_cuda);
  m.impl("max_unpool_nd", &ndops::cuda::max_unpool_nd_cuda);
  m.impl("_max_unpool_nd_backward", &ndops::cuda::max_unpool_nd_backward_cuda);
}
