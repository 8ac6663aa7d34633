// CPU and CUDA kernels of conv_nd and _conv_nd_backward (schemas: csrc/ndops.cpp; memory passes:
// csrc/cpu/conv_gather.{h,cpp}; index math: csrc/common/conv_gather.h).
//
// An N-d conv is ONE native conv (oneDNN) over the inner N - L dims per chunk: the taps of the
// leading L dims are gathered into channels (C_in * taps of them) and the leading output
// positions folded into the batch, in one pass that writes the channels-last buffer oneDNN
// runs fastest on and applies the zero padding of the leading dims (no padded copy); the
// native conv pads the inner dims itself when it can (symmetric zeros), else the gather pads
// them too (other padding modes, (before, after) pairs). L is max(N - 3, 0) (N <= 3 with
// symmetric zero padding: torch's conv alone).
// Few input channels per group (float32, AVX2) take the direct kernel of csrc/cpu/conv_direct.cpp
// instead (conv_forward / conv_backward below pick it); without AVX-512 the native conv's
// weight gradient runs on csrc/cpu/conv_weight_grad.cpp's kernel rather than oneDNN's where
// the chunks have enough output voxels (weight_grad_kernel_pays). The native conv's weight
// is the user's with the leading taps folded into its input channels (native_weight: a view
// next to small gathered buffers, reordered to (channel, tap), else one packed copy).
// The backward recomputes the gathered buffer (cheaper than keeping it), runs the native
// conv's backward on it, and scatters the gathered gradient back with the adjoint pass; on the
// CPU the input gradient of a stride-1 zero-padded conv (float32, float64) is instead the
// forward of the adjoint conv (AdjointConv in cpu/conv.h), which oneDNN runs faster.
//
// Chunks of leading output positions bound the buffers by the workspace budget (the larger
// of twice the input's size and 256 MiB). Two environment variables exist for tests:
// NDOPS_CONV_WORKSPACE_BYTES overrides the budget, NDOPS_CONV_GATHER_DIMS sets L
// (clamped to the valid range max(N - 3, 0) <= L < N).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/native/ConvUtils.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <tuple>
#include <vector>

#include "common/conv_gather.h"
#include "cpu/conv.h"
#include "cpu/conv_direct.h"
#include "cpu/conv_gather.h"
#include "cpu/conv_weight_grad.h"
#include "cpu/conv_weight_layout.h"

