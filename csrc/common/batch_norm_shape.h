// Host side of batch_norm_act_nd, shared by the CPU and CUDA launchers: the activation name,
// the compile-time activation dispatch, the argument checks (the Python wrapper checks the
// same rules first, with friendlier messages; these are the second line of defence) and the
// per-channel outputs.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "common/activation.h"

namespace ndops {
namespace bn {

inline Activation parse_activation(std::string_view name) {
  if (name == "none") return Activation::kNone;
  if (name == "relu") return Activation::kRelu;
  if (name == "leaky_relu") return Activation::kLeakyRelu;
  if (name == "silu") return Activation::kSilu;
  if (name == "gelu") return Activation::kGelu;
  TORCH_CHECK(name == "gelu_tanh", "ndops::batch_norm_act_nd: activation must be 'none', ",
              "'relu', 'leaky_relu', 'silu', 'gelu' or 'gelu_tanh', got '", name, "'");
  return Activation::kGeluTanh;
}

// Runs body(tag) with tag an std::integral_constant holding `act`, so kernels take the
// activation as a template parameter.
template <typename Body>
void dispatch_activation(Activation act, const Body& body) {
  using A = Activation;
  switch (act) {
    case A::kNone: return body(std::integral_constant<A, A::kNone>{});
    case A::kRelu: return body(std::integral_constant<A, A::kRelu>{});
    case A::kLeakyRelu: return body(std::integral_constant<A, A::kLeakyRelu>{});
    case A::kSilu: return body(std::integral_constant<A, A::kSilu>{});
    case A::kGelu: return body(std::integral_constant<A, A::kGelu>{});
    case A::kGeluTanh: return body(std::integral_constant<A, A::kGeluTanh>{});
  }
}

inline bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

inline void check_per_channel(const std::optional<at::Tensor>& t, const char* name,
                              int64_t channels, const char* op) {
  TORCH_CHECK(!given(t) || (t->dim() == 1 && t->size(0) == channels), "ndops::", op, ": ", name,
              " must have shape (C,) = (", channels, ",), got ", t->sizes());
}

// The forward's checks; returns whether running statistics are tracked (given).
inline bool check_batch_norm_forward(const at::Tensor& input,
                                     const std::optional<at::Tensor>& running_mean,
                                     const std::optional<at::Tensor>& running_var,
                                     const std::optional<at::Tensor>& weight,
                                     const std::optional<at::Tensor>& bias, bool training) {
  constexpr const char* kOp = "batch_norm_act_nd";
  TORCH_CHECK(input.dim() >= 2, "ndops::batch_norm_act_nd: input must have shape (B, C, ",
              "*spatial), got ", input.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "ndops::batch_norm_act_nd: input must ",
              "be a floating-point tensor, got ", input.scalar_type());
  const int64_t channels = input.size(1);
  const bool tracked = given(running_mean);
  TORCH_CHECK(tracked == given(running_var), "ndops::batch_norm_act_nd: running_mean and ",
              "running_var must both be given or both be None");
  TORCH_CHECK(training || tracked, "ndops::batch_norm_act_nd: running_mean and running_var ",
              "must be given when training=False");
  check_per_channel(running_mean, "running_mean", channels, kOp);
  check_per_channel(running_var, "running_var", channels, kOp);
  check_per_channel(weight, "weight", channels, kOp);
  check_per_channel(bias, "bias", channels, kOp);
  int64_t values_per_channel = input.size(0);
  for (int64_t d = 2; d < input.dim(); ++d) values_per_channel *= input.size(d);
  TORCH_CHECK(!training || values_per_channel != 1, "ndops::batch_norm_act_nd: Expected ",
              "more than 1 value per channel when training, got input size ", input.sizes());
  return tracked;
}

inline void check_batch_norm_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                      const std::optional<at::Tensor>& weight,
                                      const std::optional<at::Tensor>& bias,
                                      const at::Tensor& save_mean,
                                      const at::Tensor& save_invstd) {
  constexpr const char* kOp = "_batch_norm_act_nd_backward";
  TORCH_CHECK(input.dim() >= 2 && grad_output.sizes() == input.sizes(), "ndops::", kOp,
              ": grad_output ", grad_output.sizes(), " and input ", input.sizes(),
              " must have one shape (B, C, *spatial)");
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(), "ndops::", kOp,
              ": grad_output and input must have one dtype");
  const int64_t channels = input.size(1);
  const auto acc_type = at::toOpMathType(input.scalar_type());
  check_per_channel(weight, "weight", channels, kOp);
  check_per_channel(bias, "bias", channels, kOp);
  check_per_channel(save_mean, "save_mean", channels, kOp);
  check_per_channel(save_invstd, "save_invstd", channels, kOp);
  TORCH_CHECK(save_mean.scalar_type() == acc_type && save_invstd.scalar_type() == acc_type,
              "ndops::", kOp, ": save_mean and save_invstd must have dtype ", acc_type);
}

using ForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The forward's per-channel outputs: save_mean and save_invstd, (C,) in the opmath dtype and
// uninitialized; the running statistics after the call, copies of the given ones (training
// writes its update into them) or (0,) when there are none.
struct ChannelStatistics {
  at::Tensor save_mean, save_invstd, new_mean, new_var;

  ForwardResult with_output(const at::Tensor& output) const {
    return {output, save_mean, save_invstd, new_mean, new_var};
  }
};

inline ChannelStatistics empty_channel_statistics(const at::Tensor& input,
                                                  const std::optional<at::Tensor>& running_mean,
                                                  const std::optional<at::Tensor>& running_var,
                                                  bool tracked) {
  const auto acc_options = input.options().dtype(at::toOpMathType(input.scalar_type()));
  const int64_t channels = input.size(1);
  return {at::empty({channels}, acc_options), at::empty({channels}, acc_options),
          tracked ? running_mean->contiguous().clone() : at::empty({0}, acc_options),
          tracked ? running_var->contiguous().clone() : at::empty({0}, acc_options)};
}

// The backward's grad_weight and grad_bias: (C,) zeros in the opmath dtype to accumulate into,
// returned in the dtypes of weight and bias (the opmath dtype for one not given).
struct ChannelGrads {
  at::Tensor weight, bias;

  std::tuple<at::Tensor, at::Tensor, at::Tensor> with_grad_input(
      const at::Tensor& grad_input, const std::optional<at::Tensor>& given_weight,
      const std::optional<at::Tensor>& given_bias) const {
    return {grad_input,
            weight.to(given(given_weight) ? given_weight->scalar_type() : weight.scalar_type()),
            bias.to(given(given_bias) ? given_bias->scalar_type() : bias.scalar_type())};
  }
};

inline ChannelGrads zero_channel_grads(const at::Tensor& input) {
  const auto acc_options = input.options().dtype(at::toOpMathType(input.scalar_type()));
  return {at::zeros({input.size(1)}, acc_options), at::zeros({input.size(1)}, acc_options)};
}

}  // namespace bn
}  // namespace ndops
