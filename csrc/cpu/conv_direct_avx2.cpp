// AVX2 + FMA row kernels of the direct convolution (declared in csrc/cpu/conv_direct_kernels.h).
// From its include of cpu/conv_avx2.h on (after every other header) this file is compiled for
// AVX2; the only other code compiled so is that header's, of internal linkage, so nothing
// compiled here can replace a baseline function at link time. conv_direct.cpp calls these only
// when the CPU reports AVX2 and FMA.
//
// Register tiles: the forward keeps CT output channels x RT output rows x V vectors of 8
// positions in (at most) 12 accumulators; per (row tap, last-dim tap) it loads RT x V input
// vectors and broadcasts CT weights (with shared rows, each of the RT + 2 rows a tile reads is
// loaded once per last-dim tap for all its row taps). The weight gradient keeps CT channels x KT
// last-dim taps in accumulators over every output row and position of a row tap, then adds
// their horizontal sums into grad_weight. Staged rows are readable wherever a tap reaches:
// positions past the row's end are computed and never stored. Unpadded rows (in_width) are
// read unshifted by the forward (shifted_taps_tile: each tap's sums are shifted after), so
// that no tap needs masks, and through masks by the gradient. The gradient masks positions
// past the row's end out of both operands, in a pass of its own after the unmasked vectors
// (masks in the main loop cost it a third of its speed: the accumulators no longer fit the
// registers).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/conv_direct_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "cpu/conv_avx2.h"  // last: AVX2 + FMA from here to NDOPS_AVX2_END

namespace ndops {
namespace {

// Lanes [0, valid) set (valid may exceed 8).
__m256i lane_mask(int64_t valid) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(min_of(valid, kLanes))), index);
}

// Lanes i with 0 <= first + i < limit.
__m256i window_mask(int64_t first, int64_t limit) {
  const int64_t clamped = first < -kLanes ? -kLanes : (first > limit ? limit : first);
  const __m256i position = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32(static_cast<int>(clamped)));
  return _mm256_and_si256(_mm256_cmpgt_epi32(position, _mm256_set1_epi32(-1)),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(limit)),
                                             position));
}

// acc[v] += weight (broadcast) * x[v]: one weight's share of a register tile.
template <int V>
void add_weighted(__m256 (&acc)[V], const float* weight, const __m256 (&x)[V]) {
  const __m256 wv = _mm256_broadcast_ss(weight);
  NDOPS_UNROLL
  for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(wv, x[v], acc[v]);
}

struct ForwardTile {
  const RowConv* conv;
  const float* weight;
  const float* bias;
  float* out;
  int64_t channel_stride, row_stride;
};

