// The gathered conv's weight gradient (declared in csrc/cpu/conv_weight_grad.h; kernel:
// csrc/cpu/conv_weight_grad_avx2.cpp).
//
// Without AVX-512, oneDNN runs a conv's weight gradient as im2col + GEMM: measured on the
// project machine (AMD EPYC Zen 3, 2 threads, fp32) at 47-57 GF/s for the inner conv3d of the
// 4-D targets (B2 C16 16^4: 48 -> 16 channels; B1 C32 12^4: 96 -> 32), against 100-130 GF/s
// for its forward. The kernel here sums each tap's outer products over the positions of
// blocks of rows that stay in L2. On CPUs with AVX-512 oneDNN has a direct (brgemm) kernel,
// not measured here: it keeps the job there.
#include "cpu/conv_weight_grad.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "cpu/conv_direct.h"
#include "cpu/conv_direct_kernels.h"

namespace ndops {
namespace {

bool cpu_supports(bool avx512) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool has_avx512 = __builtin_cpu_supports("avx512f");
  return avx512 ? has_avx512 : avx2;
#else
  (void)avx512;
  return false;
#endif
}

// Partial sums, each over a fixed range of rows whatever the thread count: deterministic.
constexpr int64_t kParts = 16;

}  // namespace

bool channels_last_weight_grad_applies(at::ScalarType dtype, int64_t group_channels) {
  const std::string_view mode = direct_conv_forced_mode();
  if (mode == "0" || !cpu_supports(false) || dtype != at::kFloat || group_channels % 8 != 0 ||
      group_channels == 0) {
    return false;
  }
  return mode == "1" || mode == "weight_grad" || !cpu_supports(true);
}

void channels_last_weight_grad(const at::Tensor& input, const at::Tensor& grad,
                               c10::IntArrayRef kernel, c10::IntArrayRef stride,
                               c10::IntArrayRef padding, c10::IntArrayRef dilation,
                               int64_t groups, at::Tensor& grad_weight) {
  RECORD_FUNCTION("ndops::conv_nd::channels_last_weight_grad", {});
  const int64_t dims = input.dim() - 2;
  const auto format = dims == 2 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d;
  TORCH_INTERNAL_ASSERT((dims == 2 || dims == 3) && input.is_contiguous(format) &&
                        grad.is_contiguous(format) && grad_weight.is_contiguous());
  ChannelsLastConv conv{input.const_data_ptr<float>(), grad.const_data_ptr<float>(), {}, {}, {},
                        {}, {}, {}, input.size(1), grad.size(1), groups};
  for (int64_t d = 0; d < 3; ++d) {
    const int64_t j = d - (3 - dims);  // unit dims in front
    conv.in_sizes[d] = j < 0 ? 1 : input.size(2 + j);
    conv.out_sizes[d] = j < 0 ? 1 : grad.size(2 + j);
    conv.kernel[d] = j < 0 ? 1 : kernel[j];
    conv.stride[d] = j < 0 ? 1 : stride[j];
    conv.padding[d] = j < 0 ? 0 : padding[j];
    conv.dilation[d] = j < 0 ? 1 : dilation[j];
  }
  const int64_t rows = grad.size(0) * conv.out_sizes[0] * conv.out_sizes[1];
  const int64_t size = grad_weight.numel(), parts = std::min(rows, kParts);
  std::vector<float> partial(parts * size, 0.0f);
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part) {
      channels_last_weight_grad_avx2(conv, part * rows / parts, (part + 1) * rows / parts,
                                     partial.data() + part * size);
    }
  });
  // The kernel's layout is (C_out, taps, channels/groups); grad_weight's (C_out,
  // channels/groups, taps).
  const int64_t out_channels = grad.size(1), taps = size / out_channels / (conv.channels / groups);
  at::Tensor sum = at::zeros({out_channels, taps, conv.channels / groups}, grad_weight.options());
  float* total = sum.mutable_data_ptr<float>();
  for (int64_t part = 0; part < parts; ++part) {
    for (int64_t i = 0; i < size; ++i) total[i] += partial[part * size + i];
  }
  grad_weight.view({out_channels, conv.channels / groups, taps}).add_(sum.permute({0, 2, 1}));
}

}  // namespace ndops
