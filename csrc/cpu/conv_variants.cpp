// CPU and CUDA kernels of conv_bias_act_nd and conv_transpose_nd and their backward ops (schemas:
// csrc/ndops.cpp), both built on the gathered conv engine of csrc/cpu/conv.h.
//
// conv_bias_act_nd: act(conv + bias), the activation applied while the native conv's output
// is moved into place (and its derivative while the output gradient is moved back), so the
// fusion costs no pass over the output of its own.
// conv_transpose_nd: the adjoint of a conv, computed as that conv's input gradient (the
// scatter pass starting from the bias); its input gradient is the conv itself and its weight
// gradient the conv's weight gradient with the roles of input and output gradient swapped.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/activation.h"
#include "common/conv_gather.h"
#include "cpu/conv.h"

namespace ndops {
namespace {

Activation parse_activation(std::string_view name) {
  if (name == "none") return Activation::kNone;
  if (name == "relu") return Activation::kRelu;
  if (name == "leaky_relu") return Activation::kLeakyRelu;
  if (name == "silu") return Activation::kSilu;
  if (name == "gelu") return Activation::kGelu;
  TORCH_CHECK(name == "gelu_tanh", "ndops::conv_bias_act_nd: activation must be 'none', ",
              "'relu', 'leaky_relu', 'silu', 'gelu' or 'gelu_tanh', got '", name, "'");
  return Activation::kGeluTanh;
}

// Whether act' needs the pre-activation z: the output determines it for relu and for
// leaky_relu with a slope >= 0 (the sign of z is the sign of the output).
bool needs_pre_activation(Activation act, double negative_slope) {
  return act == Activation::kSilu || act == Activation::kGelu ||
         act == Activation::kGeluTanh || (act == Activation::kLeakyRelu && negative_slope < 0);
}

std::tuple<at::Tensor, at::Tensor> conv_bias_act_nd_kernel(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
    int64_t groups, c10::string_view activation, double negative_slope,
    c10::string_view padding_mode) {
  const ConvEpilogue epilogue{parse_activation(activation), negative_slope};
  const bool keep = needs_pre_activation(epilogue.activation, negative_slope);
  ConvOutputs outputs =
      conv_forward("conv_bias_act_nd", input, weight, bias,
                   {stride, padding, dilation, groups, padding_mode}, epilogue, keep);
  if (!keep) outputs.pre_activation = at::empty({0}, input.options());
  return {outputs.out, outputs.pre_activation};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_bias_act_nd_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& pre_activation,
    const at::Tensor& input, const at::Tensor& weight, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
    c10::string_view activation, double negative_slope, std::array<bool, 3> output_mask,
    c10::string_view padding_mode) {
  const ConvEpilogue epilogue{parse_activation(activation), negative_slope};
  const at::Tensor& act_input =
      needs_pre_activation(epilogue.activation, negative_slope) ? pre_activation : output;
  const ConvGrads grads = conv_backward("_conv_bias_act_nd_backward", grad_output, act_input,
                                        input, weight,
                                        {stride, padding, dilation, groups, padding_mode},
                                        epilogue, output_mask);
  return {grads.input, grads.weight, grads.bias};
}

// The conv whose adjoint conv_transpose_nd is: its input has the transposed conv's output
// size, its output the size of the transposed conv's input grown by floor(output_padding /
// stride) (output_padding may reach the dilation when it exceeds the stride); grown_input
// zero-pads `input` to that size when it differs.
struct AdjointConv {
  std::vector<int64_t> out_sizes, growth;
  bool grown = false;
};

AdjointConv adjoint_conv(const at::Tensor& input, const at::Tensor& weight,
                         c10::IntArrayRef stride, c10::IntArrayRef padding,
                         c10::IntArrayRef output_padding, int64_t groups,
                         c10::IntArrayRef dilation) {
  const int64_t n = weight.dim() - 2;
  TORCH_CHECK(n >= 1 && input.dim() == n + 2 && input.size(1) == weight.size(0) &&
                  groups > 0 && weight.size(0) % groups == 0,
              "ndops::conv_transpose_nd: input (B, C_in, *spatial) and weight (C_in, ",
              "C_out/groups, *kernel) do not match, got ", input.sizes(), " and ",
              weight.sizes(), " with groups=", groups);
  TORCH_CHECK(static_cast<int64_t>(stride.size()) == n &&
                  static_cast<int64_t>(padding.size()) == n &&
                  static_cast<int64_t>(output_padding.size()) == n &&
                  static_cast<int64_t>(dilation.size()) == n,
              "ndops::conv_transpose_nd: stride, padding, output_padding and dilation must ",
              "have ", n, " entries");
  AdjointConv adjoint;
  for (int64_t d = 0; d < n; ++d) {
    TORCH_CHECK(stride[d] > 0 && dilation[d] > 0 && padding[d] >= 0 && output_padding[d] >= 0 &&
                    output_padding[d] < std::max(stride[d], dilation[d]),
                "ndops::conv_transpose_nd: needs stride, dilation > 0, padding >= 0 and 0 <= ",
                "output_padding < max(stride, dilation), got ", stride, ", ", dilation, ", ",
                padding, ", ", output_padding);
    const int64_t out = (input.size(d + 2) - 1) * stride[d] - 2 * padding[d] +
                        dilation[d] * (weight.size(d + 2) - 1) + output_padding[d] + 1;
    TORCH_CHECK(out > 0, "ndops::conv_transpose_nd: the output would be empty along spatial ",
                "dim ", d);
    adjoint.out_sizes.push_back(out);
    adjoint.growth.push_back(output_padding[d] / stride[d]);
    adjoint.grown = adjoint.grown || adjoint.growth.back() > 0;
  }
  return adjoint;
}

at::Tensor grown_input(const at::Tensor& input, const AdjointConv& adjoint) {
  if (!adjoint.grown) return input;
  std::vector<int64_t> pad;  // torch's pad layout: last dim first
  for (auto d = adjoint.growth.rbegin(); d != adjoint.growth.rend(); ++d) {
    pad.push_back(0);
    pad.push_back(*d);
  }
  return at::constant_pad_nd(input, pad, 0);
}

bool gathers(const at::Tensor& weight) { return weight.dim() - 2 > 3; }

at::Tensor conv_transpose_nd_kernel(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                    c10::IntArrayRef padding, c10::IntArrayRef output_padding,
                                    int64_t groups, c10::IntArrayRef dilation) {
  const AdjointConv adjoint =
      adjoint_conv(input, weight, stride, padding, output_padding, groups, dilation);
  if (!gathers(weight)) {
    return at::convolution(input, weight, bias, stride, padding, dilation, true,
                           output_padding, groups);
  }
  const at::Tensor grad = grown_input(input, adjoint);
  std::vector<int64_t> out_sizes{input.size(0), weight.size(1) * groups};
  out_sizes.insert(out_sizes.end(), adjoint.out_sizes.begin(), adjoint.out_sizes.end());
  // Only the conv input's sizes, dtype and layout are read: a meta tensor (channels-last
  // like the input, so that the output is).
  const at::Tensor shape = empty_spatial(out_sizes, input.options().device(at::kMeta),
                                         is_channels_last(input));
  return conv_backward("conv_transpose_nd", grad, at::Tensor(), shape, weight,
                       {stride, padding, dilation, groups, "zeros"}, ConvEpilogue{},
                       {true, false, false}, bias.has_value() ? *bias : at::Tensor())
      .input;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_transpose_nd_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef output_padding,
    int64_t groups, c10::IntArrayRef dilation, std::array<bool, 3> output_mask) {
  const AdjointConv adjoint =
      adjoint_conv(input, weight, stride, padding, output_padding, groups, dilation);
  if (!gathers(weight)) {
    auto [gi, gw, gb] = at::convolution_backward(
        grad_output, input, weight, std::vector<int64_t>{weight.size(1) * groups}, stride,
        padding, dilation, true, output_padding, groups, output_mask);
    return {gi, gw, gb};
  }
  const ConvArgs args{stride, padding, dilation, groups, "zeros"};
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) {
    grad_input = conv_forward("_conv_transpose_nd_backward", grad_output, weight, std::nullopt,
                              args, ConvEpilogue{}, false)
                     .out;
    for (int64_t d = 0; adjoint.grown && d < weight.dim() - 2; ++d) {
      grad_input = grad_input.narrow(d + 2, 0, input.size(d + 2));
    }
  }
  if (output_mask[1]) {
    grad_weight = conv_backward("_conv_transpose_nd_backward", grown_input(input, adjoint),
                                at::Tensor(), grad_output, weight, args, ConvEpilogue{},
                                {false, true, false})
                      .weight;
  }
  if (output_mask[2]) {
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < grad_output.dim(); ++d) dims.push_back(d);
    grad_bias = grad_output.sum(dims);
  }
  return {grad_input, grad_weight, grad_bias};
}

void register_conv_variants(torch::Library& m) {
  m.impl("conv_bias_act_nd", &conv_bias_act_nd_kernel);
  m.impl("_conv_bias_act_nd_backward", &conv_bias_act_nd_backward_kernel);
  m.impl("conv_transpose_nd", &conv_transpose_nd_kernel);
  m.impl("_conv_transpose_nd_backward", &conv_transpose_nd_backward_kernel);
}

}  // namespace
}  // namespace ndops

// CPU and CUDA tensors take the same kernels (see csrc/cpu/conv.cpp).
TORCH_LIBRARY_IMPL(ndops, CPU, m) { ndops::register_conv_variants(m); }
#if defined(NDOPS_WITH_CUDA)
TORCH_LIBRARY_IMPL(ndops, CUDA, m) { ndops::register_conv_variants(m); }
#endif