// Staged rows: output channels [c0, c0 + CT) x rows [h0, h0 + RT) x positions
// [w0, w0 + V * 8), of which `valid` positions are stored.
// KH > 1 where the row dim has stride 1, dilation 1 and KH taps: row tap (q, kh) of output row
// h reads the source row of (q, 0) at row h + kh, so the RT + KH - 1 rows of a tile are loaded
// once per last-dim tap and each feeds every (output row, kh) pair that reads it. KH = 1 is the
// general case: every row tap on its own.
template <int CT, int RT, int V, int KH>
void forward_tile(const ForwardTile& t, int64_t c0, int64_t h0, int64_t w0, int64_t valid) {
  const RowConv& cv = *t.conv;
  constexpr int kRows = RT + KH - 1;
  __m256 acc[CT][RT][V];
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    const __m256 start = _mm256_set1_ps(t.bias == nullptr ? 0.0f : t.bias[c0 + ct]);
    NDOPS_UNROLL
    for (int rt = 0; rt < RT; ++rt) {
      NDOPS_UNROLL
      for (int v = 0; v < V; ++v) acc[ct][rt][v] = start;
    }
  }
  const int64_t weight_stride = cv.row_taps * cv.last_taps;
  const int64_t planes = cv.row_taps / cv.row_kernel;
  for (int64_t plane_tap = 0; plane_tap < planes; ++plane_tap) {
    const float* plane = cv.planes[plane_tap];
    if (plane == nullptr) continue;
    for (int64_t kh0 = 0; kh0 < cv.row_kernel; kh0 += KH) {
      const int64_t q = plane_tap * cv.row_kernel + kh0;
      const float* rows[kRows];
      bool any = false;
      NDOPS_UNROLL
      for (int j = 0; j < kRows; ++j) {
        const int kh = j < RT ? 0 : j - RT + 1;
        const int64_t offset = cv.row_offsets[(kh0 + kh) * cv.out_rows + h0 + j - kh];
        any = any || offset >= 0;
        rows[j] = (offset < 0 ? cv.zeros : plane + offset) + w0;
      }
      if (!any) continue;
      const float* w = t.weight + c0 * weight_stride + q * cv.last_taps;
      for (int64_t k = 0; k < cv.last_taps; ++k) {
        const int64_t offset = cv.tap_offsets[k];
        NDOPS_UNROLL
        for (int j = 0; j < kRows; ++j) {
          __m256 x[V];
          NDOPS_UNROLL
          for (int v = 0; v < V; ++v) x[v] = _mm256_loadu_ps(rows[j] + offset + v * kLanes);
          NDOPS_UNROLL
          for (int kh = 0; kh < KH; ++kh) {
            const int rt = j - kh;
            if (rt < 0 || rt >= RT) continue;
            NDOPS_UNROLL
            for (int ct = 0; ct < CT; ++ct) {
              add_weighted(acc[ct][rt], w + ct * weight_stride + kh * cv.last_taps + k, x);
            }
          }
        }
      }
    }
  }
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    NDOPS_UNROLL
    for (int rt = 0; rt < RT; ++rt) {
      float* dst = t.out + (c0 + ct) * t.channel_stride + (h0 + rt) * t.row_stride + w0;
      NDOPS_UNROLL
      for (int v = 0; v < V; ++v) {
        if (valid >= (v + 1) * kLanes) {
          _mm256_storeu_ps(dst + v * kLanes, acc[ct][rt][v]);
        } else {
          _mm256_maskstore_ps(dst + v * kLanes, lane_mask(valid - v * kLanes), acc[ct][rt][v]);
        }
      }
    }
  }
}

// Rows per tile: as many as the 12 accumulators allow (at most 4).
template <int CT, int V>
constexpr int tile_rows() {
  const int rows = 12 / (CT * V);
  return rows < 1 ? 1 : (rows > 4 ? 4 : rows);
}

// Rows per tile with shared rows (3 row taps): the accumulators, the 3 weights of each channel,
// the loaded row and a spare in the 16 registers (at most 4).
template <int CT, int V>
constexpr int shared_tile_rows() {
  const int rows = (16 - 3 * CT - V - 1) / (CT * V);
  return rows < 1 ? 1 : (rows > 4 ? 4 : rows);
}

// Every row of channels [c0, c0 + CT) and positions [w0, w0 + valid).
template <int CT, int V>
void forward_rows(const ForwardTile& t, int64_t c0, int64_t w0, int64_t valid) {
  constexpr int kRows = tile_rows<CT, V>(), kSharedRows = shared_tile_rows<CT, V>();
  const int64_t rows = t.conv->out_rows;
  int64_t h = 0;
  if (kSharedRows > 1 && t.conv->shared_rows_kernel == 3) {
    for (; h + kSharedRows <= rows; h += kSharedRows) {
      forward_tile<CT, kSharedRows, V, 3>(t, c0, h, w0, valid);
    }
  }
  for (; h + kRows <= rows; h += kRows) {
    forward_tile<CT, kRows, V, 1>(t, c0, h, w0, valid);
  }
  for (; h < rows; ++h) forward_tile<CT, 1, V, 1>(t, c0, h, w0, valid);
}

