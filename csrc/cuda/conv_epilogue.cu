// CUDA moves of conv_nd's outputs and output gradients between the (B, C_out, *lead,
// *inner) layout and the native conv's (B * lead, C_out, *inner), with the bias + activation
// epilogue fused in (declared in csrc/cuda/conv_passes.h; elements: csrc/cuda/conv_elements.h,
// activation math: csrc/common/activation.h, the CPU epilogue's).
// One thread per element of the chunk; the bias gradient is the per-channel sum of the packed
// gradient (an ATen reduction, in opmath).
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/sum.h>

#include <vector>

#include "common/activation_dispatch.h"
#include "cuda/conv_elements.h"
#include "cuda/conv_passes.h"
#include "cuda/launch.cuh"

namespace ndops {
namespace cuda {
namespace {

template <Activation kAct, typename scalar_t>
__global__ void unpack_kernel(const scalar_t* __restrict__ native, int64_t total, ChunkArgs a,
                              int64_t channels, Strides ns, scalar_t* out, Strides os,
                              scalar_t* pre, Strides ps, at::opmath_type<scalar_t> slope) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    unpack_element<kAct>(native, i, a, channels, ns, out, os, pre, ps, slope);
  }
}

template <Activation kAct, typename scalar_t>
__global__ void pack_kernel(const scalar_t* __restrict__ grad, int64_t total, ChunkArgs a,
                            int64_t channels, Strides gs, const scalar_t* act_input, Strides as,
                            scalar_t* __restrict__ packed, Strides ns,
                            at::opmath_type<scalar_t> slope) {
  NDOPS_GRID_STRIDE_LOOP(i, total) {
    pack_element<kAct>(grad, i, a, channels, gs, act_input, as, packed, ns, slope);
  }
}

// Elements of a chunk: (B, count, C_out, inner out voxels).
int64_t chunk_elements(const ConvPlan& plan, int64_t count) {
  return plan.batch * count * plan.out_channels * plan.inner_out_voxels;
}

}  // namespace

void unpack_positions(const at::Tensor& native, const ConvPlan& plan, int64_t first,
                      int64_t count, const ConvEpilogue& epilogue, at::Tensor& out,
                      const at::Tensor& pre_activation) {
  check_dims("ndops::conv_nd", plan.ndim);
  const c10::cuda::CUDAGuard guard(native.device());
  const int64_t total = chunk_elements(plan, count);
  if (total == 0) return;
  const Strides ns = strides_of(collapsed_or_fail(native, 0, "the native conv's output"));
  const Strides os = strides_of(collapsed_or_fail(out, plan.lead, "the output"));
  const bool pre = pre_activation.defined();
  const Strides ps = pre ? strides_of(collapsed_or_fail(pre_activation, plan.lead, "z")) : os;
  const ChunkArgs a = chunk_args(plan, first, count);
  dispatch_epilogue(epilogue, out.scalar_type(), [&](auto act, auto tag) {
    using scalar_t = decltype(tag);
    unpack_kernel<decltype(act)::value, scalar_t>
        <<<blocks_for(total), kThreads, 0, current_stream()>>>(
            native.const_data_ptr<scalar_t>(), total, a, plan.out_channels, ns,
            out.mutable_data_ptr<scalar_t>(), os,
            pre ? pre_activation.mutable_data_ptr<scalar_t>() : nullptr, ps,
            static_cast<at::opmath_type<scalar_t>>(epilogue.negative_slope));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void pack_positions(const at::Tensor& grad_output, const at::Tensor& activation_input,
                    const ConvPlan& plan, int64_t first, int64_t count,
                    const ConvEpilogue& epilogue, at::Tensor& packed, at::Tensor& bias_grad) {
  check_dims("ndops::conv_nd", plan.ndim);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const int64_t total = chunk_elements(plan, count);
  if (total == 0) return;
  const Strides gs = strides_of(collapsed_or_fail(grad_output, plan.lead, "grad_output"));
  const Strides ns = strides_of(collapsed_or_fail(packed, 0, "the packed grad_output"));
  const bool act = epilogue.activation != Activation::kNone;
  const Strides as =
      act ? strides_of(collapsed_or_fail(activation_input, plan.lead, "the activation input"))
          : gs;
  const ChunkArgs a = chunk_args(plan, first, count);
  dispatch_epilogue(epilogue, packed.scalar_type(), [&](auto act_tag, auto tag) {
    using scalar_t = decltype(tag);
    pack_kernel<decltype(act_tag)::value, scalar_t>
        <<<blocks_for(total), kThreads, 0, current_stream()>>>(
            grad_output.const_data_ptr<scalar_t>(), total, a, plan.out_channels, gs,
            act ? activation_input.const_data_ptr<scalar_t>() : nullptr, as,
            packed.mutable_data_ptr<scalar_t>(), ns,
            static_cast<at::opmath_type<scalar_t>>(epilogue.negative_slope));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (bias_grad.defined()) {
    std::vector<int64_t> dims{0};  // every dim of the packed chunk but the channels
    for (int64_t d = 2; d < packed.dim(); ++d) dims.push_back(d);
    bias_grad.add_(at::sum(packed, dims, false, bias_grad.scalar_type()));
  }
}

}  // namespace cuda
}  // namespace ndops
