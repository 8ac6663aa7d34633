// Copies of 2-D planes (voxels x channels) with arbitrary strides, for the memory passes of
// conv_nd (csrc/cpu/conv_gather.cpp, conv_epilogue.cpp). Moving a plane between the
// channels-first and the channels-last layout is a transpose: float and double go through
// SSE2 register transposes (4x4, 2x2 blocks), which move 4 times as many bytes per
// instruction as element-wise strided stores; other types and the block edges copy element
// by element.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

namespace ndops {

// Voxels per tile (a multiple of 8, for the register transposes) when a voxel's
// channels-last row holds `row` elements of `element_size`: a tile of the channels-last side
// (16 KiB) stays in L1 while the channels-first side is streamed.
inline int64_t voxel_tile(int64_t row, int64_t element_size, int64_t voxels) {
  constexpr int64_t kTileBytes = 16 << 10;
  const int64_t tile = kTileBytes / std::max<int64_t>(row * element_size, 1) / 8 * 8;
  return std::clamp<int64_t>(tile, 8, std::max<int64_t>(voxels, 1));
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Side of the square blocks that transpose in registers: 4 floats or 2 doubles per SSE2
// register, else 1 (element by element).
template <typename T>
constexpr int64_t register_block() {
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) return 4;
  if constexpr (std::is_same_v<T, double>) return 2;
#endif
  return 1;
}

// One register block: d[j * dld + i] = s[i * sld + j] for i, j < register_block<T>().
template <typename T>
inline void transpose_registers(const T* s, int64_t sld, T* d, int64_t dld) {
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + sld);
    __m128 r2 = _mm_loadu_ps(s + 2 * sld), r3 = _mm_loadu_ps(s + 3 * sld);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(d, r0);
    _mm_storeu_ps(d + dld, r1);
    _mm_storeu_ps(d + 2 * dld, r2);
    _mm_storeu_ps(d + 3 * dld, r3);
    return;
  } else if constexpr (std::is_same_v<T, double>) {
    const __m128d r0 = _mm_loadu_pd(s), r1 = _mm_loadu_pd(s + sld);
    _mm_storeu_pd(d, _mm_unpacklo_pd(r0, r1));
    _mm_storeu_pd(d + dld, _mm_unpackhi_pd(r0, r1));
    return;
  }
#endif
  d[0] = s[0];
  (void)sld;
  (void)dld;
}

// dst[j * dst_ld + i] = src[i * src_ld + j] for i < rows, j < cols. The blocks walk the side
// whose rows lie far apart (the channels-first side) a few rows at a time: walking all of
// them at once would thrash the cache when their distance is a multiple of 4 KiB.
template <typename T>
void transpose_block(const T* src, int64_t src_ld, T* dst, int64_t dst_ld, int64_t rows,
                     int64_t cols) {
  constexpr int64_t kBlock = register_block<T>();
  const int64_t full_rows = rows / kBlock * kBlock, full_cols = cols / kBlock * kBlock;
  const auto block = [&](int64_t i, int64_t j) {
    transpose_registers(src + i * src_ld + j, src_ld, dst + j * dst_ld + i, dst_ld);
  };
  if (dst_ld > src_ld) {
    for (int64_t j = 0; j < full_cols; j += kBlock) {
      for (int64_t i = 0; i < full_rows; i += kBlock) block(i, j);
    }
  } else {
    for (int64_t i = 0; i < full_rows; i += kBlock) {
      for (int64_t j = 0; j < full_cols; j += kBlock) block(i, j);
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = i < full_rows ? full_cols : 0; j < cols; ++j) {
      dst[j * dst_ld + i] = src[i * src_ld + j];
    }
  }
}

// d[i] = s[i] for i < n: short runs (a voxel's channels) move through registers, long ones
// through std::copy (a call to memmove costs more than a short run itself).
template <typename T>
inline void copy_run(T* d, const T* s, int64_t n) {
  constexpr int64_t kBlock = register_block<T>();
  if (kBlock == 1 || n >= 64) {
    std::copy(s, s + n, d);
    return;
  }
  int64_t i = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(d + i, _mm_loadu_ps(s + i));
  } else if constexpr (std::is_same_v<T, double>) {
    for (; i + 2 <= n; i += 2) _mm_storeu_pd(d + i, _mm_loadu_pd(s + i));
  }
#endif
  for (; i < n; ++i) d[i] = s[i];
}

// dst[v * dv + c * dc] = src[v * sv + c * sc] for v < nv, c < nc.
template <typename T>
void copy_plane(T* dst, int64_t dv, int64_t dc, const T* src, int64_t sv, int64_t sc,
                int64_t nv, int64_t nc) {
  if (dc == 1 && sc == 1) {  // channel runs on both sides
    for (int64_t v = 0; v < nv; ++v) copy_run(dst + v * dv, src + v * sv, nc);
  } else if (dv == 1 && sv == 1) {  // voxel runs on both sides
    for (int64_t c = 0; c < nc; ++c) copy_run(dst + c * dc, src + c * sc, nv);
  } else if (dc == 1 && sv == 1) {  // channels-first to channels-last
    transpose_block(src, sc, dst, dv, nc, nv);
  } else if (dv == 1 && sc == 1) {  // channels-last to channels-first
    transpose_block(src, sv, dst, dc, nv, nc);
  } else {
    for (int64_t v = 0; v < nv; ++v) {
      for (int64_t c = 0; c < nc; ++c) dst[v * dv + c * dc] = src[v * sv + c * sc];
    }
  }
}

// dst[v * dv + c] = 0 for v < nv, c < nc.
template <typename T>
void zero_plane(T* dst, int64_t dv, int64_t nv, int64_t nc) {
  for (int64_t v = 0; v < nv; ++v) std::fill(dst + v * dv, dst + v * dv + nc, T(0));
}

// dst[v * dv + c] = src[voxel_source[v] * sv + c * sc] for v < nv, c < nc (zero where
// voxel_source[v] < 0): the gathered voxels of a padded extent.
template <typename T>
void gather_plane(T* dst, int64_t dv, const T* src, const int64_t* voxel_source, int64_t sv,
                  int64_t sc, int64_t nv, int64_t nc) {
  if (sc == 1) {
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t s = voxel_source[v];
      if (s < 0) {
        std::fill(dst + v * dv, dst + v * dv + nc, T(0));
      } else {
        copy_run(dst + v * dv, src + s * sv, nc);
      }
    }
    return;
  }
  for (int64_t c = 0; c < nc; ++c) {
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t s = voxel_source[v];
      dst[v * dv + c] = s < 0 ? T(0) : src[s * sv + c * sc];
    }
  }
}

}  // namespace ndops
