// CPU kernels of batch_norm_act_nd and _batch_norm_act_nd_backward (schemas: csrc/ndops.cpp;
// per-element math: csrc/common/welford.h, activation.h, batch_norm.h; the loops over one run
// of a channel: csrc/cpu/batch_norm_pieces.h). The input (B, C, *spatial) of any N is seen as
// B x C planes of S = prod(spatial) contiguous elements.
//
// The op is bound by memory traffic, so:
// - Training sweeps each tensor twice (statistics, then the normalization that needs them),
//   per group of channels small enough to stay in the last-level cache: the second sweep reads
//   from cache and DRAM sees every input element once. Planes are cut into pieces that the
//   threads share, so the work splits for any B and C (one channel included); pieces, groups
//   and their barrier-free scheduling: csrc/cpu/channel_sweeps.h.
// - Per-piece partials (Welford statistics, gradient sums) are merged in a fixed order: results
//   do not depend on the thread count.
// - Outputs are written exactly once, into buffers asked to be backed by huge pages
//   (cpu/huge_pages.h).
//
// NB: under GCC's default -ftrapping-math the vectorizer keeps the selects of relu-like
// activations and their derivatives (`z > 0 ? ...`) as branches (measured: relu's backward 7x
// slower than no activation). Nothing here relies on floating-point exceptions, so this file
// (with the loops it includes) is compiled without that assumption; the pragma precedes every
// include so that all functions of the file share the options and inline into each other.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/activation.h"
#include "common/batch_norm.h"
#include "common/batch_norm_shape.h"
#include "common/welford.h"
#include "cpu/batch_norm_pieces.h"
#include "cpu/channel_sweeps.h"
#include "cpu/huge_pages.h"