using ForwardRows = void (*)(const ForwardTile&, int64_t, int64_t, int64_t);

template <int V>
ForwardRows forward_rows_for(int64_t channels) {
  switch (channels) {
    case 1: return forward_rows<1, V>;
    case 2: return forward_rows<2, V>;
    case 3: return forward_rows<3, V>;
    default: return forward_rows<4, V>;
  }
}

// Unpadded rows (in_width > 0), channels [c0, c0 + CT), output row h, taps [k0, k0 + KT),
// input positions [u0, u0 + V * 8): instead of shifting each tap's loads (and masking those
// that leave the row), the tile sums A_k[u] = sum over row taps of weight(k) * row[u] for each
// tap k over the input positions u, loaded once and unshifted, and adds A_k[u] to output
// position u - tap_offsets[k] of the channel's line (lines + ct * line_stride) after: the
// positions a tap reads outside the row are zero padding, so only the lanes past the row's end
// (the last vector, kTail) need a mask. The lines are writable wherever a tile adds.
template <int CT, int KT, int V, bool kTail>
void shifted_taps_tile(const ForwardTile& t, int64_t c0, int64_t h, int64_t k0, int64_t u0,
                       float* lines, int64_t line_stride) {
  const RowConv& cv = *t.conv;
  const __m256i tail = lane_mask(cv.in_width - u0 - (V - 1) * kLanes);
  __m256 acc[CT][KT][V];
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    NDOPS_UNROLL
    for (int kt = 0; kt < KT; ++kt) {
      NDOPS_UNROLL
      for (int v = 0; v < V; ++v) acc[ct][kt][v] = _mm256_setzero_ps();
    }
  }
  // The fields the loop reads, in locals (GCC reloads them from *t.conv on every row tap).
  const int64_t row_kernel = cv.row_kernel, out_rows = cv.out_rows, last_taps = cv.last_taps;
  const int64_t weight_stride = cv.row_taps * last_taps;
  const int64_t* row_offsets = cv.row_offsets + h;
  const float* w = t.weight + c0 * weight_stride + k0;
  const int64_t planes = cv.row_taps / row_kernel;
  for (int64_t plane_tap = 0; plane_tap < planes; ++plane_tap, w += row_kernel * last_taps) {
    const float* plane = cv.planes[plane_tap];
    if (plane == nullptr) continue;
    for (int64_t kh = 0; kh < row_kernel; ++kh) {
      const int64_t offset = row_offsets[kh * out_rows];
      if (offset < 0) continue;
      const float* row = plane + offset + u0;
      const float* wk = w + kh * last_taps;
      __m256 x[V];
      NDOPS_UNROLL
      for (int v = 0; v < V; ++v) {
        x[v] = kTail && v == V - 1 ? _mm256_maskload_ps(row + v * kLanes, tail)
                                   : _mm256_loadu_ps(row + v * kLanes);
      }
      NDOPS_UNROLL
      for (int ct = 0; ct < CT; ++ct) {
        NDOPS_UNROLL
        for (int kt = 0; kt < KT; ++kt) add_weighted(acc[ct][kt], wk + ct * weight_stride + kt, x);
      }
    }
  }
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    NDOPS_UNROLL
    for (int kt = 0; kt < KT; ++kt) {
      float* dst = lines + ct * line_stride + u0 - cv.tap_offsets[k0 + kt];
      NDOPS_UNROLL
      for (int v = 0; v < V; ++v) {
        float* at = dst + v * kLanes;
        _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), acc[ct][kt][v]));
      }
    }
  }
}

using ShiftedTapsTile = void (*)(const ForwardTile&, int64_t, int64_t, int64_t, int64_t, float*,
                                 int64_t);

template <int CT, int KT, bool kTail>
ShiftedTapsTile shifted_taps_tile_for(int64_t vectors) {
  switch (vectors) {
    case 1: return shifted_taps_tile<CT, KT, 1, kTail>;
    case 2: return shifted_taps_tile<CT, KT, 2, kTail>;
    default: return shifted_taps_tile<CT, KT, 3, kTail>;
  }
}

