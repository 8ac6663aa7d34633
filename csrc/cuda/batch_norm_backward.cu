// CUDA kernel of _batch_norm_act_nd_backward (schema: csrc/ndops.cpp; tiling and reductions:
// csrc/cuda/batch_norm.cuh): (1) per (channel, split) block, the sums of dz = dy * act'(z) and
// dz * (x - mean), z recomputed from x (pre_activation_grad); (2) one thread per channel adds
// the partials in order and derives grad_weight, grad_bias and the coefficients of dx
// (grad_input_coefficients, csrc/common/batch_norm.h); (3) dx elementwise.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <string_view>
#include <tuple>

#include "cuda/batch_norm.cuh"

namespace ndops {
namespace cuda {
namespace {

// Per channel: mean, the affine of the forward, and (after the sums) dx's coefficients.
template <typename acc_t>
struct ChannelState {
  acc_t mean, invstd, weight;
  ChannelAffine<acc_t> affine;
  GradInputCoefficients<acc_t> coef;
};

template <typename acc_t>
__global__ void channel_prepare_kernel(const acc_t* __restrict__ mean,
                                       const acc_t* __restrict__ invstd,
                                       const acc_t* __restrict__ weight,
                                       const acc_t* __restrict__ bias, int64_t channels,
                                       ChannelState<acc_t>* __restrict__ state) {
  NDOPS_GRID_STRIDE_LOOP(c, channels) {
    ChannelState<acc_t> s{};
    s.mean = mean[c];
    s.invstd = invstd[c];
    s.weight = value_or(weight, c, acc_t(1));
    s.affine = channel_affine(s.mean, s.invstd, s.weight, value_or(bias, c, acc_t(0)));
    state[c] = s;
  }
}

template <Activation kAct, typename scalar_t, typename acc_t>
__global__ void grad_sums_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                                 PlaneTiles p, const ChannelState<acc_t>* __restrict__ state,
                                 acc_t negative_slope, GradSums<acc_t>* __restrict__ partial) {
  const int64_t c = blockIdx.x;
  const int split = blockIdx.y, splits = gridDim.y;
  const ChannelState<acc_t> s = state[c];
  GradSums<acc_t> sums{acc_t(0), acc_t(0)};
  for_channel_tiles(p, c, split, splits, [&](int64_t offset) {
    const acc_t xv = static_cast<acc_t>(x[offset]);
    const acc_t dz = pre_activation_grad<kAct>(xv, static_cast<acc_t>(dy[offset]), s.affine,
                                               negative_slope);
    sums.dz += dz;
    sums.dz_centered += dz * (xv - s.mean);
  });
  sums = block_reduce(sums, GradSums<acc_t>{acc_t(0), acc_t(0)},
                      [](const GradSums<acc_t>& a, const GradSums<acc_t>& b) {
                        return GradSums<acc_t>{a.dz + b.dz, a.dz_centered + b.dz_centered};
                      });
  if (threadIdx.x == 0) partial[c * splits + split] = sums;
}

template <typename acc_t>
__global__ void grad_finalize_kernel(const GradSums<acc_t>* __restrict__ partial, int splits,
                                     int64_t channels, bool training, int64_t count,
                                     ChannelState<acc_t>* __restrict__ state,
                                     acc_t* __restrict__ grad_weight,
                                     acc_t* __restrict__ grad_bias) {
  NDOPS_GRID_STRIDE_LOOP(c, channels) {
    acc_t dz = 0, dz_centered = 0;
    for (int s = 0; s < splits; ++s) {
      dz += partial[c * splits + s].dz;
      dz_centered += partial[c * splits + s].dz_centered;
    }
    ChannelState<acc_t>& s = state[c];
    grad_weight[c] = s.invstd * dz_centered;
    grad_bias[c] = dz;
    s.coef = grad_input_coefficients(training, s.invstd, s.weight, dz, dz_centered, count);
  }
}

template <Activation kAct, typename scalar_t, typename acc_t>
__global__ void grad_input_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                                  scalar_t* __restrict__ dx, PlaneTiles p,
                                  const ChannelState<acc_t>* __restrict__ state,
                                  acc_t negative_slope) {
  for_all_tiles(p, [&](int64_t offset, int64_t c) {
    const ChannelState<acc_t>& s = state[c];
    const acc_t xv = static_cast<acc_t>(x[offset]);
    const acc_t dz = pre_activation_grad<kAct>(xv, static_cast<acc_t>(dy[offset]), s.affine,
                                               negative_slope);
    dx[offset] = static_cast<scalar_t>(dz * s.coef.dz_coef + (xv - s.mean) * s.coef.centered_coef +
                                       s.coef.constant);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_nd_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& save_mean, const at::Tensor& save_invstd, bool training,
    double /*eps: read by the double backward only*/, std::string_view activation,
    double negative_slope) {
  const Activation act = bn::parse_activation(activation);
  bn::check_batch_norm_backward(grad_output, input, weight, bias, save_mean, save_invstd);
  const c10::cuda::CUDAGuard guard(input.device());
  const PlaneTiles p(input.sizes());
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  const at::Tensor x = input.contiguous(), dy = grad_output.contiguous();
  at::Tensor grad_input = at::empty(input.sizes(), input.options());
  const bn::ChannelGrads grads = bn::zero_channel_grads(input);
  if (x.numel() > 0) {
    const at::Tensor w = channel_tensor(weight, acc_type), b = channel_tensor(bias, acc_type);
    const at::Tensor mean = save_mean.contiguous(), invstd = save_invstd.contiguous();
    const int splits = p.splits();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                    "_batch_norm_act_nd_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto bytes = [&](int64_t count, size_t size) {
        return at::empty({static_cast<int64_t>(count * size)}, input.options().dtype(at::kByte));
      };
      at::Tensor state = bytes(p.channels, sizeof(ChannelState<acc_t>));
      at::Tensor partial = bytes(p.channels * splits, sizeof(GradSums<acc_t>));
      auto* channel_state = static_cast<ChannelState<acc_t>*>(state.data_ptr());
      auto* partial_sums = static_cast<GradSums<acc_t>*>(partial.data_ptr());
      const acc_t slope = static_cast<acc_t>(negative_slope);
      const unsigned int channel_blocks = blocks_for(p.channels);
      channel_prepare_kernel<acc_t><<<channel_blocks, kThreads, 0, current_stream()>>>(
          mean.const_data_ptr<acc_t>(), invstd.const_data_ptr<acc_t>(), data_or_null<acc_t>(w),
          data_or_null<acc_t>(b), p.channels, channel_state);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const unsigned int blocks = blocks_for(p.batch * p.channels * p.tiles_per_plane * kThreads);
      bn::dispatch_activation(act, [&](auto tag) {
        constexpr Activation kAct = decltype(tag)::value;
        grad_sums_kernel<kAct, scalar_t, acc_t>
            <<<dim3(static_cast<unsigned int>(p.channels), splits), kThreads, 0,
               current_stream()>>>(x.const_data_ptr<scalar_t>(), dy.const_data_ptr<scalar_t>(),
                                   p, channel_state, slope, partial_sums);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        grad_finalize_kernel<acc_t><<<channel_blocks, kThreads, 0, current_stream()>>>(
            partial_sums, splits, p.channels, training, p.values_per_channel(), channel_state,
            grads.weight.mutable_data_ptr<acc_t>(), grads.bias.mutable_data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        grad_input_kernel<kAct, scalar_t, acc_t><<<blocks, kThreads, 0, current_stream()>>>(
            x.const_data_ptr<scalar_t>(), dy.const_data_ptr<scalar_t>(),
            grad_input.mutable_data_ptr<scalar_t>(), p, channel_state, slope);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  return grads.with_grad_input(grad_input, weight, bias);
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("_batch_norm_act_nd_backward", &ndops::cuda::batch_norm_act_nd_backward_cuda);
}
