// The direct convolution for few input channels (declared in csrc/cpu/conv_direct.h; row
// kernels in csrc/cpu/conv_direct_avx2.cpp; index math in csrc/common/conv_gather.h).
//
// With few input channels the gathered conv (csrc/cpu/conv.cpp) hands oneDNN a GEMM whose
// reduction is a handful of channels, which it runs at a few percent of the FMA peak. Here the
// input is first staged row by row with the last dim's padding applied (whatever the mode) and
// split into stride phases, so that every tap of the last dim reads a contiguous run: one pass,
// (W + padding) / W times the input's size (few channels: small next to the output); the other
// dims' padding is never copied, ConvPlan's source tables resolve it. With stride 1 and zero
// padding the forward reads the input's rows themselves (raw rows, see direct_plan). A task
// then takes one plane (every dim but the last two fixed) of one group, and the AVX2 row kernels
// accumulate its output rows in registers. The backward computes the weight gradient from
// staged rows (raw ones where the input is the larger side), and the input gradient of a
// stride-1 zero-padded conv as the direct conv of the output gradient with the flipped kernel;
// other input gradients take the gathered path.
//
// The rule (measured on the project machine, AMD EPYC Zen 3, AVX2, 2 threads, fp32; numbers in
// direct_rule below): the direct kernel runs the forward when each group has at most 2 input
// channels, the backward when it has 1, and both when it has at most 4 input and fewer than 16
// output channels.
#include "cpu/conv_direct.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/activation.h"
#include "common/conv_gather.h"
#include "common/nd_index.h"
#include "cpu/conv_direct_plan.h"
#include "cpu/conv_planes.h"
#include "cpu/huge_pages.h"

