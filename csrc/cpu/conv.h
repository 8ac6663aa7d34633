// The gathered N-d convolution engine of csrc/cpu/conv.cpp, shared by the ops conv_nd,
// conv_bias_act_nd and conv_transpose_nd (csrc/cpu/conv_variants.cpp).
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include "cpu/conv_gather.h"

namespace ndops {

struct ConvArgs {
  c10::IntArrayRef stride, padding, dilation;  // padding: N entries or N (before, after) pairs
  int64_t groups = 1;
  std::string_view padding_mode = "zeros";
};

struct ConvOutputs {
  at::Tensor out;             // act(conv(input, weight) + bias)
  at::Tensor pre_activation;  // conv(input, weight) + bias, when asked for (else undefined)
};

// `op` names the calling op in error messages.
ConvOutputs conv_forward(const char* op, const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, const ConvArgs& args,
                         const ConvEpilogue& epilogue, bool keep_pre_activation);

struct ConvGrads {
  at::Tensor input, weight, bias;  // undefined where output_mask is false
};

// Gradients of conv_forward's output. activation_input: see pack_positions (unused without
// an activation). `input` is read only for the weight gradient (else its sizes, dtype and
// layout suffice, a meta tensor will do). `initial` (optional, per input channel) starts the
// input gradient: conv_transpose_nd's bias.
ConvGrads conv_backward(const char* op, const at::Tensor& grad_output,
                        const at::Tensor& activation_input, const at::Tensor& input,
                        const at::Tensor& weight, const ConvArgs& args,
                        const ConvEpilogue& epilogue, std::array<bool, 3> output_mask,
                        const at::Tensor& initial = at::Tensor());

// conv_backward on the gathered path alone (the direct kernel's fallback for the input
// gradients it does not compute itself).
ConvGrads gathered_conv_backward(const char* op, const at::Tensor& grad_output,
                                 const at::Tensor& activation_input, const at::Tensor& input,
                                 const at::Tensor& weight, const ConvArgs& args,
                                 const ConvEpilogue& epilogue, std::array<bool, 3> output_mask,
                                 const at::Tensor& initial = at::Tensor());

// A stride-1 zero-padded conv's input gradient is itself a stride-1 conv: of the output
// gradient with the kernel transposed within each group and flipped, padded
// adjoint_padding(kernel, dilation, pad) on each side (csrc/common/conv_gather.h).
struct AdjointConv {
  at::Tensor weight;                     // (C_in, C_out / groups, *kernel), contiguous
  std::vector<int64_t> stride, padding;  // ones; (before, after) pairs
  ConvArgs args(const ConvArgs& conv) const {
    return {stride, padding, conv.dilation, conv.groups, "zeros"};
  }
};

// The adjoint conv of `plan`'s conv, or nullopt unless every dim has stride 1 and zero padding
// no wider than its dilated kernel.
std::optional<AdjointConv> adjoint_conv(const ConvPlan& plan, const at::Tensor& weight);

// A (B, C, *spatial) tensor, channels-first or with the channels innermost in memory.
at::Tensor empty_spatial(c10::IntArrayRef sizes, const at::TensorOptions& options,
                         bool channels_last);

// Whether outputs follow `input` with the channels innermost (torch's convs do the same for
// channels_last inputs).
bool is_channels_last(const at::Tensor& input);

}  // namespace ndops