namespace ndops {
namespace {

constexpr int64_t kDefaultWorkspaceBytes = int64_t{256} << 20;

// An integer environment variable, or `fallback` when unset or empty.
int64_t env_int(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long long parsed = std::strtoll(value, &end, 10);
  TORCH_CHECK(*end == '\0', "ndops: environment variable ", name, " must be an integer, got '",
              value, "'");
  return parsed;
}

int gathered_dims(const at::Tensor& weight) {
  const int64_t n = weight.dim() - 2, least = std::max<int64_t>(n - 3, 0);
  const int64_t wanted = env_int("NDOPS_CONV_GATHER_DIMS", least);
  return static_cast<int>(std::clamp<int64_t>(wanted, least, std::max<int64_t>(n - 1, 0)));
}

// The native conv's view of the inner dims: its spatial dims (at least 2, a unit dim in front
// of a single inner dim, so that the buffers have a channels-last memory format).
struct InnerConv {
  std::vector<int64_t> in_sizes, out_sizes, kernel, stride, padding, dilation, zeros;
};

InnerConv inner_conv(const ConvPlan& plan) {
  InnerConv inner;
  if (plan.ndim - plan.lead == 1) {
    inner = {{1}, {1}, {1}, {1}, {0}, {1}, {0}};
  }
  for (int d = plan.lead; d < plan.ndim; ++d) {
    inner.in_sizes.push_back(plan.gathered_inner_sizes[d - plan.lead]);
    inner.out_sizes.push_back(plan.out_sizes[d]);
    inner.kernel.push_back(plan.kernel[d]);
    inner.stride.push_back(plan.stride[d]);
    inner.padding.push_back(plan.pad_inner ? 0 : plan.pad_left[d]);
    inner.dilation.push_back(plan.dilation[d]);
    inner.zeros.push_back(0);
  }
  return inner;
}

at::MemoryFormat channels_last_format(const InnerConv& inner) {
  return inner.in_sizes.size() == 2 ? at::MemoryFormat::ChannelsLast
                                    : at::MemoryFormat::ChannelsLast3d;
}

std::vector<int64_t> concat(std::vector<int64_t> head, const std::vector<int64_t>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

at::Tensor with_collapsible_inner(const at::Tensor& t, int lead) {
  return collapse_inner(t, lead).has_value() ? t : t.contiguous();
}

// Leading output positions per chunk: the gathered buffer of one chunk stays in the budget.
int64_t chunk_positions(const ConvPlan& plan, const at::Tensor& input) {
  const int64_t element = input.element_size();
  const int64_t budget = env_int(
      "NDOPS_CONV_WORKSPACE_BYTES",
      std::max<int64_t>(2 * input.numel() * element, kDefaultWorkspaceBytes));
  const int64_t per_position =
      plan.batch * plan.gathered_channels() * plan.gathered_voxels * element;
  if (per_position == 0) return plan.lead_positions;
  return std::clamp<int64_t>(budget / per_position, 1, plan.lead_positions);
}

// Whether conv_weight_grad.cpp's kernel beats oneDNN's weight gradient on chunks of `chunk`
// leading positions: it keeps up to 16 partial sums of the whole weight gradient, which cost
// more than they save where a chunk has fewer output voxels than half the weight's elements
// per output channel (measured, 2 threads, ext fwd+bwd, kernel / oneDNN: B1 C256 3^4 k3 p1
// 376 / 91 ms, C128 6^4 128 / 66 ms; C64 6^4 even; C64-C16 8^4 0.9-0.67x; B2 C16 16^4
// 109 / 201 ms). A forced NDOPS_CONV_DIRECT (tests) keeps the kernel wherever it can run.
bool weight_grad_kernel_pays(const ConvPlan& plan, const InnerConv& inner, int64_t chunk,
                             const at::Tensor& weight) {
  if (!direct_conv_forced_mode().empty()) return true;
  const int64_t out_voxels = plan.batch * chunk * c10::multiply_integers(inner.out_sizes);
  return 2 * out_voxels >= weight.numel() / plan.out_channels;
}

at::Tensor gathered_buffer(const ConvPlan& plan, const InnerConv& inner, int64_t count,
                           const at::TensorOptions& options) {
  return at::empty(concat({plan.batch * count, plan.gathered_channels()}, inner.in_sizes),
                   options.memory_format(channels_last_format(inner)));
}

// The native conv's weight and the order of the gathered channels that it reads. Where the
// gathered buffer is under a quarter of the weight (deep layers of small volumes), the
// buffer's channels are reordered to (channel, tap) (a contiguous copy of the small buffer):
// the weight then is a view of the user's, which torch's conv reads without a copy of its
// own (oneDNN reorders it once, as it does for any conv). Else the weight is packed in the
// gathered order (tap, channel), once, in the layout that torch's conv converts it to (oneDNN:
// channels-last like the buffer; its slow kernels, for float64 and one-entry batches of few
// elements: contiguous). Measured (2 threads, ext / fallback time; more in
// ndops/functional/conv.py _conv_order): packing every weight made a 4-D ResNet-18 forward
// 2x slower than the fallback, reordering the small buffers makes it 1.1-1.2x faster.
struct NativeWeight {
  at::Tensor weight;
  bool channel_major = false;  // gathered channels in (group, channel, tap) order
};

NativeWeight native_weight(const at::Tensor& weight, const at::Tensor& gathered,
                           const ConvPlan& plan, const InnerConv& inner, int64_t groups,
                           bool tap_major_only) {
  const at::Tensor shaped =
      weight.reshape(concat({plan.out_channels, plan.taps * plan.group_channels}, inner.kernel));
  const auto backend = at::native::select_conv_backend(
      gathered, shaped, std::nullopt, c10::fromIntArrayRefSlow(inner.stride),
      c10::fromIntArrayRefSlow(inner.padding), c10::fromIntArrayRefSlow(inner.dilation), false,
      c10::fromIntArrayRefSlow(inner.zeros), groups, std::nullopt);
  const auto format = at::native::_determine_backend_memory_format(gathered, shaped, backend);
  const bool same_order = plan.taps == 1 || plan.group_channels == 1;
  if (!same_order && !tap_major_only && 4 * gathered.numel() < weight.numel()) {
    return {shaped, true};
  }
  if (format == at::MemoryFormat::Contiguous && same_order) return {shaped, false};
  return {gathered_weight(weight, plan.taps, inner.kernel, format), false};
}

// The gathered buffer `t` (B * count, groups * taps * C_in/groups, *inner) with its channels
// reordered from (group, tap, channel) to (group, channel, tap), or back (`to_channel_major`
// false, t then in the second order): a contiguous copy.
at::Tensor reorder_gathered(const at::Tensor& t, const ConvPlan& plan, bool to_channel_major) {
  const int64_t taps = plan.taps, channels = plan.group_channels;
  return t.unflatten(1, to_channel_major ? c10::IntArrayRef{plan.groups, taps, channels}
                                         : c10::IntArrayRef{plan.groups, channels, taps})
      .transpose(2, 3)
      .flatten(1, 3)
      .contiguous();
}

// `t` (B, C_out, *out) viewed as the native conv's (B * lead positions, C_out, *inner out)
// when its memory already is that channels-last buffer, else nullopt.
std::optional<at::Tensor> as_native(const at::Tensor& t, const ConvPlan& plan,
                                    const InnerConv& inner) {
  const auto native = at::empty(
      concat({plan.batch * plan.lead_positions, plan.out_channels}, inner.out_sizes),
      t.options().device(at::kMeta).memory_format(channels_last_format(inner)));
  const auto strides = collapse_inner(t, 0);
  const int64_t voxels = plan.lead_positions * plan.inner_out_voxels;
  const bool dense = (strides.has_value() && (t.stride(1) == 1 || plan.out_channels == 1) &&
                      (voxels == 1 || strides->voxel == plan.out_channels) &&
                      (plan.batch == 1 || t.stride(0) == voxels * plan.out_channels));
  if (!dense) return std::nullopt;
  return t.as_strided(native.sizes(), native.strides());
}

// Every dim of a (B, C, *spatial) tensor but the channels: what the bias gradient sums.
std::vector<int64_t> reduced_dims(const ConvPlan& plan) {
  std::vector<int64_t> dims{0};
  for (int d = 0; d < plan.ndim; ++d) dims.push_back(d + 2);
  return dims;
}

// The native conv's output when there are no products (no input channels): the bias, or
// zeros, broadcast.
at::Tensor bias_only_native(const ConvPlan& plan, const InnerConv& inner,
                            const std::optional<at::Tensor>& bias,
                            const at::TensorOptions& options) {
  const auto sizes =
      concat({plan.batch * plan.lead_positions, plan.out_channels}, inner.out_sizes);
  std::vector<int64_t> shape(sizes.size(), 1);
  shape[1] = plan.out_channels;
  const at::Tensor values = bias.has_value() && bias->defined()
                                ? bias->reshape(shape)
                                : at::zeros({1}, options).expand(shape);
  return values.expand(sizes);
}

}  // namespace

at::Tensor empty_spatial(c10::IntArrayRef sizes, const at::TensorOptions& options,
                         bool channels_last) {
  if (!channels_last) return at::empty(sizes, options);
  std::vector<int64_t> memory_order{sizes[0]}, back{0};
  for (size_t d = 2; d < sizes.size(); ++d) {
    memory_order.push_back(sizes[d]);
    back.push_back(static_cast<int64_t>(d) - 1);
  }
  memory_order.push_back(sizes[1]);
  back.insert(back.begin() + 1, static_cast<int64_t>(sizes.size()) - 1);
  return at::empty(memory_order, options).permute(back);
}

bool is_channels_last(const at::Tensor& input) {
  return input.size(1) > 1 && input.stride(1) == 1 && !input.is_contiguous();
}

std::optional<AdjointConv> adjoint_conv(const ConvPlan& plan, const at::Tensor& weight) {
  if (plan.mode != PadMode::kConstant) return std::nullopt;
  AdjointConv adjoint;
  for (int d = 0; d < plan.ndim; ++d) {
    const int64_t before = adjoint_padding(plan.kernel[d], plan.dilation[d], plan.pad_left[d]);
    const int64_t after = adjoint_padding(plan.kernel[d], plan.dilation[d], plan.pad_right[d]);
    if (plan.stride[d] != 1 || before < 0 || after < 0) return std::nullopt;
    adjoint.stride.push_back(1);
    adjoint.padding.insert(adjoint.padding.end(), {before, after});
  }
  // adjoint[g * C_in/groups + ci][co][k] = weight[g * C_out/groups + co][ci][K - 1 - k].
  std::vector<int64_t> split{plan.groups, plan.out_channels / plan.groups, plan.group_channels};
  std::vector<int64_t> shape{plan.in_channels, plan.out_channels / plan.groups}, spatial;
  for (int d = 0; d < plan.ndim; ++d) {
    split.push_back(plan.kernel[d]);
    shape.push_back(plan.kernel[d]);
    spatial.push_back(3 + d);
  }
  adjoint.weight =
      weight.reshape(split).transpose(1, 2).flip(spatial).reshape(shape).contiguous();
  return adjoint;
}

namespace {

ConvOutputs gathered_conv_forward(const char* op, const at::Tensor& input,
                                  const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const ConvArgs& args,
                                  const ConvEpilogue& epilogue, bool keep_pre_activation) {
  const int lead = gathered_dims(weight);
  const ConvPlan plan = make_conv_plan(op, input, weight, args.stride, args.padding,
                                       args.dilation, args.groups, args.padding_mode, lead);
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == plan.out_channels, "ndops::", op,
                ": bias must have shape (", plan.out_channels, "), got ", bias->sizes());
  }
  const bool plain = epilogue.activation == Activation::kNone && !keep_pre_activation;
  const bool native_only = lead == 0 && !plan.pad_inner;  // torch's conv takes it all
  at::Tensor y;
  if (native_only) {
    y = at::convolution(input, weight, bias, args.stride, plan.pad_left, args.dilation, false,
                        std::vector<int64_t>(plan.ndim, 0), args.groups);
    if (plain) return {y, at::Tensor()};
  }
  const bool channels_last = is_channels_last(input);
  const auto out_sizes = concat({plan.batch, plan.out_channels}, plan.out_sizes);
  ConvOutputs result{empty_spatial(out_sizes, input.options(), channels_last),
                     keep_pre_activation
                         ? empty_spatial(out_sizes, input.options(), channels_last)
                         : at::Tensor()};
  if (result.out.numel() == 0) return result;
  const InnerConv inner = inner_conv(plan);
  if (native_only || input.numel() == 0 || weight.numel() == 0) {
    const at::Tensor native =
        native_only ? y : bias_only_native(plan, inner, bias, input.options());
    unpack_positions(native, plan, 0, plan.lead_positions, epilogue, result.out,
                     result.pre_activation);
    return result;
  }
  const at::Tensor x = with_collapsible_inner(input, lead);
  NativeWeight native;
  const int64_t chunk = chunk_positions(plan, x);
  for (int64_t first = 0; first < plan.lead_positions; first += chunk) {
    const int64_t count = std::min(chunk, plan.lead_positions - first);
    at::Tensor gathered = gathered_buffer(plan, inner, count, x.options());
    if (first == 0) native = native_weight(weight, gathered, plan, inner, args.groups, false);
    gather_taps(x, plan, first, count, gathered);
    y = at::convolution(native.channel_major ? reorder_gathered(gathered, plan, true) : gathered,
                        native.weight, bias, inner.stride, inner.padding, inner.dilation, false,
                        inner.zeros, args.groups);
    if (plain && count == plan.lead_positions && channels_last) {
      // The native output already is the channels-last output: return it without a copy.
      const auto native = as_native(result.out, plan, inner);
      if (native.has_value() && y.strides() == native->strides()) {
        return {y.as_strided(result.out.sizes(), result.out.strides()), at::Tensor()};
      }
    }
    unpack_positions(y, plan, first, count, epilogue, result.out, result.pre_activation);
  }
  return result;
}

// Whether this CPU has bfloat16 / float16 arithmetic (AVX512-BF16 / AVX512-FP16; CPUs with
// AMX have both) for oneDNN's reduced-precision convs. Without it oneDNN runs them as
// reference loops, tens of times slower than its float32 kernels: on the project machine
// (Zen 3, AVX2) the inner conv3d of B2 C16->16 12^4 took 660 ms forward and 257 ms for the
// input gradient in bfloat16, against 12 and 14 ms in float32.
bool cpu_has_reduced_precision(at::ScalarType dtype) {
#if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 14) || \
                            (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12))
  static const bool bf16 = __builtin_cpu_supports("avx512bf16");
  static const bool fp16 = __builtin_cpu_supports("avx512fp16");
  return dtype == at::kBFloat16 ? bf16 : fp16;
#else
  (void)dtype;
  return false;
#endif
}