namespace ndops {
namespace {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

// Whether the direct kernel can run these tensors at all.
bool runs_direct(const at::Tensor& input, const at::Tensor& weight) {
  return cpu_has_avx2_fma() && input.device().is_cpu() && input.scalar_type() == at::kFloat &&
         weight.scalar_type() == at::kFloat && input.numel() > 0 && weight.numel() > 0 &&
         !is_channels_last(input);
}

// The measured rule: the forward with at most 2 input channels per group; the backward with 1;
// both with at most 4 input and fewer than 16 output channels per group.
// Forward, gathered path time / direct time, 4-D 3^4 kernel, padding 1, B2 C_in -> 16 20^4
// (four runs, medians; the quiet run last): C_in 1: 1.2-2.9 (1.9); C_in 2: 1.1-2.4 (1.05);
// C_in 3: 0.8-1.5 (1.07); C_in 4: 0.8-1.0; C_in 6-16: 0.6-0.9. The same ratio, C_in 3-4, six
// quiet rounds (3 at 1 thread, 3 at 2), median of 9 interleaved calls (2026-11-23): C_out 16
// (B2 20^4): C_in 3 0.84-0.95, C_in 4 0.87-0.91; C_out 8 (B4 24^4): C_in 3 1.48-1.57, C_in 4
// 1.33-1.63; C_out 12 (B2 20^4): C_in 3 1.47-1.54, C_in 4 1.40-1.45; C_out 4 (B2 20^4) 2.4-2.7;
// 5-D C4->4 B1 8^5 1.64, C3->8 B2 12^5 0.95-1.03; 3-D C4->8 B2 48^3 1.8; 2-D C4->8 B8 96^2
// 1.4-1.6.
// Backward (input, weight and bias gradients), the same ratio, fastest of 11-15 interleaved
// calls: C_out 8 and 12 (B4 24^4, B2 16^4): C_in 2: 1.9-2.2, C_in 3: 2.3, C_in 4: 2.1; C_out 16
// (B2 20^4): C_in 2-4: 0.96-1.06; C_out 32 (B2 16^4): C_in 2: 1.24, C_in 4: 1.07; C_out 64
// (B2 12^4): C_in 1: 0.88 (fwd + bwd 1.15), C_in 2: 0.64, C_in 3: 0.58.
bool direct_rule(const at::Tensor& input, const at::Tensor& weight, bool backward) {
  const int64_t cin = weight.size(1);
  const int64_t groups = input.dim() > 1 ? std::max<int64_t>(input.size(1) / cin, 1) : 1;
  return cin <= (backward ? 1 : 2) || (cin <= 4 && weight.size(0) / groups < 16);
}

}  // namespace

DirectPlan direct_plan(const char* op, const at::Tensor& x, const at::Tensor& w,
                       const ConvArgs& args, bool for_weight_grad) {
  const int n = static_cast<int>(w.dim()) - 2;
  DirectPlan p;
  p.conv = make_conv_plan(op, x, w, args.stride, args.padding, args.dilation, args.groups,
                          args.padding_mode, n - 1);
  const ConvPlan& c = p.conv;
  p.outer = n - 2;
  for (int d = 0; d < p.outer; ++d) {
    p.outer_positions *= c.out_sizes[d];
    p.outer_taps *= c.kernel[d];
  }
  p.rows_in = c.in_sizes[n - 2];
  p.rows_out = c.out_sizes[n - 2];
  p.row_kernel = c.kernel[n - 2];
  p.width = c.out_sizes[n - 1];
  p.last_kernel = c.kernel[n - 1];
  p.row_taps = p.cin() * p.outer_taps * p.row_kernel;
  const int64_t stride = c.stride[n - 1], size = c.in_sizes[n - 1];
  const int64_t padded = size + c.pad_left[n - 1] + c.pad_right[n - 1];
  p.phase_stride = ceil_div(padded, stride);
  p.row_stride = stride * p.phase_stride;
  p.slot_source.resize(p.row_stride);
  for (int64_t m = 0; m < p.row_stride; ++m) {
    const int64_t j = (m % p.phase_stride) * stride + m / p.phase_stride;
    p.slot_source[m] = j < padded ? pad_source_index(c.mode, j, size, c.pad_left[n - 1],
                                                     c.pad_right[n - 1])
                                  : -1;
  }
  for (int64_t m = 0, begin = 0; m < p.row_stride; ++m) {
    const int64_t v = p.slot_source[m];
    if (m == 0 || v < 0 || p.slot_source[m - 1] < 0 || v != p.slot_source[m - 1] + 1) {
      begin = m;
    }
    if (v >= 0 && m + 1 - begin > p.run_end - p.run_begin) {
      p.run_begin = begin;
      p.run_end = m + 1;
    }
  }
  // Staging costs a pass over the input. The forward reads raw rows wherever it can (the
  // shifted-taps kernel: B4 C1->8 24^4, 15.6 ms against 16.5 ms staged; its input gradient,
  // C8->1, 13.8 ms against 22 ms for the masked loads of raw rows it replaced). The weight
  // gradient masks raw rows' edges, about half as fast as on staged rows (the same conv):
  // it reads them only where the input is the larger side.
  const bool zero_padded =
      c.mode == PadMode::kConstant || (c.pad_left[n - 1] == 0 && c.pad_right[n - 1] == 0);
  p.raw = stride == 1 && x.stride(n + 1) == 1 && zero_padded &&
          (!for_weight_grad || p.cout() < p.cin());
  for (int64_t k = 0; k < p.last_kernel; ++k) {
    p.tap_offsets.push_back(
        p.raw ? k * c.dilation[n - 1] - c.pad_left[n - 1]
              : phase_split_index(k * c.dilation[n - 1], stride, p.phase_stride));
  }
  return p;
}

Tasks split_tasks(const DirectPlan& p) {
  const int64_t planes = p.conv.batch * p.outer_positions;
  const int64_t wanted = ceil_div(4 * at::get_num_threads(), std::max<int64_t>(planes, 1));
  const int64_t chunks = std::clamp<int64_t>(
      std::max(wanted, ceil_div(p.rows_out, kMaxTaskRows)), 1, p.rows_out);
  const int64_t chunk = ceil_div(p.rows_out, chunks);
  return {planes, ceil_div(p.rows_out, chunk), chunk};
}

at::Tensor stage_input(const DirectPlan& p, const at::Tensor& x) {
  RECORD_FUNCTION("ndops::conv_nd::direct_stage", {});
  const ConvPlan& c = p.conv;
  const int n = c.ndim;
  std::vector<int64_t> sizes{c.batch, c.in_channels};
  sizes.insert(sizes.end(), c.in_sizes.begin(), c.in_sizes.end() - 1);
  const int64_t rows = c10::multiply_integers(sizes);
  sizes.push_back(p.row_stride);
  // Packed rows (no padding between them: a third fewer bytes to write for 3-tap first layers)
  // and kSlack floats after the last.
  at::Tensor staged = at::empty({rows * p.row_stride + kSlack}, x.options())
                          .narrow(0, 0, rows * p.row_stride)
                          .view(sizes);
  const float* in = x.const_data_ptr<float>();
  float* out = staged.mutable_data_ptr<float>();
  const auto xs = x.strides();
  const int64_t width_stride = xs[n + 1], run_source = p.slot_source[p.run_begin];
  const int64_t* slots = p.slot_source.data();
  const int64_t run_begin = p.run_begin, count = p.run_end - p.run_begin;
  // Slots [from, to) one by one (padding, phases other than the run's).
  const auto fill_slots = [&](const float* src, float* dst, int64_t from, int64_t to) {
    for (int64_t m = from; m < to; ++m) {
      dst[m] = slots[m] < 0 ? 0.0f : src[slots[m] * width_stride];
    }
  };
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> coords(n + 1);  // (b, c, dims 0 .. N-2)
    unravel_index(begin, sizes.data(), n + 1, coords.data());
    for (int64_t row = begin; row < end; ++row) {
      const float* src = in + ravel_index(coords.data(), xs.data(), n + 1);
      float* dst = out + row * p.row_stride;
      fill_slots(src, dst, 0, run_begin);
      // The run: a plain (or strided) copy, inline (a call per row costs more than the copy).
      const float* from = src + run_source * width_stride;
      float* to = dst + run_begin;
      if (width_stride == 1) {
        for (int64_t i = 0; i < count; ++i) to[i] = from[i];
      } else {
        for (int64_t i = 0; i < count; ++i) to[i] = from[i * width_stride];
      }
      fill_slots(src, dst, p.run_end, p.row_stride);
      advance_index(coords.data(), sizes.data(), n + 1);
    }
  });
  return staged;
}

