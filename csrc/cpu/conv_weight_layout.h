// The native conv's weight in conv_nd's gathered conv (csrc/cpu/conv.cpp): the user's weight
// (C_out, C_in/groups, *lead kernel, *inner kernel) with its `taps` leading-kernel taps
// folded into the input channels in the gathered order (tap, channel), and back for the
// weight gradient (csrc/cpu/conv_weight_layout.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ndops {

// (C_out, taps * C_in/groups, *inner_kernel) in the memory format `format` (contiguous or
// channels-last).
at::Tensor gathered_weight(const at::Tensor& weight, int64_t taps,
                           c10::IntArrayRef inner_kernel, at::MemoryFormat format);

// The inverse of gathered_weight, for the weight gradient: `gathered_grad` (any layout) as a
// contiguous tensor of `weight_sizes`.
at::Tensor ungathered_weight(const at::Tensor& gathered_grad, c10::IntArrayRef weight_sizes,
                             int64_t taps);

}  // namespace ndops