// Tiles of kShiftedChannels channels take one tap at a time; single channels up to 3 taps.
constexpr int64_t kShiftedChannels = 4;

template <bool kTail>
ShiftedTapsTile shifted_taps_tile_for(int64_t channels, int64_t taps, int64_t vectors) {
  if (channels == kShiftedChannels) {
    return shifted_taps_tile_for<kShiftedChannels, 1, kTail>(vectors);
  }
  switch (taps) {
    case 1: return shifted_taps_tile_for<1, 1, kTail>(vectors);
    case 2: return shifted_taps_tile_for<1, 2, kTail>(vectors);
    default: return shifted_taps_tile_for<1, 3, kTail>(vectors);
  }
}

// The forward over unpadded rows: each output row of each channel sums its tiles in a line
// (the bias to start with), then is copied out.
void shifted_taps_forward(const ForwardTile& t, int64_t channels) {
  const RowConv& cv = *t.conv;
  const int64_t first = cv.tap_offsets[0], last = cv.tap_offsets[cv.last_taps - 1];
  const int64_t lead = last > 0 ? last : 0;
  const int64_t u_end = (cv.in_width + kLanes - 1) / kLanes * kLanes;
  const int64_t line_stride = lead + (cv.width > u_end - first ? cv.width : u_end - first);
  std::vector<float> buffer(kShiftedChannels * line_stride);
  float* lines = buffer.data() + lead;
  for (int64_t c0 = 0; c0 < channels;) {
    const int64_t count = channels - c0 >= kShiftedChannels ? kShiftedChannels : 1;
    const int64_t taps_per_tile = count == 1 ? 3 : 1;
    for (int64_t h = 0; h < cv.out_rows; ++h) {
      for (int64_t ct = 0; ct < count; ++ct) {
        std::fill(buffer.begin() + ct * line_stride, buffer.begin() + (ct + 1) * line_stride,
                  t.bias == nullptr ? 0.0f : t.bias[c0 + ct]);
      }
      for (int64_t k0 = 0; k0 < cv.last_taps; k0 += taps_per_tile) {
        const int64_t taps = min_of(taps_per_tile, cv.last_taps - k0);
        for (int64_t u0 = 0; u0 < cv.in_width; u0 += 3 * kLanes) {
          const int64_t valid = min_of(3 * kLanes, cv.in_width - u0);
          const int64_t vectors = (valid + kLanes - 1) / kLanes;
          const ShiftedTapsTile tile =
              valid % kLanes == 0 ? shifted_taps_tile_for<false>(count, taps, vectors)
                                  : shifted_taps_tile_for<true>(count, taps, vectors);
          tile(t, c0, h, k0, u0, lines, line_stride);
        }
      }
      for (int64_t ct = 0; ct < count; ++ct) {
        const float* line = lines + ct * line_stride;
        std::copy(line, line + cv.width,
                  t.out + (c0 + ct) * t.channel_stride + h * t.row_stride);
      }
    }
    c0 += count;
  }
}

float horizontal_sum(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
}

// grad_weight[c0 + ct, r, k0 + kt] += the horizontal sum of acc[ct][kt].
template <int CT, int KT>
void reduce_weight_grad_tile(const RowConv& cv, const __m256 (&acc)[CT][KT], int64_t c0,
                             int64_t k0, int64_t r, float* grad_weight) {
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    float* dst = grad_weight + ((c0 + ct) * cv.row_taps + r) * cv.last_taps + k0;
    NDOPS_UNROLL
    for (int kt = 0; kt < KT; ++kt) dst[kt] += horizontal_sum(acc[ct][kt]);
  }
}

