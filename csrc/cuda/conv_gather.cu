// CUDA gather of conv_nd's leading taps into channels and its adjoint (declared in
// csrc/cuda/conv_passes.h; elements and the index functions they share with the CPU passes:
// csrc/cuda/conv_elements.h).
// - gather: one thread per element of the channels-last gathered buffer, a copy (or zero);
// - scatter: one thread per input-gradient element, summing every gathered element that read
//   it (through the inverted tap tables: no atomics, a fixed order), in opmath.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <type_traits>

#include "cuda/conv_elements.h"
#include "cuda/conv_passes.h"
#include "cuda/launch.cuh"

namespace ndops {
namespace cuda {
namespace {

template <typename scalar_t>
__global__ void gather_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ gathered,
                              int64_t total, ChunkArgs a, Strides is,
                              const int64_t* __restrict__ table, PerDim<int64_t> source_begin,
                              int64_t inner_at) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    gathered[i] = gather_element(in, i, a, is, table, source_begin, inner_at);
  }
}

template <typename scalar_t, typename out_t>
__global__ void scatter_kernel(const scalar_t* __restrict__ grad, int64_t total, ChunkArgs a,
                               Strides gs, const int64_t* __restrict__ readers,
                               PerDim<int64_t> lead_at, int64_t copies_at, out_t* out,
                               Strides os, bool accumulate, const scalar_t* initial) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    scatter_element<scalar_t, at::opmath_type<scalar_t>, out_t>(
        grad, i, a, gs, readers, lead_at, copies_at, out, os, accumulate, initial);
  }
}

}  // namespace

void gather_taps(const at::Tensor& input, const ConvPlan& plan, int64_t first, int64_t count,
                 at::Tensor& gathered) {
  check_dims("ndops::conv_nd", plan.ndim);
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t total = gathered.numel();
  if (total == 0) return;
  const Strides is = strides_of(collapsed_or_fail(input, plan.lead, "input"));
  const ChunkArgs a = chunk_args(plan, first, count);
  const GatherTables tables = gather_tables(plan);
  const at::Tensor table = table_to_device(tables.table, input.device());
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "conv_nd_gather", [&] {
        gather_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
            input.const_data_ptr<scalar_t>(), gathered.mutable_data_ptr<scalar_t>(), total, a,
            is, table.const_data_ptr<int64_t>(), tables.source_begin, tables.inner_at);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

void scatter_taps(const at::Tensor& grad_gathered, const ConvPlan& plan, int64_t first,
                  int64_t count, at::Tensor& grad_input, bool accumulate,
                  const at::Tensor& initial) {
  check_dims("ndops::conv_nd", plan.ndim);
  const c10::cuda::CUDAGuard guard(grad_gathered.device());
  const int64_t total = grad_input.numel();
  if (total == 0) return;
  const Strides gs = strides_of(collapsed_or_fail(grad_gathered, 0, "the gathered gradient"));
  const Strides os = strides_of(collapsed_or_fail(grad_input, plan.lead, "grad_input"));
  const ChunkArgs a = chunk_args(plan, first, count);
  const ConvReaders readers = conv_readers(plan);
  const at::Tensor table = table_to_device(readers.table, grad_gathered.device());
  const PerDim<int64_t> lead_at = per_dim<int64_t>(readers.lead_at);
  const bool init = initial.defined() && !accumulate;
  const at::Tensor init_values = init ? initial.contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_gathered.scalar_type(), "conv_nd_scatter", [&] {
        const scalar_t* init_data = init ? init_values.const_data_ptr<scalar_t>() : nullptr;
        const auto launch = [&](auto* out) {
          using out_t = std::remove_pointer_t<decltype(out)>;
          scatter_kernel<scalar_t, out_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
              grad_gathered.const_data_ptr<scalar_t>(), total, a, gs,
              table.const_data_ptr<int64_t>(), lead_at, readers.copies_at, out, os, accumulate,
              init_data);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        };
        if (grad_input.scalar_type() == grad_gathered.scalar_type()) {
          launch(grad_input.mutable_data_ptr<scalar_t>());
        } else {  // accumulating chunks of a reduced-precision gradient in its opmath type
          using acc_t = at::opmath_type<scalar_t>;
          TORCH_INTERNAL_ASSERT(grad_input.scalar_type() == c10::CppTypeToScalarType<acc_t>());
          launch(grad_input.mutable_data_ptr<acc_t>());
        }
      });
}

}  // namespace cuda
}  // namespace ndops
