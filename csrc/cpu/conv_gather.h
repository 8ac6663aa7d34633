// The memory passes around the native conv of conv_nd (csrc/cpu/conv.cpp): the plan of a
// call, the gather of the leading dims' taps into channels and its adjoint, the scatter-add
// of the gathered gradient written as a gather (csrc/cpu/conv_gather.cpp), and the moves of
// outputs and output gradients between the (B, C_out, *lead, *inner) layout and the native
// conv's (B * lead, C_out, *inner), with the bias + activation epilogue fused in
// (csrc/cpu/conv_epilogue.cpp). The passes take CPU and CUDA tensors (the CUDA ones run
// csrc/cuda/conv_passes.h's, in a CUDA build); the plan and its tables: csrc/common/conv_plan.h.
//
// Positions along the gathered (leading) dims are linear indices over their row-major
// extent; a chunk is a range [first, first + count) of leading output positions, batch entry
// b * count + (t - first) of the native conv.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/conv_plan.h"

namespace ndops {

// Checks the arguments (the second line of defence after ndops.functional.conv_nd) and plans
// a call gathering `lead` leading dims (max(N - 3, 0) <= lead < N). padding: N entries (both
// sides of each dim) or 2N (before, after) pairs, dim by dim; padding_mode: "zeros",
// "reflect", "replicate" or "circular" (torch's nn.Conv padding modes).
ConvPlan make_conv_plan(const char* op, const at::Tensor& input, const at::Tensor& weight,
                        c10::IntArrayRef stride, c10::IntArrayRef padding,
                        c10::IntArrayRef dilation, int64_t groups,
                        std::string_view padding_mode, int lead);

// Strides of t with its inner dims collapsed (CollapsedStrides), or nullopt when they do not
// collapse (a non-uniform stride).
std::optional<CollapsedStrides> collapse_inner(const at::Tensor& t, int lead);

// gathered (B * count, C * taps, *gathered_inner_sizes): channel gathered_channel(g, k) + c
// of entry b * count + i holds input[b, g * C/groups + c] at the leading coordinates that
// leading output position first + i reads through tap k (and, with pad_inner, at the inner
// voxel inner_source names), padded by the mode. `input`'s inner dims must collapse;
// `gathered` is channels-last.
void gather_taps(const at::Tensor& input, const ConvPlan& plan, int64_t first, int64_t count,
                 at::Tensor& gathered);

// The adjoint of gather_taps: grad_input[b, c, s] (+)= the sum of grad_gathered over every
// (position in the chunk, tap) that gathered input element s. Parallel over input positions,
// each summed in a fixed order (deterministic, race-free). `accumulate`: add to grad_input;
// else `initial` (when defined, one value per channel: conv_transpose's bias) starts the sum.
void scatter_taps(const at::Tensor& grad_gathered, const ConvPlan& plan, int64_t first,
                  int64_t count, at::Tensor& grad_input, bool accumulate,
                  const at::Tensor& initial);


// out[b, :, first + i] = act(native[b * count + i]) (out: (B, C_out, *lead_out,
// *inner_out)); when `pre_activation` is defined (same layout as out), it receives z.
void unpack_positions(const at::Tensor& native, const ConvPlan& plan, int64_t first,
                      int64_t count, const ConvEpilogue& epilogue, at::Tensor& out,
                      const at::Tensor& pre_activation);

// The reverse move, through the activation's derivative: packed[b * count + i] =
// grad_output[b, :, first + i] * act'(activation_input[b, :, first + i]), activation_input
// being z, or the output where that determines act' (relu, leaky_relu with a slope >= 0);
// unused for kNone. When `bias_grad` is defined (opmath dtype, (C_out,)), the per-channel
// sums of the packed values are added to it, in a fixed order.
void pack_positions(const at::Tensor& grad_output, const at::Tensor& activation_input,
                    const ConvPlan& plan, int64_t first, int64_t count,
                    const ConvEpilogue& epilogue, at::Tensor& packed, at::Tensor& bias_grad);

// grad_output * act'(activation_input) as pack_positions computes it, laid out like grad_output
// where that is dense (else contiguous); grad_output itself for kNone. CPU tensors.
at::Tensor activation_grad(const at::Tensor& grad_output, const at::Tensor& activation_input,
                           const ConvEpilogue& epilogue);

// collapse_inner's strides, asserting that the inner dims collapse (`what` names t).
CollapsedStrides collapsed_or_fail(const at::Tensor& t, int lead, const char* what);

}  // namespace ndops
