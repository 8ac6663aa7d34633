// The vectorized kernels of the direct convolution (csrc/cpu/conv_direct.cpp) and of the
// gathered convolution's weight gradient (csrc/cpu/conv_weight_grad.cpp), built in
// csrc/cpu/conv_direct_avx2.cpp and conv_weight_grad_avx2.cpp with AVX2 + FMA enabled for those
// files alone and called only where the CPU has them. This header holds plain data and
// declarations, nothing inline, so that no function compiled for AVX2 can stand in for a
// baseline one at link time.
//
// A task convolves the output rows [0, out_rows) of one plane of one group: output row h,
// position w (the last spatial dim) of channel c is
//   sum over row taps r and last-dim taps k of
//     weight[(c * row_taps + r) * last_taps + k] * row(r, h)[tap_offsets[k] + w],
// where row tap r = plane tap * row_kernel + kh runs over (input channel of the group, taps of
// every spatial dim but the last two; row dim tap kh), row(r, h) = planes[plane tap] +
// row_offsets[kh * out_rows + h] (a null plane or a negative offset: zero padding), and the
// rows are input rows with the last dim's padding applied and split into stride phases
// (common/conv_gather.h, phase_split_index), so that every tap reads a contiguous run, or,
// for stride 1 and zero padding, the input's rows themselves (in_width).
// The table is per plane and per row, not per (plane, row): a task builds no table of rows.
#pragma once

#include <cstdint>

namespace ndops {

struct RowConv {
  const float* const* planes;  // [row_taps / row_kernel]: a plane's start, or nullptr
  const int64_t* row_offsets;  // [row_kernel][out_rows]: a row's offset in its plane, or -1
  int64_t row_taps, row_kernel, out_rows;
  const int64_t* tap_offsets;  // [last_taps]: where output position 0 reads in a source row
  int64_t last_taps;
  int64_t width;               // output positions along the last dim
  const float* zeros;          // staged rows: a zero row, read in place of a null row
  // 0: staged rows, readable wherever a tap reaches (tap offsets >= 0). > 0: the rows are the
  // input's own, of this many elements; reads outside them are zero padding (tap offsets may
  // be negative).
  int64_t in_width;
  // 3 where row tap (q, kh) of output row h is row tap (q, 0) of row h + kh for kh < 3 (the
  // row dim has stride 1, dilation 1 and 3 taps, innermost in r): rows are then shared across
  // a tile's output rows. 0 otherwise.
  int64_t shared_rows_kernel;
};

// out[c * out_channel_stride + h * out_row_stride + w] = bias[c] (0 if bias is null) + the
// sum above, for c < channels (weight and bias start at the task's first channel).
void row_conv_forward_avx2(const RowConv& conv, const float* weight, const float* bias,
                           int64_t channels, float* out, int64_t out_channel_stride,
                           int64_t out_row_stride);

// grad_weight[(c * row_taps + r) * last_taps + k] += sum over h, w of
//   grad[c * grad_channel_stride + h * grad_row_stride + w] * row(r, h)[tap_offsets[k] + w]
// for c < channels: the weight gradient of the forward above.
void row_conv_weight_grad_avx2(const RowConv& conv, const float* grad,
                               int64_t grad_channel_stride, int64_t grad_row_stride,
                               int64_t channels, float* grad_weight);

// sums[c] += the sum of positions [0, width) of rows [0, rows) of channel c of g, c < channels
// (g[c * channel_stride + h * row_stride + w]): the bias gradient of a task's output rows.
void row_sums_avx2(const float* g, int64_t channels, int64_t channel_stride, int64_t rows,
                   int64_t row_stride, int64_t width, float* sums);

// A native conv over 3 spatial dims (fewer: unit dims in front) on channels-last buffers:
// input (entries, *in_sizes, channels), grad (entries, *out_sizes, out_channels), dense.
struct ChannelsLastConv {
  const float* input;
  const float* grad;
  int64_t in_sizes[3], out_sizes[3], kernel[3], stride[3], padding[3], dilation[3];
  int64_t channels, out_channels, groups;  // channels / groups: a multiple of 8
};

// grad_weight[((group * cog + c) * taps + k) * cig + i] += the sum over the output rows
// (entry, d, h) in [row_begin, row_end) and their positions w of grad[.., c] * input[.., i]
// (cig, cog: channels per group, taps: the kernel's volume, k: a tap in row-major order):
// the weight gradient with the channels innermost.
void channels_last_weight_grad_avx2(const ChannelsLastConv& conv, int64_t row_begin,
                                    int64_t row_end, float* grad_weight);

}  // namespace ndops