template <int CT, int KT>
void weight_grad_tile(const RowConv& cv, const float* grad, int64_t channel_stride,
                      int64_t row_stride, int64_t c0, int64_t k0, int64_t r,
                      float* grad_weight) {
  __m256 acc[CT][KT];
  NDOPS_UNROLL
  for (int ct = 0; ct < CT; ++ct) {
    NDOPS_UNROLL
    for (int kt = 0; kt < KT; ++kt) acc[ct][kt] = _mm256_setzero_ps();
  }
  // Vectors [lo, hi) read every tap inside the row: no masks there.
  const int64_t* offsets = cv.tap_offsets + k0;
  int64_t lo = 0, hi = cv.width / kLanes * kLanes;
  if (cv.in_width > 0) {
    const int64_t first = offsets[0], last = offsets[KT - 1];
    lo = first < 0 ? (-first + kLanes - 1) / kLanes * kLanes : 0;
    hi = min_of(hi, (cv.in_width - last) / kLanes * kLanes);
    if (hi < lo) hi = lo;
  }
  const float* plane = cv.planes[r / cv.row_kernel];
  if (plane == nullptr) return;
  const int64_t* row_offsets = cv.row_offsets + r % cv.row_kernel * cv.out_rows;
  const auto rows_at = [&](int64_t h, const float* (&x)[KT], const float* (&g)[CT]) {
    if (row_offsets[h] < 0) return false;
    NDOPS_UNROLL
    for (int kt = 0; kt < KT; ++kt) x[kt] = plane + row_offsets[h] + offsets[kt];
    NDOPS_UNROLL
    for (int ct = 0; ct < CT; ++ct) g[ct] = grad + (c0 + ct) * channel_stride + h * row_stride;
    return true;
  };
  // The vectors that need no masks first, the others after in a pass of their own: the masks
  // stay out of the main loop's registers.
  for (int64_t h = 0; h < cv.out_rows; ++h) {
    const float* x[KT];
    const float* g[CT];
    if (!rows_at(h, x, g)) continue;
    for (int64_t w = lo; w < hi; w += kLanes) {
      __m256 xv[KT];
      NDOPS_UNROLL
      for (int kt = 0; kt < KT; ++kt) xv[kt] = _mm256_loadu_ps(x[kt] + w);
      NDOPS_UNROLL
      for (int ct = 0; ct < CT; ++ct) {
        const __m256 gv = _mm256_loadu_ps(g[ct] + w);
        NDOPS_UNROLL
        for (int kt = 0; kt < KT; ++kt) acc[ct][kt] = _mm256_fmadd_ps(gv, xv[kt], acc[ct][kt]);
      }
    }
  }
  for (int64_t h = 0; (lo > 0 || hi < cv.width) && h < cv.out_rows; ++h) {
    const float* x[KT];
    const float* g[CT];
    if (!rows_at(h, x, g)) continue;
    // Both operands masked: nothing past the output row or outside the input row enters.
    const auto masked_step = [&](int64_t w) {
      const __m256i in_output = lane_mask(cv.width - w);
      __m256 xv[KT];
      NDOPS_UNROLL
      for (int kt = 0; kt < KT; ++kt) {
        const __m256i mask =
            cv.in_width > 0
                ? _mm256_and_si256(in_output, window_mask(w + offsets[kt], cv.in_width))
                : in_output;
        xv[kt] = _mm256_maskload_ps(x[kt] + w, mask);
      }
      NDOPS_UNROLL
      for (int ct = 0; ct < CT; ++ct) {
        const __m256 gv = _mm256_maskload_ps(g[ct] + w, in_output);
        NDOPS_UNROLL
        for (int kt = 0; kt < KT; ++kt) acc[ct][kt] = _mm256_fmadd_ps(gv, xv[kt], acc[ct][kt]);
      }
    };
    for (int64_t w = 0; w < lo && w < cv.width; w += kLanes) masked_step(w);
    for (int64_t w = hi > lo ? hi : lo; w < cv.width; w += kLanes) masked_step(w);
  }
  reduce_weight_grad_tile<CT, KT>(cv, acc, c0, k0, r, grad_weight);
}