// Whether a CPU conv of these tensors (undefined ones ignored) runs in float32: all of one
// reduced-precision dtype that the CPU lacks. float32 is what such a conv accumulates in
// anyway; its results are rounded to the dtype once. Mixed dtypes keep their own path (and
// its error).
bool computes_in_float(std::initializer_list<const at::Tensor*> tensors) {
  const at::Tensor& first = **tensors.begin();
  const auto dtype = first.scalar_type();
  if (!first.is_cpu() || (dtype != at::kBFloat16 && dtype != at::kHalf) ||
      cpu_has_reduced_precision(dtype)) {
    return false;
  }
  return std::all_of(tensors.begin(), tensors.end(), [&](const at::Tensor* t) {
    return !t->defined() || t->scalar_type() == dtype;
  });
}

at::Tensor as_float(const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; }

at::Tensor as_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.defined() ? t.to(dtype) : t;
}

}  // namespace

ConvOutputs conv_forward(const char* op, const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, const ConvArgs& args,
                         const ConvEpilogue& epilogue, bool keep_pre_activation) {
  const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  if (computes_in_float({&input, &weight, &b})) {
    ConvOutputs outputs = conv_forward(
        op, as_float(input), as_float(weight),
        b.defined() ? std::optional<at::Tensor>(as_float(b)) : std::nullopt, args, epilogue,
        keep_pre_activation);
    return {as_dtype(outputs.out, input.scalar_type()),
            as_dtype(outputs.pre_activation, input.scalar_type())};
  }
  if (direct_conv_applies(input, weight, /*backward=*/false)) {
    return direct_conv_forward(op, input, weight, bias, args, epilogue, keep_pre_activation);
  }
  return gathered_conv_forward(op, input, weight, bias, args, epilogue, keep_pre_activation);
}

