// AVX2 + FMA weight gradient of the gathered conv's native (inner) conv on its channels-last
// buffers (declared in csrc/cpu/conv_direct_kernels.h; launcher: csrc/cpu/conv_weight_grad.cpp).
// Built for AVX2 from cpu/conv_avx2.h on, as conv_direct_avx2.cpp.
//
// Register tile: CT output channels x V (<= 3) vectors of 8 input channels (12 accumulators)
// of one kernel tap, summed over every output position of a block of output rows; per position
// it loads V input vectors into registers and broadcasts CT output gradients (7 loads per 12
// FMAs for V = 3: 72-82 GF/s on one Zen 3 core, against 35-43 with V = 6, CT = 2, whose inputs
// GCC reloads for every FMA). Blocks of rows keep the positions they read in L2 while every
// (tap, channel tile) passes over them.
#include <cstdint>

#include "cpu/conv_direct_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "cpu/conv_avx2.h"  // last: AVX2 + FMA from here to NDOPS_AVX2_END

namespace ndops {
namespace {

int64_t max_of(int64_t a, int64_t b) { return a > b ? a : b; }

// The output positions o of a dim with 0 <= o * stride + offset < size: [*lo, *hi).
void valid_range(int64_t offset, int64_t stride, int64_t size, int64_t out, int64_t* lo,
                 int64_t* hi) {
  *lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  *hi = size - offset <= 0 ? 0 : min_of(out, (size - offset - 1) / stride + 1);
  if (*hi < *lo) *hi = *lo;
}

constexpr int64_t kMaxBlockRows = 64;

// A block of output rows (entry, d, h) and what every tile needs of each: where its entry's
// input starts, the input coordinates of tap 0 along d and h, and its gradient row.
struct Block {
  const ChannelsLastConv* conv;
  int64_t rows, group;
  int64_t entry_offset[kMaxBlockRows], d0[kMaxBlockRows], h0[kMaxBlockRows];
  const float* grad_row[kMaxBlockRows];
};

// grad_weight[(c * taps + k) * group_channels + i] for output channels [c0, c0 + CT) and
// input channels [i0, i0 + 8 V) of the block's group, tap k = (kd, kh, kw).
template <int CT, int V>
void tap_tile(const Block& b, int64_t kd, int64_t kh, int64_t kw, int64_t c0, int64_t i0,
              float* grad_weight) {
  const ChannelsLastConv& cv = *b.conv;
  const int64_t taps = cv.kernel[0] * cv.kernel[1] * cv.kernel[2];
  const int64_t k = (kd * cv.kernel[1] + kh) * cv.kernel[2] + kw;
  const int64_t cig = cv.channels / cv.groups, cog = cv.out_channels / cv.groups;
  float* dst = grad_weight + ((b.group * cog + c0) * taps + k) * cig + i0;
  __m256 acc[CT][V];
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    NDOPS_UNROLL
    for (int v = 0; v < V; ++v) {
      acc[ct][v] = _mm256_loadu_ps(dst + ct * taps * cig + v * kLanes);
    }
  }
  const int64_t offset_w = kw * cv.dilation[2] - cv.padding[2];
  int64_t w_lo, w_hi;
  valid_range(offset_w, cv.stride[2], cv.in_sizes[2], cv.out_sizes[2], &w_lo, &w_hi);
  const int64_t x_step = cv.stride[2] * cv.channels;
  const int64_t x_row = cv.in_sizes[2] * cv.channels;  // between input rows
  const int64_t x_start = (w_lo * cv.stride[2] + offset_w) * cv.channels + b.group * cig + i0;
  const int64_t g_start = w_lo * cv.out_channels + b.group * cog + c0;
  for (int64_t row = 0; row < b.rows; ++row) {
    const int64_t id = b.d0[row] + kd * cv.dilation[0];
    const int64_t ih = b.h0[row] + kh * cv.dilation[1];
    if (id < 0 || id >= cv.in_sizes[0] || ih < 0 || ih >= cv.in_sizes[1]) continue;
    const float* x =
        cv.input + b.entry_offset[row] + (id * cv.in_sizes[1] + ih) * x_row + x_start;
    const float* g = b.grad_row[row] + g_start;
    for (int64_t ow = w_lo; ow < w_hi; ++ow, x += x_step, g += cv.out_channels) {
      // Inputs in registers (V of them), each reused by CT broadcast gradients.
      __m256 xv[V];
      NDOPS_UNROLL
      for (int v = 0; v < V; ++v) xv[v] = _mm256_loadu_ps(x + v * kLanes);
      NDOPS_UNROLL
      for (int ct = 0; ct < CT; ++ct) {
        const __m256 gv = _mm256_broadcast_ss(g + ct);
        NDOPS_UNROLL
        for (int v = 0; v < V; ++v) acc[ct][v] = _mm256_fmadd_ps(gv, xv[v], acc[ct][v]);
      }
    }
  }
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    NDOPS_UNROLL
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(dst + ct * taps * cig + v * kLanes, acc[ct][v]);
  }
}

