// The direct convolution of conv_nd for few input channels (csrc/cpu/conv_direct.cpp): float32,
// any N, vectorized along the last spatial dim, no gathered buffer and no native conv. Used by
// conv_forward / conv_backward (csrc/cpu/conv.cpp) where direct_conv_applies says so.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <string_view>

#include "cpu/conv.h"

namespace ndops {

// Whether the direct kernel runs this call (its forward, or its backward): the CPU has AVX2
// and FMA, input and weight are float32 CPU tensors with elements, the input is not
// channels-last, and the rule in conv_direct.cpp (measured) prefers it, unless
// NDOPS_CONV_DIRECT forces otherwise (direct_conv_forced_mode).
bool direct_conv_applies(const at::Tensor& input, const at::Tensor& weight, bool backward);

// NDOPS_CONV_DIRECT (tests force paths with it): "" (unset) follow the rules, "0" never, "1"
// wherever the kernel can run, "weight_grad" never (only conv_weight_grad.cpp's kernel runs).
std::string_view direct_conv_forced_mode();

ConvOutputs direct_conv_forward(const char* op, const at::Tensor& input,
                                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                const ConvArgs& args, const ConvEpilogue& epilogue,
                                bool keep_pre_activation);

// As conv_backward (csrc/cpu/conv.h), without `initial`.
ConvGrads direct_conv_backward(const char* op, const at::Tensor& grad_output,
                               const at::Tensor& activation_input, const at::Tensor& input,
                               const at::Tensor& weight, const ConvArgs& args,
                               const ConvEpilogue& epilogue, std::array<bool, 3> output_mask);

}  // namespace ndops
