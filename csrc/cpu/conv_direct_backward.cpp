// The backward of the direct convolution (declared in csrc/cpu/conv_direct.h; see
// conv_direct.cpp): the activation's derivative applied to the output gradient, the weight
// gradient from the same source rows as the forward, and the input gradient of a stride-1
// zero-padded conv as the direct conv of the output gradient with the flipped kernel (other
// input gradients take the gathered path).
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include "cpu/conv_direct.h"
#include "cpu/conv_direct_plan.h"

namespace ndops {
namespace {

// The weight gradient, and the bias gradient where with_bias (from the output gradient's rows
// while the weight gradient has them in cache): fixed parts of the tasks (independent of the
// thread count) accumulate in float, their sums are added in order in double.
std::array<at::Tensor, 2> weight_and_bias_grads(const DirectPlan& p, const at::Tensor& x,
                                                const at::Tensor& gz, const at::Tensor& weight,
                                                bool with_bias) {
  const Tasks tasks = split_tasks(p);
  const int64_t parts = std::min<int64_t>(tasks.count(), 64);
  const int64_t group = p.cout() * p.row_taps * p.last_kernel;
  const int64_t size = weight.numel() + (with_bias ? p.conv.out_channels : 0);
  std::vector<float> partial(parts * size, 0.0f);
  const ZeroRow zeros(p);
  const at::Tensor staged = p.raw ? x : stage_input(p, x);
  const float* g = gz.const_data_ptr<float>();
  const int64_t channel_stride = gz.stride(1), row_stride = gz.stride(p.conv.ndim);
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    RowScratch scratch(p);
    std::vector<int64_t> coords(p.outer);
    for (int64_t part = begin; part < end; ++part) {
      float* acc = partial.data() + part * size;
      for (int64_t task = part * tasks.count() / parts;
           task < (part + 1) * tasks.count() / parts; ++task) {
        const int64_t plane = task / tasks.chunks, h0 = task % tasks.chunks * tasks.chunk;
        const int64_t h1 = std::min(h0 + tasks.chunk, p.rows_out);
        const int64_t offset = plane_offset(p, gz, plane, coords) + h0 * row_stride;
        for (int64_t gr = 0; gr < p.conv.groups; ++gr) {
          const RowConv cv = row_sources(p, staged, plane / p.outer_positions,
                                         plane % p.outer_positions, gr, h0, h1, scratch,
                                         zeros.row());
          row_conv_weight_grad_avx2(cv, g + offset + gr * p.cout() * channel_stride,
                                    channel_stride, row_stride, p.cout(), acc + gr * group);
        }
        if (with_bias) {
          row_sums_avx2(g + offset, p.conv.out_channels, channel_stride, h1 - h0, row_stride,
                        p.width, acc + weight.numel());
        }
      }
    }
  });
  std::vector<double> total(size, 0.0);
  for (int64_t part = 0; part < parts; ++part) {
    for (int64_t i = 0; i < size; ++i) total[i] += partial[part * size + i];
  }
  at::Tensor grad = at::empty(weight.sizes(), weight.options());
  std::copy(total.begin(), total.begin() + weight.numel(), grad.mutable_data_ptr<float>());
  if (!with_bias) return {grad, at::Tensor()};
  at::Tensor bias = at::empty({p.conv.out_channels}, weight.options());
  std::copy(total.begin() + weight.numel(), total.end(), bias.mutable_data_ptr<float>());
  return {grad, bias};
}

// The input gradient: of a stride-1 zero-padded conv, the direct conv of the output gradient
// with the flipped kernel; else from the gathered path.
at::Tensor input_grad(const char* op, const DirectPlan& p, const at::Tensor& gz,
                      const at::Tensor& x, const at::Tensor& weight, const ConvArgs& args) {
  const std::optional<AdjointConv> adjoint = adjoint_conv(p.conv, weight);
  if (!adjoint.has_value()) {
    return gathered_conv_backward(op, gz, at::Tensor(), x, weight, args, ConvEpilogue{},
                                  {true, false, false})
        .input;
  }
  return forward_planes(op, gz, adjoint->weight, std::nullopt, adjoint->args(args),
                        ConvEpilogue{}, false)
      .out;
}

}  // namespace

ConvGrads direct_conv_backward(const char* op, const at::Tensor& grad_output,
                               const at::Tensor& activation_input, const at::Tensor& input,
                               const at::Tensor& weight, const ConvArgs& args,
                               const ConvEpilogue& epilogue, std::array<bool, 3> output_mask) {
  RECORD_FUNCTION("ndops::conv_nd::direct_backward", {});
  if (weight.dim() == 3) {
    const UnitDim unit(args);
    const bool act = epilogue.activation != Activation::kNone;
    ConvGrads grads = direct_conv_backward(
        op, grad_output.unsqueeze(2), act ? activation_input.unsqueeze(2) : activation_input,
        input.unsqueeze(2), weight.unsqueeze(2), unit.args, epilogue, output_mask);
    if (grads.input.defined()) grads.input = grads.input.squeeze(2);
    if (grads.weight.defined()) grads.weight = grads.weight.squeeze(2);
    return grads;
  }
  const DirectPlan p = direct_plan(op, input, weight, args, true);
  std::vector<int64_t> out_sizes{p.conv.batch, p.conv.out_channels};
  out_sizes.insert(out_sizes.end(), p.conv.out_sizes.begin(), p.conv.out_sizes.end());
  TORCH_CHECK(grad_output.sizes() == c10::IntArrayRef(out_sizes), "ndops::", op,
              ": grad_output has shape ", grad_output.sizes(), " but the conv's output has ",
              c10::IntArrayRef(out_sizes));
  TORCH_CHECK(epilogue.activation == Activation::kNone ||
                  activation_input.sizes() == c10::IntArrayRef(out_sizes),
              "ndops::", op, ": the activation's input has shape ", activation_input.sizes(),
              " but the conv's output has ", c10::IntArrayRef(out_sizes));
  const at::Tensor gz = activation_grad(grad_output.contiguous(), activation_input, epilogue);
  ConvGrads grads;
  if (output_mask[1]) {
    const auto [weight_grad, bias_grad] =
        weight_and_bias_grads(p, input, gz, weight, output_mask[2]);
    grads.weight = weight_grad;
    grads.bias = bias_grad;
  } else if (output_mask[2]) {
    std::vector<int64_t> dims{0};
    for (int d = 0; d < p.conv.ndim; ++d) dims.push_back(d + 2);
    grads.bias = gz.sum(dims);
  }
  if (output_mask[0]) grads.input = input_grad(op, p, gz, input, weight, args);
  return grads;
}

}  // namespace ndops
