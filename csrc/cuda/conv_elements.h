// One element of the CUDA memory passes of the gathered N-d convolution
// (csrc/cuda/conv_gather.cu, conv_epilogue.cu), host-compilable (see per_dim.h). The index
// math is the CPU passes': the plan's tap sources (conv_tap_source, padded_voxel_source,
// tabulated by make_conv_plan), lead_source_offset and gathered_channel
// (csrc/common/conv_gather.h) for the gather; ConvReaders and for_each_lead_reader
// (csrc/common/conv_plan.h, conv_gather.h) for its adjoint; unravel_index / ravel_index
// (csrc/common/nd_index.h) for the moves; activation.h for the epilogue.
//
// Chunks as in csrc/cpu/conv_gather.h: leading output positions [first, first + count),
// native batch entry b * count + (t - first). Tensors are addressed through CollapsedStrides.
#pragma once

#include <cstdint>

#include "common/activation.h"
#include "common/conv_gather.h"
#include "common/conv_plan.h"
#include "common/nd_index.h"
#include "cuda/per_dim.h"

namespace ndops {
namespace cuda {

// CollapsedStrides by value.
struct Strides {
  int64_t batch, channel, voxel;
  PerDim<int64_t> lead;
};

inline Strides strides_of(const CollapsedStrides& s) {
  return {s.batch, s.channel, s.voxel, per_dim<int64_t>(s.lead)};
}

// What every pass of one chunk needs of the plan.
struct ChunkArgs {
  int lead;
  bool pad_inner;
  int64_t first, count, taps, groups, group_channels;
  int64_t gathered_voxels, inner_in_voxels, inner_out_voxels;
  PerDim<int64_t> in_sizes, out_sizes, kernel;  // of the gathered dims
};

inline ChunkArgs chunk_args(const ConvPlan& plan, int64_t first, int64_t count) {
  ChunkArgs a{};
  a.lead = plan.lead;
  a.pad_inner = plan.pad_inner;
  a.first = first;
  a.count = count;
  a.taps = plan.taps;
  a.groups = plan.groups;
  a.group_channels = plan.group_channels;
  a.gathered_voxels = plan.gathered_voxels;
  a.inner_in_voxels = plan.inner_in_voxels;
  a.inner_out_voxels = plan.inner_out_voxels;
  for (int d = 0; d < plan.lead; ++d) {
    a.in_sizes.v[d] = plan.in_sizes[d];
    a.out_sizes.v[d] = plan.out_sizes[d];
    a.kernel.v[d] = plan.kernel[d];
  }
  return a;
}

// The gather's tables: the plan's tap sources, then (pad_inner) its inner voxel sources.
struct GatherTables {
  std::vector<int64_t> table;
  PerDim<int64_t> source_begin;
  int64_t inner_at;
};

inline GatherTables gather_tables(const ConvPlan& plan) {
  GatherTables t{plan.source, per_dim<int64_t>(plan.source_begin),
                 static_cast<int64_t>(plan.source.size())};
  t.table.insert(t.table.end(), plan.inner_source.begin(), plan.inner_source.end());
  return t;
}

// Element i of the channels-last gathered buffer (B * count, gathered voxels, C * taps):
// input channel g * C/groups + c at the leading coordinates that position t reads through
// tap k (channel gathered_channel(g, k) + c), at the input voxel the gathered voxel copies;
// zero in the padding.
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t gather_element(const scalar_t* in, int64_t i, const ChunkArgs& a,
                                               const Strides& is, const int64_t* table,
                                               const PerDim<int64_t>& source_begin,
                                               int64_t inner_at) {
  const int64_t group_span = a.taps * a.group_channels, row = a.groups * group_span;
  const int64_t channel = i % row, rest = i / row;
  const int64_t u = rest % a.gathered_voxels, entry = rest / a.gathered_voxels;
  const int64_t g = channel / group_span, k = channel % group_span / a.group_channels;
  const int64_t c = channel % a.group_channels;
  int64_t out_coords[kMaxDims], tap_coords[kMaxDims];
  unravel_index(a.first + entry % a.count, a.out_sizes.v, a.lead, out_coords);
  unravel_index(k, a.kernel.v, a.lead, tap_coords);
  const int64_t lead_offset = lead_source_offset(out_coords, tap_coords, a.kernel.v, table,
                                                 source_begin.v, is.lead.v, a.lead);
  const int64_t voxel = a.pad_inner ? table[inner_at + u] : u;
  if (lead_offset < 0 || voxel < 0) return scalar_t(0);
  return in[entry / a.count * is.batch + (g * a.group_channels + c) * is.channel + lead_offset +
            voxel * is.voxel];
}

// Element i of the input gradient (B, C, *lead in, inner voxels) in row-major order: the sum
// of the gathered gradient over every (position in the chunk, tap, gathered voxel) whose
// gather read it, added to out (accumulate) or to initial[c] (when not null). Writes out.
template <typename scalar_t, typename acc_t, typename out_t>
C10_HOST_DEVICE inline void scatter_element(const scalar_t* grad, int64_t i, const ChunkArgs& a,
                                            const Strides& gs, const int64_t* readers,
                                            const PerDim<int64_t>& lead_at, int64_t copies_at,
                                            out_t* out, const Strides& os, bool accumulate,
                                            const scalar_t* initial) {
  const int64_t channels = a.groups * a.group_channels;
  const int64_t v = i % a.inner_in_voxels;
  int64_t rest = i / a.inner_in_voxels, coords[kMaxDims], walk[3 * kMaxDims];
  int64_t target = v * os.voxel;
  NDOPS_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < a.lead) {
      coords[d] = rest % a.in_sizes.v[d];
      rest /= a.in_sizes.v[d];
      target += coords[d] * os.lead.v[d];
    }
  }
  const int64_t c = rest % channels, b = rest / channels;
  target += b * os.batch + c * os.channel;
  const int64_t g = c / a.group_channels, within = c % a.group_channels;
  acc_t sum = initial != nullptr && !accumulate ? static_cast<acc_t>(initial[c]) : acc_t(0);
  for_each_lead_reader(
      coords, a.lead, readers, lead_at.v, a.kernel.v, a.out_sizes.v, a.first, a.count, walk,
      [&](int64_t t, int64_t k) {
        const scalar_t* src =
            grad + (b * a.count + t - a.first) * gs.batch +
            (gathered_channel(g, k, a.taps, a.group_channels) + within) * gs.channel;
        if (!a.pad_inner) {
          sum += static_cast<acc_t>(src[v * gs.voxel]);
          return;
        }
        for (int64_t e = readers[copies_at + v]; e < readers[copies_at + v + 1]; ++e) {
          sum += static_cast<acc_t>(src[readers[e] * gs.voxel]);
        }
      });
  out[target] = static_cast<out_t>(accumulate ? static_cast<acc_t>(out[target]) + sum : sum);
}

