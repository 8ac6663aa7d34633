// The plan of one gathered N-d convolution (csrc/cpu/conv.cpp; built by make_conv_plan,
// csrc/cpu/conv_gather.h) and the host-side tables its memory passes read, on the CPU and on
// CUDA alike (csrc/cpu/conv_gather.cpp, csrc/cuda/conv_gather.cu). Plain C++: no ATen, no
// CUDA headers. Index math on these tables: csrc/common/conv_gather.h.
#pragma once

#include <cstdint>
#include <vector>

#include "common/activation.h"
#include "common/pad_index.h"

namespace ndops {

struct ConvPlan {
  int ndim = 0;  // N, spatial dims
  int lead = 0;  // L, the leading dims whose taps are gathered into channels
  PadMode mode = PadMode::kConstant;
  int64_t batch = 0, in_channels = 0, out_channels = 0, groups = 1, group_channels = 0;
  std::vector<int64_t> in_sizes, out_sizes, kernel, stride, pad_left, pad_right, dilation;
  int64_t taps = 1;            // product of kernel[0, L)
  int64_t lead_positions = 1;  // product of out_sizes[0, L)
  int64_t inner_in_voxels = 1, inner_out_voxels = 1;  // products of [L, N) of in / out sizes
  // conv_tap_source (common/conv_gather.h) of every (o, k) of gathered dim d, at
  // source_begin[d] + o * kernel[d] + k (zero padding: -1).
  std::vector<int64_t> source, source_begin;
  // The native conv pads the inner dims itself when the padding is symmetric zeros; else
  // (pad_inner) the gather pads them too: the gathered buffer's inner extent is the padded
  // one and inner_source holds padded_voxel_source of each of its voxels.
  bool pad_inner = false;
  std::vector<int64_t> gathered_inner_sizes, inner_source;
  int64_t gathered_voxels = 1;

  int64_t gathered_channels() const { return in_channels * taps; }
};

// Strides of a (B, C, *lead, *inner) tensor with the inner dims collapsed into one voxel
// index (collapse_inner, csrc/cpu/conv_gather.h).
struct CollapsedStrides {
  int64_t batch = 0, channel = 0, voxel = 0;
  std::vector<int64_t> lead;
};

// The pointwise epilogue of the native conv's output z (its bias included): act(z).
struct ConvEpilogue {
  Activation activation = Activation::kNone;
  double negative_slope = 0.0;
};

// Appends to `table` the inverse of the map e -> source[e] (e < entries, onto [0, targets);
// -1: no target) and returns `at`, where it starts: the entries that map to target j are
// table[table[at + j]], ..., table[table[at + j + 1] - 1], in increasing order.
inline int64_t append_inverse(std::vector<int64_t>& table, const int64_t* source,
                              int64_t entries, int64_t targets) {
  const int64_t at = static_cast<int64_t>(table.size()), list = at + targets + 1;
  table.resize(list, 0);
  for (int64_t e = 0; e < entries; ++e) {
    if (source[e] >= 0) ++table[at + source[e] + 1];
  }
  table[at] = list;
  for (int64_t j = 0; j < targets; ++j) table[at + j + 1] += table[at + j];
  table.resize(table[at + targets]);
  std::vector<int64_t> cursor(table.begin() + at, table.begin() + at + targets);
  for (int64_t e = 0; e < entries; ++e) {
    if (source[e] >= 0) table[cursor[source[e]]++] = e;
  }
  return at;
}

// What the adjoint of the gather (the scatter) reads through: per gathered dim d, the inverse
// of the tap sources (entries e = o * kernel[d] + k per input coordinate, starting at
// lead_at[d]); with pad_inner, the gathered voxels that copy each input voxel (starting at
// copies_at). See for_each_lead_reader (common/conv_gather.h).
struct ConvReaders {
  std::vector<int64_t> table, lead_at;
  int64_t copies_at = -1;
};

inline ConvReaders conv_readers(const ConvPlan& plan) {
  ConvReaders r;
  for (int d = 0; d < plan.lead; ++d) {
    r.lead_at.push_back(append_inverse(r.table, plan.source.data() + plan.source_begin[d],
                                       plan.out_sizes[d] * plan.kernel[d], plan.in_sizes[d]));
  }
  if (plan.pad_inner) {
    r.copies_at = append_inverse(r.table, plan.inner_source.data(), plan.gathered_voxels,
                                 plan.inner_in_voxels);
  }
  return r;
}

}  // namespace ndops