RowConv row_sources(const DirectPlan& p, const at::Tensor& staged, int64_t b, int64_t o,
                    int64_t g, int64_t h0, int64_t h1, RowScratch& s, const float* zeros) {
  const ConvPlan& c = p.conv;
  const auto ss = staged.strides();
  unravel_index(o, c.out_sizes.data(), p.outer, s.out_coords.data());
  std::fill(s.tap_coords.begin(), s.tap_coords.end(), 0);
  for (int64_t t = 0; t < p.outer_taps; ++t) {
    s.outer_offsets[t] = lead_source_offset(s.out_coords.data(), s.tap_coords.data(),
                                            c.kernel.data(), c.source.data(),
                                            c.source_begin.data(), ss.data() + 2, p.outer);
    advance_index(s.tap_coords.data(), c.kernel.data(), p.outer);
  }
  const float* base = staged.const_data_ptr<float>() + b * ss[0] + g * p.cin() * ss[1];
  const int64_t* row_source = c.source.data() + c.source_begin[p.outer];
  const int64_t rows = h1 - h0, row_stride = ss[c.ndim];
  // Offsets of the rows (kh, h) in a plane (-1: padding).
  int64_t* row_offsets = s.row_offsets.data();
  for (int64_t kh = 0; kh < p.row_kernel; ++kh) {
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t source = row_source[h * p.row_kernel + kh];
      row_offsets[kh * rows + h - h0] = source < 0 ? -1 : source * row_stride;
    }
  }
  const float** planes = s.planes.data();
  for (int64_t ci = 0; ci < p.cin(); ++ci) {
    for (int64_t t = 0; t < p.outer_taps; ++t) {
      const int64_t offset = s.outer_offsets[t];
      *planes++ = offset < 0 ? nullptr : base + ci * ss[1] + offset;
    }
  }
  const int row_dim = c.ndim - 2;
  const bool shared = c.stride[row_dim] == 1 && c.dilation[row_dim] == 1 && p.row_kernel == 3;
  const int64_t in_width = p.raw ? c.in_sizes[c.ndim - 1] : 0;
  return RowConv{s.planes.data(), row_offsets, p.row_taps, p.row_kernel, rows,
                 p.tap_offsets.data(), p.last_kernel, p.width, zeros, in_width,
                 shared ? int64_t{3} : 0};
}

int64_t plane_offset(const DirectPlan& p, const at::Tensor& t, int64_t plane,
                     std::vector<int64_t>& coords) {
  unravel_index(plane % p.outer_positions, p.conv.out_sizes.data(), p.outer, coords.data());
  return plane / p.outer_positions * t.stride(0) +
         ravel_index(coords.data(), t.strides().data() + 2, p.outer);
}

namespace {

using RowActivation = void (*)(float*, int64_t, float);

template <Activation kAct>
void activate_row(float* row, int64_t width, float slope) {
  for (int64_t i = 0; i < width; ++i) row[i] = activation_forward<kAct>(row[i], slope);
}

RowActivation row_activation(Activation act) {
  switch (act) {
    case Activation::kRelu: return activate_row<Activation::kRelu>;
    case Activation::kLeakyRelu: return activate_row<Activation::kLeakyRelu>;
    case Activation::kSilu: return activate_row<Activation::kSilu>;
    case Activation::kGelu: return activate_row<Activation::kGelu>;
    case Activation::kGeluTanh: return activate_row<Activation::kGeluTanh>;
    case Activation::kNone: break;
  }
  return nullptr;
}

}  // namespace