// The moves between the conv's output layout (B, C_out, *lead out, inner out voxels) and the
// native conv's (B * count, C_out, inner out voxels): element i of a chunk, (b, position,
// channel, voxel) row-major, sits at native[native_offset] and out[offset(out strides)].
struct MoveElement {
  int64_t native_offset, b, c, v, lead_coords[kMaxDims];

  C10_HOST_DEVICE int64_t offset(const Strides& s, int lead) const {
    return b * s.batch + c * s.channel + v * s.voxel + ravel_index(lead_coords, s.lead.v, lead);
  }
};

C10_HOST_DEVICE inline MoveElement move_element(int64_t i, const ChunkArgs& a, int64_t channels,
                                                const Strides& ns) {
  MoveElement m;
  m.v = i % a.inner_out_voxels;
  int64_t rest = i / a.inner_out_voxels;
  m.c = rest % channels;
  rest /= channels;
  const int64_t position = rest % a.count;
  m.b = rest / a.count;
  unravel_index(a.first + position, a.out_sizes.v, a.lead, m.lead_coords);
  m.native_offset = (m.b * a.count + position) * ns.batch + m.c * ns.channel + m.v * ns.voxel;
  return m;
}

// The forward epilogue: out = act(z), z the native conv's output; pre (when not null) = z.
template <Activation kAct, typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline void unpack_element(const scalar_t* native, int64_t i, const ChunkArgs& a,
                                           int64_t channels, const Strides& ns, scalar_t* out,
                                           const Strides& os, scalar_t* pre, const Strides& ps,
                                           acc_t negative_slope) {
  const MoveElement m = move_element(i, a, channels, ns);
  const scalar_t z = native[m.native_offset];
  if (pre != nullptr) pre[m.offset(ps, a.lead)] = z;
  out[m.offset(os, a.lead)] =
      static_cast<scalar_t>(activation_forward<kAct>(static_cast<acc_t>(z), negative_slope));
}

// The backward epilogue: packed = grad * act'(activation input) (act_input unused for kNone).
template <Activation kAct, typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline void pack_element(const scalar_t* grad, int64_t i, const ChunkArgs& a,
                                         int64_t channels, const Strides& gs,
                                         const scalar_t* act_input, const Strides& as,
                                         scalar_t* packed, const Strides& ns,
                                         acc_t negative_slope) {
  const MoveElement m = move_element(i, a, channels, ns);
  const scalar_t g = grad[m.offset(gs, a.lead)];
  if constexpr (kAct == Activation::kNone) {
    packed[m.native_offset] = g;
  } else {
    const acc_t z = static_cast<acc_t>(act_input[m.offset(as, a.lead)]);
    packed[m.native_offset] = static_cast<scalar_t>(
        static_cast<acc_t>(g) * activation_derivative<kAct>(z, negative_slope));
  }
}

}  // namespace cuda
}  // namespace ndops
