// The gathered conv's weight gradient on its own AVX2 kernel (csrc/cpu/conv_weight_grad.cpp),
// in place of oneDNN's where that one runs as im2col + GEMM.
#pragma once

#include <ATen/ATen.h>

namespace ndops {

// Whether channels_last_weight_grad runs a native conv with `group_channels` input channels
// per group: float32 on a CPU with AVX2 and FMA, group_channels a multiple of 8, and (the
// measured rule, conv_weight_grad.cpp) no AVX-512. NDOPS_CONV_DIRECT=0 turns it off; =1 or
// =weight_grad use it wherever it can run (tests).
bool channels_last_weight_grad_applies(at::ScalarType dtype, int64_t group_channels);

// grad_weight (C_out, channels/groups, *kernel), float32 contiguous, += the weight gradient of
// the native conv from `input` to `grad` (both dense channels-last, 2 or 3 spatial dims, the
// padding symmetric zeros).
void channels_last_weight_grad(const at::Tensor& input, const at::Tensor& grad,
                               c10::IntArrayRef kernel, c10::IntArrayRef stride,
                               c10::IntArrayRef padding, c10::IntArrayRef dilation,
                               int64_t groups, at::Tensor& grad_weight);

}  // namespace ndops