using WeightGradTile = void (*)(const RowConv&, const float*, int64_t, int64_t, int64_t,
                                int64_t, int64_t, float*);

template <int KT>
WeightGradTile weight_grad_tile_for(int64_t channels) {
  switch (channels) {
    case 1: return weight_grad_tile<1, KT>;
    case 2: return weight_grad_tile<2, KT>;
    case 3: return weight_grad_tile<3, KT>;
    default: return weight_grad_tile<4, KT>;
  }
}

}  // namespace

void row_conv_forward_avx2(const RowConv& conv, const float* weight, const float* bias,
                           int64_t channels, float* out, int64_t out_channel_stride,
                           int64_t out_row_stride) {
  const ForwardTile tile{&conv, weight, bias, out, out_channel_stride, out_row_stride};
  if (conv.in_width > 0) {
    shifted_taps_forward(tile, channels);
    return;
  }
  for (int64_t w0 = 0; w0 < conv.width; w0 += 3 * kLanes) {
    const int64_t valid = min_of(3 * kLanes, conv.width - w0);
    const int64_t vectors = (valid + kLanes - 1) / kLanes;
    for (int64_t c0 = 0; c0 < channels; c0 += 4) {
      const int64_t count = min_of(4, channels - c0);
      const ForwardRows rows = vectors == 1   ? forward_rows_for<1>(count)
                               : vectors == 2 ? forward_rows_for<2>(count)
                                              : forward_rows_for<3>(count);
      rows(tile, c0, w0, valid);
    }
  }
}

void row_sums_avx2(const float* g, int64_t channels, int64_t channel_stride, int64_t rows,
                   int64_t row_stride, int64_t width, float* sums) {
  constexpr int kChains = 4;  // independent accumulators: no serial chain of additions
  for (int64_t c = 0; c < channels; ++c) {
    __m256 acc[kChains];
    NDOPS_UNROLL
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t h = 0; h < rows; ++h) {
      const float* row = g + c * channel_stride + h * row_stride;
      for (int64_t w = 0; w < width; w += kChains * kLanes) {
        NDOPS_UNROLL
        for (int i = 0; i < kChains; ++i) {
          const int64_t at = w + i * kLanes;
          acc[i] = _mm256_add_ps(acc[i], _mm256_maskload_ps(row + at, lane_mask(width - at)));
        }
      }
    }
    sums[c] += horizontal_sum(
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  }
}

void row_conv_weight_grad_avx2(const RowConv& conv, const float* grad,
                               int64_t grad_channel_stride, int64_t grad_row_stride,
                               int64_t channels, float* grad_weight) {
  for (int64_t c0 = 0; c0 < channels; c0 += 4) {
    const int64_t count = min_of(4, channels - c0);
    for (int64_t k0 = 0; k0 < conv.last_taps; k0 += 3) {
      const int64_t taps = min_of(3, conv.last_taps - k0);
      const WeightGradTile tile = taps == 1   ? weight_grad_tile_for<1>(count)
                                  : taps == 2 ? weight_grad_tile_for<2>(count)
                                              : weight_grad_tile_for<3>(count);
      for (int64_t r = 0; r < conv.row_taps; ++r) {
        tile(conv, grad, grad_channel_stride, grad_row_stride, c0, k0, r, grad_weight);
      }
    }
  }
}

}  // namespace ndops

NDOPS_AVX2_END

#else  // not x86-64: conv_direct.cpp never calls these (direct_conv_supported() is false)

namespace ndops {
void row_conv_forward_avx2(const RowConv&, const float*, const float*, int64_t, float*,
                           int64_t, int64_t) {
  __builtin_trap();
}
void row_conv_weight_grad_avx2(const RowConv&, const float*, int64_t, int64_t, int64_t,
                               float*) {
  __builtin_trap();
}
void row_sums_avx2(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*) {
  __builtin_trap();
}
}  // namespace ndops

#endif