ConvGrads conv_backward(const char* op, const at::Tensor& grad_output,
                        const at::Tensor& activation_input, const at::Tensor& input,
                        const at::Tensor& weight, const ConvArgs& args,
                        const ConvEpilogue& epilogue, std::array<bool, 3> output_mask,
                        const at::Tensor& initial) {
  if (computes_in_float({&grad_output, &activation_input, &input, &weight, &initial})) {
    const auto dtype = grad_output.scalar_type();
    ConvGrads grads = conv_backward(op, as_float(grad_output), as_float(activation_input),
                                    as_float(input), as_float(weight), args, epilogue,
                                    output_mask, as_float(initial));
    return {as_dtype(grads.input, dtype), as_dtype(grads.weight, dtype),
            as_dtype(grads.bias, dtype)};
  }
  if (!initial.defined() && direct_conv_applies(input, weight, /*backward=*/true)) {
    return direct_conv_backward(op, grad_output, activation_input, input, weight, args,
                                epilogue, output_mask);
  }
  return gathered_conv_backward(op, grad_output, activation_input, input, weight, args,
                                epilogue, output_mask, initial);
}

ConvGrads gathered_conv_backward(const char* op, const at::Tensor& grad_output,
                                 const at::Tensor& activation_input, const at::Tensor& input,
                                 const at::Tensor& weight, const ConvArgs& args,
                                 const ConvEpilogue& epilogue, std::array<bool, 3> output_mask,
                                 const at::Tensor& initial) {
  const int lead = gathered_dims(weight);
  const ConvPlan plan = make_conv_plan(op, input, weight, args.stride, args.padding,
                                       args.dilation, args.groups, args.padding_mode, lead);
  const auto out_sizes = concat({plan.batch, plan.out_channels}, plan.out_sizes);
  TORCH_CHECK(grad_output.sizes() == c10::IntArrayRef(out_sizes), "ndops::", op,
              ": grad_output has shape ", grad_output.sizes(), " but the conv's output has ",
              c10::IntArrayRef(out_sizes));
  const bool act = epilogue.activation != Activation::kNone;
  TORCH_CHECK(!act || activation_input.sizes() == c10::IntArrayRef(out_sizes), "ndops::", op,
              ": the activation's input has shape ", activation_input.sizes(),
              " but the conv's output has ", c10::IntArrayRef(out_sizes));
  const auto [need_input, need_weight, need_bias] = output_mask;
  const InnerConv inner = inner_conv(plan);
  const bool products = input.numel() > 0 && weight.numel() > 0;
  const bool native_only = lead == 0 && !plan.pad_inner;
  // On the CPU, in float32 and float64, the input gradient of a stride-1 zero-padded conv is
  // the adjoint conv's forward (gather + one native forward) rather than the native conv's
  // input gradient + the scatter. float32, 2 threads, medians of 9 interleaved calls, ms:
  // B2 C16->16 16^4 k3 p1 53-79 against 88-100; B1 C32->32 12^4 22 against 26; B1 C16->16 8^5
  // 27 against 40-42; B2 C64->32 10^4 42-44 against 49-50; B2 C32->64 12^4 86-97 against
  // 90-95. Not bfloat16 / float16: on CPUs without their arithmetic they run in float32
  // (computes_in_float above), and where oneDNN has it this was not measured.
  const auto dtype = grad_output.scalar_type();
  const std::optional<AdjointConv> adjoint =
      need_input && products && !native_only && grad_output.is_cpu() &&
              grad_output.numel() > 0 && (dtype == at::kFloat || dtype == at::kDouble)
          ? adjoint_conv(plan, weight)
          : std::nullopt;
  if (adjoint.has_value() && act) {
    // act' applied once, for the adjoint conv and the weight and bias gradients.
    return gathered_conv_backward(op, activation_grad(grad_output, activation_input, epilogue),
                                  at::Tensor(), input, weight, args, ConvEpilogue{},
                                  output_mask, initial);
  }
  const bool scatter_input = need_input && !adjoint.has_value();
  const int64_t chunk = native_only ? 1 : chunk_positions(plan, input);
  const bool chunked = !native_only && chunk < plan.lead_positions;
  // Chunks of a reduced-precision gradient accumulate in its opmath type.
  const auto opmath = at::toOpMathType(input.scalar_type());
  const auto accumulate_type = chunked ? opmath : input.scalar_type();
  const at::Tensor grad = with_collapsible_inner(grad_output, lead);
  const at::Tensor act_input = act ? with_collapsible_inner(activation_input, lead) : grad;
  ConvGrads grads;
  at::Tensor bias_sum = need_bias ? at::zeros({plan.out_channels}, grad.options().dtype(opmath))
                                  : at::Tensor();
  at::Tensor grad_inner_weight;
  // `input` may be a meta tensor (conv_transpose_nd's forward): gradients live with grad.
  const auto grad_options = grad.options().dtype(accumulate_type);
  if (scatter_input && !native_only) {
    grads.input = empty_spatial(input.sizes(), grad_options, is_channels_last(input));
  }
  const bool convolve = products && (scatter_input || need_weight);
  const at::Tensor x = convolve && need_weight && !native_only
                           ? with_collapsible_inner(input, lead)
                           : input;
  NativeWeight native;  // set with the first chunk
  // The weight gradient of the native conv on conv_weight_grad.cpp's kernel, where it applies
  // and pays off.
  const bool own_weight_grad =
      convolve && need_weight && !native_only && weight.is_cpu() &&
      channels_last_weight_grad_applies(weight.scalar_type(),
                                        plan.gathered_channels() / args.groups) &&
      weight_grad_kernel_pays(plan, inner, chunk, weight);
  const int64_t positions = native_only ? 1 : plan.lead_positions;
  for (int64_t first = 0; grad.numel() > 0 && first < positions; first += chunk) {
    const int64_t count = std::min(chunk, positions - first);
    std::optional<at::Tensor> packed;
    if (!act && !chunked) {
      packed = native_only ? std::optional<at::Tensor>(grad) : as_native(grad, plan, inner);
    }
    if (packed.has_value()) {
      if (need_bias) bias_sum = grad.sum(reduced_dims(plan), false, opmath);
    } else {
      packed = native_only ? empty_spatial(out_sizes, grad.options(), is_channels_last(input))
                           : at::empty(concat({plan.batch * count, plan.out_channels},
                                              inner.out_sizes),
                                       grad.options().memory_format(channels_last_format(inner)));
      pack_positions(grad, act_input, plan, first, count, epilogue, *packed, bias_sum);
    }
    if (!convolve) continue;
    if (native_only) {
      auto [grad_in, grad_w, unused] = at::convolution_backward(
          *packed, input, weight, std::nullopt, args.stride, plan.pad_left, args.dilation,
          false, std::vector<int64_t>(plan.ndim, 0), args.groups,
          {scatter_input, need_weight, false});
      grads.input = grad_in;
      grad_inner_weight = grad_w;
      continue;
    }
    at::Tensor gathered = gathered_buffer(plan, inner, count, weight.options());
    if (first == 0) {
      native = native_weight(weight, gathered, plan, inner, args.groups, own_weight_grad);
    }
    if (need_weight) gather_taps(x, plan, first, count, gathered);
    if (scatter_input || (need_weight && !own_weight_grad)) {
      auto [grad_gathered, grad_w, unused] = at::convolution_backward(
          *packed, native.channel_major ? reorder_gathered(gathered, plan, true) : gathered,
          native.weight, std::nullopt, inner.stride, inner.padding, inner.dilation,
          false, inner.zeros, args.groups,
          {scatter_input, need_weight && !own_weight_grad, false});
      if (scatter_input) {
        scatter_taps(
            native.channel_major ? reorder_gathered(grad_gathered, plan, false) : grad_gathered,
            plan, first, count, grads.input, first > 0, initial);
      }
      if (need_weight && !own_weight_grad) {
        grad_inner_weight =
            first == 0 ? grad_w.to(accumulate_type) : grad_inner_weight.add_(grad_w);
      }
    }
    if (own_weight_grad) {
      if (first == 0) grad_inner_weight = at::zeros(native.weight.sizes(), weight.options());
      channels_last_weight_grad(gathered, *packed, inner.kernel, inner.stride, inner.padding,
                                inner.dilation, args.groups, grad_inner_weight);
    }
  }
  if (adjoint.has_value()) {
    grads.input = conv_forward(op, grad_output, adjoint->weight, std::nullopt,
                               adjoint->args(args), ConvEpilogue{}, false)
                      .out;
    if (is_channels_last(grads.input) != is_channels_last(input)) {  // the input's layout
      grads.input = empty_spatial(input.sizes(), grads.input.options(), is_channels_last(input))
                        .copy_(grads.input);
    }
  }
  const bool computed = (convolve || adjoint.has_value()) && grad.numel() > 0;
  if (need_input) {
    if (!computed) {
      grads.input = at::zeros(input.sizes(), grad_options);
    }
    if (initial.defined() && (!computed || native_only || adjoint.has_value())) {
      std::vector<int64_t> shape(input.dim(), 1);
      shape[1] = input.size(1);
      grads.input.add_(initial.reshape(shape));
    }
    grads.input = grads.input.to(input.scalar_type());
  }
  if (need_weight && (!computed || native_only)) {
    grads.weight = computed ? grad_inner_weight
                            : at::zeros_like(weight, at::MemoryFormat::Contiguous);
  } else if (need_weight) {
    grads.weight = (native.channel_major
                        ? grad_inner_weight.reshape(weight.sizes()).contiguous()
                        : ungathered_weight(grad_inner_weight, weight.sizes(), plan.taps))
                       .to(weight.scalar_type());
  }
  if (need_bias) grads.bias = bias_sum.to(grad_output.scalar_type());
  return grads;
}

