// Index math of the gathered N-d convolution (csrc/cpu/conv.cpp), shared by host and device.
//
// The convolution gathers the taps of its leading (gathered) dims into channels: gathered
// channel (group, tap, channel within the group) of batch entry (b, t) holds input channel c
// at the leading coordinates that leading output position t reads through tap k; the inner
// dims are untouched. One native conv over the inner dims, with the weight's leading kernel
// dims folded into its input channels in the same order, then finishes the sum over taps.
// Along one dim, output position o reads the padded coordinate o * stride + k * dilation
// through tap k; pad_index.h maps it to an input coordinate for every padding mode.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

#include "common/nd_index.h"
#include "common/pad_index.h"

namespace ndops {

// Output size of one conv dim: (in + pad_left + pad_right - dilation * (kernel - 1) - 1)
// / stride + 1 (<= 0 when the dilated kernel does not fit in the padded input).
C10_HOST_DEVICE inline int64_t conv_output_size(int64_t in_size, int64_t kernel, int64_t stride,
                                                int64_t pad_left, int64_t pad_right,
                                                int64_t dilation) {
  const int64_t span = dilation * (kernel - 1) + 1;
  const int64_t room = in_size + pad_left + pad_right - span;
  return room < 0 ? 0 : room / stride + 1;
}

// The input coordinate that output position `o` reads through tap `k` along one dim, with the
// padding applied as `mode` (torch's padding_mode "zeros" is kConstant); -1 where zero
// padding supplies the value.
C10_HOST_DEVICE inline int64_t conv_tap_source(PadMode mode, int64_t o, int64_t k,
                                               int64_t in_size, int64_t stride,
                                               int64_t pad_left, int64_t pad_right,
                                               int64_t dilation) {
  return pad_source_index(mode, o * stride + k * dilation, in_size, pad_left, pad_right);
}

// First gathered channel of (group g, linear tap k): channels are ordered (group, tap,
// channel within the group), so every group's channels stay contiguous (the inner conv keeps
// `groups`) and one (group, tap) pair is a contiguous run of `group_channels`.
C10_HOST_DEVICE inline int64_t gathered_channel(int64_t g, int64_t k, int64_t taps,
                                                int64_t group_channels) {
  return (g * taps + k) * group_channels;
}

// Offset (under `strides`, one per gathered dim) of the leading coordinates that leading
// output position `out_coords` reads through tap `tap_coords`, or -1 when any of them falls
// into zero padding. `source` holds, for gathered dim d, conv_tap_source of (o, k) at entry
// source_begin[d] + o * kernel[d] + k.
C10_HOST_DEVICE inline int64_t lead_source_offset(const int64_t* out_coords,
                                                  const int64_t* tap_coords,
                                                  const int64_t* kernel, const int64_t* source,
                                                  const int64_t* source_begin,
                                                  const int64_t* strides, int ndim) {
  int64_t offset = 0;
  for (int d = 0; d < ndim; ++d) {
    const int64_t s = source[source_begin[d] + out_coords[d] * kernel[d] + tap_coords[d]];
    if (s < 0) return -1;
    offset += s * strides[d];
  }
  return offset;
}

// Calls f(t, k) for every (leading output position t in [first, first + count), linear tap k)
// whose gather reads the leading input coordinates `coords`: every combination of one reader
// per gathered dim, in a fixed order. Dim d's readers of coordinate j are the entries
// e = o * kernel[d] + k listed in table[table[lead_at[d] + j]], ..., table[table[lead_at[d] +
// j + 1] - 1] (ConvReaders, common/conv_plan.h). `scratch` holds 3 * lead values.
template <typename F>
C10_HOST_DEVICE inline void for_each_lead_reader(const int64_t* coords, int lead,
                                                 const int64_t* table, const int64_t* lead_at,
                                                 const int64_t* kernel, const int64_t* out_sizes,
                                                 int64_t first, int64_t count, int64_t* scratch,
                                                 const F& f) {
  int64_t* from = scratch;
  int64_t* counts = scratch + lead;
  int64_t* pick = scratch + 2 * lead;
  for (int d = 0; d < lead; ++d) {
    from[d] = table[lead_at[d] + coords[d]];
    counts[d] = table[lead_at[d] + coords[d] + 1] - from[d];
    if (counts[d] == 0) return;  // no (o, k) of dim d reads this coordinate
    pick[d] = 0;
  }
  do {
    int64_t t = 0, k = 0;
    for (int d = 0; d < lead; ++d) {
      const int64_t e = table[from[d] + pick[d]];
      t = t * out_sizes[d] + e / kernel[d];
      k = k * kernel[d] + e % kernel[d];
    }
    if (t >= first && t < first + count) f(t, k);
  } while (advance_index(pick, counts, lead));
}

// Row-major linear index, over `in_sizes`, of the input voxel that the voxel at `coords` of
// the padded extent (in_sizes + pad_left + pad_right per dim) copies, or -1 in zero padding.
C10_HOST_DEVICE inline int64_t padded_voxel_source(PadMode mode, const int64_t* coords,
                                                   const int64_t* in_sizes,
                                                   const int64_t* pad_left,
                                                   const int64_t* pad_right, int ndim) {
  int64_t linear = 0;
  for (int d = 0; d < ndim; ++d) {
    const int64_t s = pad_source_index(mode, coords[d], in_sizes[d], pad_left[d], pad_right[d]);
    if (s < 0) return -1;
    linear = linear * in_sizes[d] + s;
  }
  return linear;
}

// The direct convolution (csrc/cpu/conv_direct.cpp) splits each padded input row along the
// last dim into `stride` phases, `phase_stride` apart: padded coordinate j is stored at
// phase_split_index(j). Output position o reads coordinate o * stride + k * dilation through
// tap k, i.e. entry phase_split_index(k * dilation) + o: every tap reads a contiguous run.
C10_HOST_DEVICE inline int64_t phase_split_index(int64_t j, int64_t stride,
                                                 int64_t phase_stride) {
  return (j % stride) * phase_stride + j / stride;
}

// The padding of the stride-1 convolution that computes a stride-1 zero-padded conv's input
// gradient (the output gradient convolved with the flipped kernel): d * (k - 1) - pad on each
// side; negative where the conv pads more than its dilated kernel spans.
C10_HOST_DEVICE inline int64_t adjoint_padding(int64_t kernel, int64_t dilation, int64_t pad) {
  return dilation * (kernel - 1) - pad;
}

}  // namespace ndops