namespace ndops {
namespace {

using namespace batch_norm_pieces;
using namespace bn;

template <typename acc_t>
struct ChannelParameters {
  std::vector<acc_t> weight, bias;  // 1 and 0 where not given
  acc_t negative_slope;
};

// Training forward: batch statistics, then y = act(x * scale + shift), per channel group.
// Fills mean and invstd and returns each channel's statistics (for the running statistics).
template <Activation kAct, typename scalar_t, typename acc_t>
std::vector<WelfordStats<acc_t>> forward_training(const scalar_t* x, scalar_t* y,
                                                  const Planes& p,
                                                  const ChannelParameters<acc_t>& params,
                                                  double eps, acc_t* mean, acc_t* invstd) {
  const int64_t per_channel = p.pieces_per_channel();
  std::vector<WelfordStats<acc_t>> stats(p.channels), partial(p.channels * per_channel);
  std::vector<ChannelAffine<acc_t>> affine(p.channels);
  two_sweeps(
      p, channels_per_group(p, sizeof(scalar_t)),
      [&](int64_t item, int64_t, int64_t offset, int64_t n) {
        partial[item] = piece_stats<acc_t>(x + offset, n);
      },
      [&](int64_t c_begin, int64_t c_end) {
        for (int64_t c = c_begin; c < c_end; ++c) {
          for (int64_t i = 0; i < per_channel; ++i) {
            stats[c] = welford_merge(stats[c], partial[c * per_channel + i]);
          }
          mean[c] = stats[c].mean;
          invstd[c] = inverse_std(welford_biased_var(stats[c]), eps);
          affine[c] = channel_affine(mean[c], invstd[c], params.weight[c], params.bias[c]);
        }
      },
      [&](int64_t, int64_t c, int64_t offset, int64_t n) {
        normalize_piece<kAct>(x + offset, y + offset, n, affine[c], params.negative_slope);
      });
  return stats;
}

// Eval forward: one sweep with the given (running) statistics.
template <Activation kAct, typename scalar_t, typename acc_t>
void forward_eval(const scalar_t* x, scalar_t* y, const Planes& p,
                  const ChannelParameters<acc_t>& params, const acc_t* mean,
                  const acc_t* invstd) {
  std::vector<ChannelAffine<acc_t>> affine(p.channels);
  for (int64_t c = 0; c < p.channels; ++c) {
    affine[c] = channel_affine(mean[c], invstd[c], params.weight[c], params.bias[c]);
  }
  for_each_piece(p, [&](int64_t, int64_t c, int64_t offset, int64_t n) {
    normalize_piece<kAct>(x + offset, y + offset, n, affine[c], params.negative_slope);
  });
}

// Backward: fills dx and returns each channel's GradSums. Eval: one sweep (dx needs no sums).
// Training: per channel group, a sweep for the sums, then one for dx.
template <Activation kAct, typename scalar_t, typename acc_t>
std::vector<GradSums<acc_t>> backward(bool training, const scalar_t* x, const scalar_t* dy,
                                      scalar_t* dx, const Planes& p,
                                      const ChannelParameters<acc_t>& params, const acc_t* mean,
                                      const acc_t* invstd) {
  const int64_t per_channel = p.pieces_per_channel();
  std::vector<GradSums<acc_t>> sums(p.channels), partial(p.channels * per_channel);
  std::vector<ChannelAffine<acc_t>> affine(p.channels);
  std::vector<GradInputCoefficients<acc_t>> coef(p.channels);
  for (int64_t c = 0; c < p.channels; ++c) {
    affine[c] = channel_affine(mean[c], invstd[c], params.weight[c], params.bias[c]);
  }
  const acc_t slope = params.negative_slope;
  const auto add_sums = [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      for (int64_t i = 0; i < per_channel; ++i) {
        sums[c].dz += partial[c * per_channel + i].dz;
        sums[c].dz_centered += partial[c * per_channel + i].dz_centered;
      }
      coef[c] = grad_input_coefficients(training, invstd[c], params.weight[c], sums[c].dz,
                                        sums[c].dz_centered, p.values_per_channel());
    }
  };
  if (!training) {
    for_each_piece(p, [&](int64_t item, int64_t c, int64_t offset, int64_t n) {
      partial[item] = grad_sums_piece<kAct, true>(x + offset, dy + offset, dx + offset, n,
                                                  mean[c], affine[c], slope,
                                                  params.weight[c] * invstd[c]);
    });
    add_sums(0, p.channels);
    return sums;
  }
  two_sweeps(
      p, channels_per_group(p, 2 * sizeof(scalar_t)),
      [&](int64_t item, int64_t c, int64_t offset, int64_t n) {
        partial[item] = grad_sums_piece<kAct, false>(x + offset, dy + offset, dx, n, mean[c],
                                                     affine[c], slope, acc_t(0));
      },
      add_sums,
      [&](int64_t, int64_t c, int64_t offset, int64_t n) {
        grad_input_piece<kAct>(x + offset, dy + offset, dx + offset, n, mean[c], affine[c],
                               slope, coef[c]);
      });
  return sums;
}

// The values of a (C,) tensor as acc_t, or `fill` everywhere when it is not given.
template <typename acc_t>
std::vector<acc_t> channel_values(const std::optional<at::Tensor>& t, acc_t fill,
                                  int64_t channels) {
  std::vector<acc_t> values(channels, fill);
  if (given(t)) {
    const at::Tensor converted = t->to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    std::copy_n(converted.const_data_ptr<acc_t>(), channels, values.begin());
  }
  return values;
}

ForwardResult batch_norm_act_nd_cpu(const at::Tensor& input,
                                    const std::optional<at::Tensor>& running_mean,
                                    const std::optional<at::Tensor>& running_var,
                                    const std::optional<at::Tensor>& weight,
                                    const std::optional<at::Tensor>& bias, bool training,
                                    double momentum, double eps, std::string_view activation,
                                    double negative_slope) {
  constexpr const char* kOp = "batch_norm_act_nd";
  const Activation act = parse_activation(activation);
  const bool tracked = check_batch_norm_forward(input, running_mean, running_var, weight, bias,
                                                training);
  const Planes p(input.sizes());
  const at::Tensor x = input.contiguous();
  at::Tensor output = empty_with_huge_pages(input.sizes(), input.options(), input.nbytes());
  const auto acc_options = input.options().dtype(at::toOpMathType(input.scalar_type()));
  // The running statistics stay unchanged outside training (and for an empty batch).
  const ChannelStatistics statistics =
      empty_channel_statistics(input, running_mean, running_var, tracked);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), kOp, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t channels = p.channels;
    const ChannelParameters<acc_t> params{channel_values<acc_t>(weight, 1, channels),
                                          channel_values<acc_t>(bias, 0, channels),
                                          static_cast<acc_t>(negative_slope)};
    acc_t* mean = statistics.save_mean.mutable_data_ptr<acc_t>();
    acc_t* invstd = statistics.save_invstd.mutable_data_ptr<acc_t>();
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    if (!training) {
      const auto rm = channel_values<acc_t>(running_mean, 0, channels);
      const auto rv = channel_values<acc_t>(running_var, 1, channels);
      for (int64_t c = 0; c < channels; ++c) {
        mean[c] = rm[c];
        invstd[c] = inverse_std(rv[c], eps);
      }
      if (x.numel() == 0) return;
      dispatch_activation(act, [&](auto tag) {
        forward_eval<decltype(tag)::value>(in, out, p, params, mean, invstd);
      });
      return;
    }
    if (x.numel() == 0) {
      std::fill_n(mean, channels, acc_t(0));
      std::fill_n(invstd, channels, inverse_std(acc_t(0), eps));
      return;
    }
    std::vector<WelfordStats<acc_t>> stats;
    dispatch_activation(act, [&](auto tag) {
      stats = forward_training<decltype(tag)::value>(in, out, p, params, eps, mean, invstd);
    });
    if (!tracked) return;
    at::Tensor updated_mean = at::empty({channels}, acc_options);
    at::Tensor updated_var = at::empty({channels}, acc_options);
    const auto rm = channel_values<acc_t>(running_mean, 0, channels);
    const auto rv = channel_values<acc_t>(running_var, 1, channels);
    const acc_t m = static_cast<acc_t>(momentum);
    for (int64_t c = 0; c < channels; ++c) {
      updated_mean.mutable_data_ptr<acc_t>()[c] = running_update(rm[c], stats[c].mean, m);
      updated_var.mutable_data_ptr<acc_t>()[c] =
          running_update(rv[c], welford_unbiased_var(stats[c]), m);
    }
    statistics.new_mean.copy_(updated_mean);
    statistics.new_var.copy_(updated_var);
  });
  return statistics.with_output(output);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_nd_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& save_mean, const at::Tensor& save_invstd, bool training,
    double /*eps: read by the double backward only*/, std::string_view activation,
    double negative_slope) {
  constexpr const char* kOp = "_batch_norm_act_nd_backward";
  const Activation act = parse_activation(activation);
  check_batch_norm_backward(grad_output, input, weight, bias, save_mean, save_invstd);
  const Planes p(input.sizes());
  const at::Tensor x = input.contiguous(), dy = grad_output.contiguous();
  at::Tensor grad_input =
      empty_with_huge_pages(input.sizes(), input.options(), input.nbytes() + grad_output.nbytes());
  const ChannelGrads grads = zero_channel_grads(input);
  if (x.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), kOp, [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const ChannelParameters<acc_t> params{channel_values<acc_t>(weight, 1, p.channels),
                                            channel_values<acc_t>(bias, 0, p.channels),
                                            static_cast<acc_t>(negative_slope)};
      const auto mean = channel_values<acc_t>(save_mean, 0, p.channels);
      const auto invstd = channel_values<acc_t>(save_invstd, 0, p.channels);
      std::vector<GradSums<acc_t>> sums;
      dispatch_activation(act, [&](auto tag) {
        sums = backward<decltype(tag)::value>(
            training, x.const_data_ptr<scalar_t>(), dy.const_data_ptr<scalar_t>(),
            grad_input.mutable_data_ptr<scalar_t>(), p, params, mean.data(), invstd.data());
      });
      for (int64_t c = 0; c < p.channels; ++c) {
        grads.weight.mutable_data_ptr<acc_t>()[c] = invstd[c] * sums[c].dz_centered;
        grads.bias.mutable_data_ptr<acc_t>()[c] = sums[c].dz;
      }
    });
  }
  return grads.with_grad_input(grad_input, weight, bias);
}

}  // namespace
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CPU, m) {
  m.impl("batch_norm_act_nd", &ndops::batch_norm_act_nd_cpu);
  m.impl("_batch_norm_act_nd_backward", &ndops::batch_norm_act_nd_backward_cpu);
}