ConvOutputs forward_planes(const char* op, const at::Tensor& x, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const ConvArgs& args,
                           const ConvEpilogue& epilogue, bool keep_pre_activation) {
  const DirectPlan p = direct_plan(op, x, weight, args, false);
  const ConvPlan& c = p.conv;
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (bias->dim() == 1 && bias->size(0) == c.out_channels), "ndops::",
              op, ": bias must have shape (", c.out_channels, "), got ", bias->sizes());
  std::vector<int64_t> out_sizes{c.batch, c.out_channels};
  out_sizes.insert(out_sizes.end(), c.out_sizes.begin(), c.out_sizes.end());
  // B4 C1->8 24^4 (a 42 MB output), 2 threads, without THP_MEM_ALLOC_ENABLE: forward 29.6 ms
  // without huge pages, 15.6 ms with them.
  const auto fresh_output = [&] {
    return empty_with_huge_pages(out_sizes, x.options(), x.nbytes());
  };
  ConvOutputs result{fresh_output(), keep_pre_activation ? fresh_output() : at::Tensor()};
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  const at::Tensor staged = p.raw ? x : stage_input(p, x);
  const Tasks tasks = split_tasks(p);
  const ZeroRow zeros(p);
  const RowActivation activate = row_activation(epilogue.activation);
  const float slope = static_cast<float>(epilogue.negative_slope);
  float* out = result.out.mutable_data_ptr<float>();
  float* pre = keep_pre_activation ? result.pre_activation.mutable_data_ptr<float>() : nullptr;
  const int64_t channel_stride = result.out.stride(1), row_stride = result.out.stride(c.ndim);
  const int64_t weight_group = p.cout() * p.row_taps * p.last_kernel;
  at::parallel_for(0, tasks.count(), 1, [&](int64_t begin, int64_t end) {
    RowScratch scratch(p);
    std::vector<int64_t> coords(p.outer);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / tasks.chunks, h0 = task % tasks.chunks * tasks.chunk;
      const int64_t h1 = std::min(h0 + tasks.chunk, p.rows_out);
      const int64_t offset = plane_offset(p, result.out, plane, coords) + h0 * row_stride;
      for (int64_t g = 0; g < c.groups; ++g) {
        const RowConv cv = row_sources(p, staged, plane / p.outer_positions,
                                       plane % p.outer_positions, g, h0, h1, scratch,
                                       zeros.row());
        row_conv_forward_avx2(cv, w.const_data_ptr<float>() + g * weight_group,
                              has_bias ? b.const_data_ptr<float>() + g * p.cout() : nullptr,
                              p.cout(), out + offset + g * p.cout() * channel_stride,
                              channel_stride, row_stride);
      }
      if (pre == nullptr && activate == nullptr) continue;
      for (int64_t ch = 0; ch < c.out_channels; ++ch) {
        for (int64_t h = 0; h < h1 - h0; ++h) {
          float* row = out + offset + ch * channel_stride + h * row_stride;
          if (pre != nullptr) std::copy(row, row + p.width, pre + (row - out));
          if (activate != nullptr) activate(row, p.width, slope);
        }
      }
    }
  });
  return result;
}

std::string_view direct_conv_forced_mode() {
  const char* forced = std::getenv("NDOPS_CONV_DIRECT");
  return forced == nullptr ? "" : forced;
}

bool direct_conv_applies(const at::Tensor& input, const at::Tensor& weight, bool backward) {
  const std::string_view mode = direct_conv_forced_mode();
  return mode != "0" && mode != "weight_grad" && runs_direct(input, weight) &&
         (mode == "1" || direct_rule(input, weight, backward));
}

ConvOutputs direct_conv_forward(const char* op, const at::Tensor& input,
                                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                const ConvArgs& args, const ConvEpilogue& epilogue,
                                bool keep_pre_activation) {
  RECORD_FUNCTION("ndops::conv_nd::direct_forward", {});
  if (weight.dim() == 3) {
    const UnitDim unit(args);
    ConvOutputs outputs = forward_planes(op, input.unsqueeze(2), weight.unsqueeze(2), bias,
                                         unit.args, epilogue, keep_pre_activation);
    outputs.out = outputs.out.squeeze(2);
    if (keep_pre_activation) outputs.pre_activation = outputs.pre_activation.squeeze(2);
    return outputs;
  }
  return forward_planes(op, input, weight, bias, args, epilogue, keep_pre_activation);
}

}  // namespace ndops