namespace {

at::Tensor conv_nd_kernel(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                          c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
                          c10::string_view padding_mode) {
  return conv_forward("conv_nd", input, weight, bias,
                      {stride, padding, dilation, groups, padding_mode}, ConvEpilogue{}, false)
      .out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_nd_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
    int64_t groups, std::array<bool, 3> output_mask, c10::string_view padding_mode) {
  const ConvGrads grads = conv_backward(
      "_conv_nd_backward", grad_output, at::Tensor(), input, weight,
      {stride, padding, dilation, groups, padding_mode}, ConvEpilogue{}, output_mask);
  return {grads.input, grads.weight, grads.bias};
}

void register_conv(torch::Library& m) {
  m.impl("conv_nd", &conv_nd_kernel);
  m.impl("_conv_nd_backward", &conv_nd_backward_kernel);
}

}  // namespace
}  // namespace ndops

// One kernel per op for CPU and CUDA tensors: only the memory passes differ by device
// (csrc/cpu/conv_gather.h); the direct kernel and conv_weight_grad.cpp's run on the CPU alone.
TORCH_LIBRARY_IMPL(ndops, CPU, m) { ndops::register_conv(m); }
#if defined(NDOPS_WITH_CUDA)
TORCH_LIBRARY_IMPL(ndops, CUDA, m) { ndops::register_conv(m); }
#endif
