// CUDA kernel of batch_norm_act_nd (schema: csrc/ndops.cpp; tiling and reductions:
// csrc/cuda/batch_norm.cuh). Training: (1) per (channel, split) block, Welford statistics
// (welford_update per thread, welford_merge across the block); (2) one thread per channel
// merges the partials in order and derives mean, invstd, the running statistics and the
// affine (scale, shift); (3) y = act(x * scale + shift), elementwise. Eval skips (1).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <string_view>
#include <tuple>

#include "cuda/batch_norm.cuh"

namespace ndops {
namespace cuda {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void channel_stats_kernel(const scalar_t* __restrict__ x, PlaneTiles p,
                                     WelfordStats<acc_t>* __restrict__ partial) {
  const int64_t c = blockIdx.x;
  const int split = blockIdx.y, splits = gridDim.y;
  WelfordStats<acc_t> stats;
  for_channel_tiles(p, c, split, splits, [&](int64_t offset) {
    welford_update(stats, static_cast<acc_t>(x[offset]));
  });
  stats = block_reduce(stats, WelfordStats<acc_t>{}, [](const auto& a, const auto& b) {
    return welford_merge(a, b);
  });
  if (threadIdx.x == 0) partial[c * splits + split] = stats;
}

// Per channel: mean, invstd, affine; in training from the partials (and the running
// statistics updated if given), in eval from the running statistics.
template <typename acc_t>
struct ChannelOutputs {
  acc_t* mean;
  acc_t* invstd;
  acc_t* scale;
  acc_t* shift;
  acc_t* running_mean;  // updated in place (training with tracked statistics), else null
  acc_t* running_var;
};

template <typename acc_t>
__global__ void channel_finalize_kernel(const WelfordStats<acc_t>* __restrict__ partial,
                                        int splits, int64_t channels, bool training,
                                        const acc_t* __restrict__ weight,
                                        const acc_t* __restrict__ bias,
                                        const acc_t* __restrict__ given_mean,
                                        const acc_t* __restrict__ given_var, double eps,
                                        acc_t momentum, ChannelOutputs<acc_t> out) {
  NDOPS_GRID_STRIDE_LOOP(c, channels) {
    acc_t mean, invstd;
    if (training) {
      WelfordStats<acc_t> stats;
      for (int s = 0; s < splits; ++s) stats = welford_merge(stats, partial[c * splits + s]);
      mean = stats.mean;
      invstd = inverse_std(welford_biased_var(stats), eps);
      if (out.running_mean != nullptr) {
        out.running_mean[c] = running_update(given_mean[c], stats.mean, momentum);
        out.running_var[c] = running_update(given_var[c], welford_unbiased_var(stats), momentum);
      }
    } else {
      mean = given_mean[c];
      invstd = inverse_std(given_var[c], eps);
    }
    out.mean[c] = mean;
    out.invstd[c] = invstd;
    const ChannelAffine<acc_t> affine = channel_affine(
        mean, invstd, value_or(weight, c, acc_t(1)), value_or(bias, c, acc_t(0)));
    out.scale[c] = affine.scale;
    out.shift[c] = affine.shift;
  }
}

template <Activation kAct, typename scalar_t, typename acc_t>
__global__ void normalize_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                 PlaneTiles p, const acc_t* __restrict__ scale,
                                 const acc_t* __restrict__ shift, acc_t negative_slope) {
  for_all_tiles(p, [&](int64_t offset, int64_t c) {
    const acc_t z = static_cast<acc_t>(x[offset]) * scale[c] + shift[c];
    y[offset] = static_cast<scalar_t>(activation_forward<kAct>(z, negative_slope));
  });
}

bn::ForwardResult batch_norm_act_nd_cuda(const at::Tensor& input,
                                     const std::optional<at::Tensor>& running_mean,
                                     const std::optional<at::Tensor>& running_var,
                                     const std::optional<at::Tensor>& weight,
                                     const std::optional<at::Tensor>& bias, bool training,
                                     double momentum, double eps, std::string_view activation,
                                     double negative_slope) {
  const Activation act = bn::parse_activation(activation);
  const bool tracked =
      bn::check_batch_norm_forward(input, running_mean, running_var, weight, bias, training);
  const c10::cuda::CUDAGuard guard(input.device());
  const PlaneTiles p(input.sizes());
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  const auto acc_options = input.options().dtype(acc_type);
  const at::Tensor x = input.contiguous();
  at::Tensor output = at::empty(input.sizes(), input.options());
  const bn::ChannelStatistics statistics =
      bn::empty_channel_statistics(input, running_mean, running_var, tracked);
  if (p.channels == 0) return statistics.with_output(output);
  if (training && x.numel() == 0) {  // no batch: zero mean, the running statistics unchanged
    statistics.save_mean.zero_();
    statistics.save_invstd.fill_(acc_type == at::kDouble ? inverse_std(0.0, eps)
                                                         : inverse_std(0.0f, eps));
    return statistics.with_output(output);
  }
  const at::Tensor w = channel_tensor(weight, acc_type), b = channel_tensor(bias, acc_type);
  const at::Tensor rm = channel_tensor(running_mean, acc_type);
  const at::Tensor rv = channel_tensor(running_var, acc_type);
  at::Tensor affine = at::empty({2, p.channels}, acc_options);
  at::Tensor updated = at::empty({2, tracked && training ? p.channels : 0}, acc_options);
  const int splits = training ? p.splits() : 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                  "batch_norm_act_nd", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor partial;
    if (training) {
      partial = at::empty({static_cast<int64_t>(p.channels * splits * sizeof(WelfordStats<acc_t>))},
                          input.options().dtype(at::kByte));
      channel_stats_kernel<scalar_t, acc_t>
          <<<dim3(static_cast<unsigned int>(p.channels), splits), kThreads, 0,
             current_stream()>>>(x.const_data_ptr<scalar_t>(), p,
                                 static_cast<WelfordStats<acc_t>*>(partial.data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const bool update = tracked && training;
    const ChannelOutputs<acc_t> outputs{
        statistics.save_mean.mutable_data_ptr<acc_t>(),
        statistics.save_invstd.mutable_data_ptr<acc_t>(),
        affine.mutable_data_ptr<acc_t>(), affine.mutable_data_ptr<acc_t>() + p.channels,
        update ? updated.mutable_data_ptr<acc_t>() : nullptr,
        update ? updated.mutable_data_ptr<acc_t>() + p.channels : nullptr};
    channel_finalize_kernel<acc_t>
        <<<blocks_for(p.channels), kThreads, 0, current_stream()>>>(
            training ? static_cast<const WelfordStats<acc_t>*>(partial.const_data_ptr()) : nullptr,
            splits, p.channels, training, data_or_null<acc_t>(w), data_or_null<acc_t>(b),
            data_or_null<acc_t>(rm), data_or_null<acc_t>(rv), eps, static_cast<acc_t>(momentum),
            outputs);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (x.numel() == 0) return;
    const acc_t* scale = affine.const_data_ptr<acc_t>();
    const unsigned int blocks = blocks_for(p.batch * p.channels * p.tiles_per_plane * kThreads);
    bn::dispatch_activation(act, [&](auto tag) {
      normalize_kernel<decltype(tag)::value, scalar_t, acc_t>
          <<<blocks, kThreads, 0, current_stream()>>>(
              x.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(), p, scale,
              scale + p.channels, static_cast<acc_t>(negative_slope));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  if (tracked && training) {
    statistics.new_mean.copy_(updated[0]);
    statistics.new_var.copy_(updated[1]);
  }
  return statistics.with_output(output);
}

}  // namespace
}  // namespace cuda
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CUDA, m) {
  m.impl("batch_norm_act_nd", &ndops::cuda::batch_norm_act_nd_cuda);
}