using TapTile = void (*)(const Block&, int64_t, int64_t, int64_t, int64_t, int64_t, float*);

// The tile for V vectors of input channels and `count` output channels (at most 12 / V).
template <int V, int CT = 1>
TapTile pick_tile(int64_t count) {
  if constexpr (CT * V > 12) {
    return nullptr;
  } else {
    return count == CT ? tap_tile<CT, V> : pick_tile<V, CT + 1>(count);
  }
}

}  // namespace

void channels_last_weight_grad_avx2(const ChannelsLastConv& conv, int64_t row_begin,
                                    int64_t row_end, float* grad_weight) {
  const int64_t cig = conv.channels / conv.groups, cog = conv.out_channels / conv.groups;
  const int64_t vectors = cig / kLanes;
  // Rows per block: the inputs they read (about rows + kernel rows of them) stay in L2.
  const int64_t row_bytes = conv.in_sizes[2] * conv.channels * 4;
  const int64_t block = min_of(
      kMaxBlockRows, max_of(1, (256 << 10) / max_of(row_bytes, 1) / conv.kernel[1] / 2));
  Block b;
  b.conv = &conv;
  for (int64_t group = 0; group < conv.groups; ++group) {
    b.group = group;
    for (int64_t begin = row_begin; begin < row_end; begin += block) {
      b.rows = min_of(row_end, begin + block) - begin;
      for (int64_t i = 0; i < b.rows; ++i) {
        const int64_t row = begin + i, oh = row % conv.out_sizes[1];
        const int64_t od = row / conv.out_sizes[1] % conv.out_sizes[0];
        const int64_t entry = row / (conv.out_sizes[1] * conv.out_sizes[0]);
        b.entry_offset[i] = entry * conv.in_sizes[0] * conv.in_sizes[1] * conv.in_sizes[2] *
                            conv.channels;
        b.d0[i] = od * conv.stride[0] - conv.padding[0];
        b.h0[i] = oh * conv.stride[1] - conv.padding[1];
        b.grad_row[i] = conv.grad + row * conv.out_sizes[2] * conv.out_channels;
      }
      for (int64_t kd = 0; kd < conv.kernel[0]; ++kd) {
        for (int64_t kh = 0; kh < conv.kernel[1]; ++kh) {
          for (int64_t kw = 0; kw < conv.kernel[2]; ++kw) {
            for (int64_t i0 = 0; i0 < vectors; i0 += 3) {
              const int64_t v = min_of(3, vectors - i0);
              const int64_t per_tile = 12 / v;
              for (int64_t c0 = 0; c0 < cog; c0 += per_tile) {
                const int64_t count = min_of(per_tile, cog - c0);
                const TapTile tile = v == 1   ? pick_tile<1>(count)
                                     : v == 2 ? pick_tile<2>(count)
                                              : pick_tile<3>(count);
                tile(b, kd, kh, kw, c0, i0 * kLanes, grad_weight);
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace ndops

NDOPS_AVX2_END

#else  // not x86-64: conv_weight_grad.cpp never calls this (its rule requires AVX2)

namespace ndops {
void channels_last_weight_grad_avx2(const ChannelsLastConv&, int64_t, int64_t, float*) {
  __builtin_trap();
}
}  // namespace ndops

#endif
