// The tables and contiguous loops the CPU interpolation kernels (csrc/cpu/interpolate.cpp) are
// built from: per-dim taps tabulated once per call from common/interp.h, the last dim's taps
// as arrays (and their transpose, for the adjoint), and the loops that combine slabs.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/interp.h"
#include "common/interp_shape.h"

namespace ndops {
namespace interp_cpu {

// v if keep, else +0, by masking its bits: a select the loops vectorize, which (unlike a
// multiplication by 0) also drops an inf or NaN.
template <typename T>
C10_ALWAYS_INLINE T keep_if(T v, bool keep) {
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  Bits bits;
  std::memcpy(&bits, &v, sizeof(bits));
  bits &= Bits(0) - static_cast<Bits>(keep);
  std::memcpy(&v, &bits, sizeof(bits));
  return v;
}

// The transpose of one dim's taps: input coordinate i is read by the output coordinates
// coord[k], k in [first[i], first[i + 1]), in ascending order, with weights weight[k].
template <typename acc_t>
struct Readers {
  std::vector<int64_t> first, coord;
  std::vector<acc_t> weight;

  Readers(const std::vector<Tap<acc_t>>& taps, int64_t in_size) : first(in_size + 1, 0) {
    for (const Tap<acc_t>& t : taps) {
      ++first[t.index0 + 1];
      if (t.count == 2) ++first[t.index1 + 1];
    }
    for (int64_t i = 0; i < in_size; ++i) first[i + 1] += first[i];
    coord.resize(first.back());
    weight.resize(first.back());
    std::vector<int64_t> next(first.begin(), first.end() - 1);
    for (int64_t o = 0; o < static_cast<int64_t>(taps.size()); ++o) {
      const Tap<acc_t>& t = taps[o];
      coord[next[t.index0]] = o;
      weight[next[t.index0]++] = t.weight0;
      if (t.count == 2) {
        coord[next[t.index1]] = o;
        weight[next[t.index1]++] = t.weight1;
      }
    }
  }
  int64_t in_size() const { return static_cast<int64_t>(first.size()) - 1; }
};

// The adjoint of an exact 2x upsample of the last dim reads its output rows as a fixed stencil
// away from the edges: input coordinate j receives from the outputs 2 j + first + k, k < taps,
// with weights weight[k] that do not depend on j, for every j in [lo, hi). (Linear, align_corners
// false: 2j-1 .. 2j+2 with 1/4, 3/4, 3/4, 1/4; nearest: 2j, 2j+1 with 1, 1.)
template <typename acc_t>
struct Stencil {
  static constexpr int kMaxTaps = 4;
  int64_t lo = 0, hi = 0;  // empty unless found
  int32_t first = 0, taps = 0;
  acc_t weight[kMaxTaps] = {};
};

// The last dim's taps as arrays, which the gather loops vectorize over (32-bit indices), and
// their transpose for the adjoint: input coordinate j receives from the output coordinates
// readers[k * in_len + j] with weights reader_weights[k * in_len + j], k < reader_count[j].
template <typename acc_t>
struct LastDim {
  int64_t in_len, out_len;
  std::vector<int32_t> index0, index1, readers, reader_count;
  std::vector<acc_t> weight0, weight1, reader_weights;
  int32_t max_readers = 0;
  bool single = true;    // one tap of weight 1 everywhere (nearest, or a size kept)
  bool identity = true;  // ... and that tap is the output coordinate itself (a copy)
  Stencil<acc_t> stencil;

  LastDim(const std::vector<Tap<acc_t>>& taps, int64_t in_size)
      : in_len(in_size), out_len(static_cast<int64_t>(taps.size())) {
    TORCH_CHECK(in_len <= INT_MAX && out_len <= INT_MAX, "ndops::interpolate_nd: the last ",
                "interpolated dim must have fewer than 2^31 elements, got ", in_len, " -> ",
                out_len);
    for (int64_t x = 0; x < out_len; ++x) {
      const Tap<acc_t>& t = taps[x];
      index0.push_back(static_cast<int32_t>(t.index0));
      index1.push_back(static_cast<int32_t>(t.index1));
      weight0.push_back(t.weight0);
      weight1.push_back(t.weight1);
      single = single && t.is_copy();
      identity = identity && t.is_copy() && t.index0 == x && in_len == out_len;
    }
    // The transpose, laid out reader-major so that the adjoint's loops run over j.
    const Readers<acc_t> transposed(taps, in_len);
    for (int64_t j = 0; j < in_len; ++j) {
      reader_count.push_back(static_cast<int32_t>(transposed.first[j + 1] - transposed.first[j]));
      max_readers = std::max(max_readers, reader_count.back());
    }
    readers.assign(static_cast<size_t>(max_readers) * in_len, 0);
    reader_weights.assign(readers.size(), acc_t(0));
    for (int64_t j = 0; j < in_len; ++j) {
      for (int32_t k = 0; k < reader_count[j]; ++k) {
        const int64_t from = transposed.first[j] + k, entry = k * in_len + j;
        readers[entry] = static_cast<int32_t>(transposed.coord[from]);
        reader_weights[entry] = transposed.weight[from];
      }
    }
    if (out_len == 2 * in_len && in_len >= 8) find_stencil();
  }

  // Does input coordinate j receive from exactly the outputs 2 j + s.first + k with weights
  // s.weight[k], k < s.taps?
  bool follows(const Stencil<acc_t>& s, int64_t j) const {
    if (reader_count[j] != s.taps) return false;
    for (int32_t k = 0; k < s.taps; ++k) {
      if (readers[k * in_len + j] != 2 * j + s.first + k ||
          reader_weights[k * in_len + j] != s.weight[k]) {
        return false;
      }
    }
    return true;
  }

  // The stencil of the middle coordinate, over the run of coordinates around it that follow it
  // (kept if that run covers at least half the row).
  void find_stencil() {
    if constexpr (!std::is_floating_point_v<acc_t>) return;  // uint8 runs only forward
    const int64_t mid = in_len / 2;
    Stencil<acc_t> s;
    s.taps = reader_count[mid];
    if (s.taps != 2 && s.taps != 4) return;  // the counts unresample_rows is instantiated for
    s.first = static_cast<int32_t>(readers[mid] - 2 * mid);
    for (int32_t k = 0; k < s.taps; ++k) s.weight[k] = reader_weights[k * in_len + mid];
    if (!follows(s, mid)) return;  // its readers are not consecutive
    for (s.lo = mid; s.lo > 0 && follows(s, s.lo - 1);) --s.lo;
    for (s.hi = mid + 1; s.hi < in_len && follows(s, s.hi);) ++s.hi;
    if (2 * (s.hi - s.lo) >= in_len) stencil = s;
  }
};

inline int64_t product(std::vector<int64_t>::const_iterator first,
                       std::vector<int64_t>::const_iterator last) {
  int64_t p = 1;
  for (; first != last; ++first) p *= *first;
  return p;
}

// Everything the kernels need about one call, for one accumulation type. With M = N - 1 outer
// dims, the levels of csrc/cpu/interpolate.cpp have these sizes:
//   R(i), one per input slab i of dim 0: rows1 rows of out_len, rows1 = in_1 * ... * in_{N-2};
//   S_L, L = 1..M: slab[L] = in_L * ... * in_{N-2} * out_len elements (S_M: one output row).
// acc_t: the type levels are computed in (the weights'); index_t: the type of the source
// coordinates. The nearest modes only copy, so their levels keep the input's own type.
template <typename acc_t>
struct Levels {
  int outer;  // M
  int64_t planes, in_len, out_len, in0, rows1, in_plane, out_plane;
  std::vector<int64_t> out_sizes, slab;
  std::vector<std::vector<Tap<acc_t>>> taps;
  LastDim<acc_t> last;
  Readers<acc_t> inner_readers;  // of dim M - 1, the innermost outer dim (M >= 1)

  template <typename index_t>
  static std::vector<std::vector<Tap<acc_t>>> tabulate(const InterpGeometry& g) {
    std::vector<std::vector<Tap<acc_t>>> taps;
    for (int d = 0; d < g.ndim; ++d) {
      taps.emplace_back();
      for (const Tap<index_t>& t : tabulate_taps<index_t>(g, d)) {
        taps.back().push_back({t.index0, t.index1, static_cast<acc_t>(t.weight0),
                               static_cast<acc_t>(t.weight1), t.count});
      }
    }
    return taps;
  }

  template <typename index_t>
  Levels(const InterpGeometry& g, index_t /*coordinate type*/)
      : outer(g.ndim - 1), planes(g.planes), in_len(g.in_sizes.back()),
        out_len(g.out_sizes.back()), in0(g.in_sizes[0]),
        rows1(product(g.in_sizes.begin() + std::min(outer, 1), g.in_sizes.end() - 1)),
        in_plane(product(g.in_sizes.begin(), g.in_sizes.end())),
        out_plane(product(g.out_sizes.begin(), g.out_sizes.end())), out_sizes(g.out_sizes),
        slab(g.ndim, 0), taps(tabulate<index_t>(g)), last(taps.back(), in_len),
        inner_readers(taps[std::max(outer - 1, 0)], g.in_sizes[std::max(outer - 1, 0)]) {
    for (int L = 1; L <= outer; ++L) {
      slab[L] = product(g.in_sizes.begin() + L, g.in_sizes.end() - 1) * out_len;
    }
  }
  int64_t in_slab0() const { return rows1 * in_len; }  // input elements per slab of dim 0
  int64_t r_size() const { return rows1 * out_len; }
};

// Two scratch slabs keyed by an id: the R(i) cache of the forward, the accumulators of the
// adjoints of R(i) in the backward.
template <typename acc_t>
struct SlabPair {
  int64_t id[2] = {-1, -1};
  std::vector<acc_t> data[2];
  explicit SlabPair(int64_t size) : data{std::vector<acc_t>(size), std::vector<acc_t>(size)} {}
  int find(int64_t key) const { return id[0] == key ? 0 : (id[1] == key ? 1 : -1); }
};

// ---- the contiguous loops --------------------------------------------------------------------

// dst = t.weight0 * a + t.weight1 * b (n elements; b unused for a single tap).
template <typename dst_t, typename src_t, typename acc_t>
C10_ALWAYS_INLINE void blend(dst_t* __restrict dst, const src_t* __restrict a,
                             const src_t* __restrict b, const Tap<acc_t>& t, int64_t n) {
  const acc_t w0 = t.weight0, w1 = t.weight1;
  if (t.is_copy()) {
    for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<dst_t>(a[k]);
    return;
  }
  if (t.count == 1) {
    for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<dst_t>(w0 * static_cast<acc_t>(a[k]));
    return;
  }
  for (int64_t k = 0; k < n; ++k) {
    dst[k] = static_cast<dst_t>(w0 * static_cast<acc_t>(a[k]) + w1 * static_cast<acc_t>(b[k]));
  }
}

// dst += w * src (kAdd), or dst = w * src.
template <bool kAdd = true, typename src_t, typename acc_t>
C10_ALWAYS_INLINE void add_scaled(acc_t* __restrict dst, const src_t* __restrict src, acc_t w,
                                  int64_t n) {
  if constexpr (kAdd) {
    for (int64_t k = 0; k < n; ++k) dst[k] += w * static_cast<acc_t>(src[k]);
  } else {
    for (int64_t k = 0; k < n; ++k) dst[k] = w * static_cast<acc_t>(src[k]);
  }
}

// The adjoint of blend: slab t.index0 of dst += t.weight0 * src, and likewise for index1
// (slabs of n elements).
template <typename src_t, typename acc_t>
C10_ALWAYS_INLINE void add_taps(acc_t* dst, const src_t* src, const Tap<acc_t>& t, int64_t n) {
  add_scaled(dst + t.index0 * n, src, t.weight0, n);
  if (t.count == 2) add_scaled(dst + t.index1 * n, src, t.weight1, n);
}

// Where gather_rows puts its rows: written (kWrite), or added, scaled, into the slabs that one
// tap of the next outer dim feeds (kOneTap, kTwoTaps): the adjoint of that dim's blend fused in.
enum class RowSink { kWrite, kOneTap, kTwoTaps };

// The sink's destinations never overlap its sources (scratch vs grad rows), nor each other,
// but the compiler cannot see it through the inlined pointers: the loops say so.
#if defined(__GNUC__) && !defined(__clang__)
#define NDOPS_NO_ALIASING _Pragma("GCC ivdep")
#elif defined(__clang__)
#define NDOPS_NO_ALIASING _Pragma("clang loop vectorize(assume_safety)")
#else
#define NDOPS_NO_ALIASING
#endif

template <RowSink kSink, typename acc_t>
C10_ALWAYS_INLINE void sink(acc_t* __restrict dst0, acc_t* __restrict dst1, acc_t w0, acc_t w1,
                            int64_t k, acc_t v) {
  if constexpr (kSink == RowSink::kWrite) {
    dst0[k] = v;
  } else {
    dst0[k] += w0 * v;
    if constexpr (kSink == RowSink::kTwoTaps) dst1[k] += w1 * v;
  }
}

// The adjoint of blend over one whole dim, as a gather: row i (n elements) of the result is
// the sum of the rows of src that read input coordinate i, weighted, summed once (up to four
// source rows per pass) and handed to sink() at dst0 / dst1 + i * n.
template <RowSink kSink, typename src_t, typename acc_t>
C10_ALWAYS_INLINE void gather_rows(const src_t* __restrict src, const Readers<acc_t>& readers,
                                   int64_t n, acc_t* dst0, acc_t* dst1, acc_t w0, acc_t w1) {
  auto row = [&](int64_t k) { return src + readers.coord[k] * n; };
  for (int64_t i = 0; i < readers.in_size(); ++i, dst0 += n, dst1 += n) {
    const int64_t first = readers.first[i], count = readers.first[i + 1] - first;
    const acc_t* w = readers.weight.data() + first;
    if (count == 0) {
      if constexpr (kSink == RowSink::kWrite) std::fill(dst0, dst0 + n, acc_t(0));
    } else if (count == 1) {
      const src_t* __restrict a = row(first);
      NDOPS_NO_ALIASING
      for (int64_t k = 0; k < n; ++k) {
        sink<kSink>(dst0, dst1, w0, w1, k, w[0] * static_cast<acc_t>(a[k]));
      }
    } else if (count == 2) {
      const src_t *__restrict a = row(first), *__restrict b = row(first + 1);
      NDOPS_NO_ALIASING
      for (int64_t k = 0; k < n; ++k) {
        sink<kSink>(dst0, dst1, w0, w1, k,
                    w[0] * static_cast<acc_t>(a[k]) + w[1] * static_cast<acc_t>(b[k]));
      }
    } else if (count == 3) {
      const src_t *__restrict a = row(first), *__restrict b = row(first + 1),
                              *__restrict c = row(first + 2);
      NDOPS_NO_ALIASING
      for (int64_t k = 0; k < n; ++k) {
        sink<kSink>(dst0, dst1, w0, w1, k,
                    w[0] * static_cast<acc_t>(a[k]) + w[1] * static_cast<acc_t>(b[k]) +
                        w[2] * static_cast<acc_t>(c[k]));
      }
    } else {
      const src_t *__restrict a = row(first), *__restrict b = row(first + 1),
                              *__restrict c = row(first + 2), *__restrict d = row(first + 3);
      NDOPS_NO_ALIASING
      for (int64_t k = 0; k < n; ++k) {
        sink<kSink>(dst0, dst1, w0, w1, k,
                    (w[0] * static_cast<acc_t>(a[k]) + w[1] * static_cast<acc_t>(b[k])) +
                        (w[2] * static_cast<acc_t>(c[k]) + w[3] * static_cast<acc_t>(d[k])));
      }
      // More than four readers (upscales above 2x): one by one; a written row is added to.
      constexpr RowSink kMore = kSink == RowSink::kWrite ? RowSink::kOneTap : kSink;
      const acc_t more_w0 = kSink == RowSink::kWrite ? acc_t(1) : w0;
      for (int64_t j = 4; j < count; ++j) {
        const src_t* __restrict e = row(first + j);
        NDOPS_NO_ALIASING
        for (int64_t k = 0; k < n; ++k) {
          sink<kMore>(dst0, dst1, more_w0, w1, k, w[j] * static_cast<acc_t>(e[k]));
        }
      }
    }
  }
}

// The last dim's resampling of `rows` rows: in_len -> out_len elements each.
template <typename dst_t, typename src_t, typename acc_t>
C10_ALWAYS_INLINE void resample_rows(dst_t* __restrict dst, const src_t* __restrict src,
                                     int64_t rows, const LastDim<acc_t>& last) {
  const int32_t* __restrict i0 = last.index0.data();
  const int32_t* __restrict i1 = last.index1.data();
  const acc_t* __restrict w0 = last.weight0.data();
  const acc_t* __restrict w1 = last.weight1.data();
  const int64_t n = last.out_len;
  for (int64_t r = 0; r < rows; ++r, src += last.in_len, dst += n) {
    if (last.identity) {
      for (int64_t x = 0; x < n; ++x) dst[x] = static_cast<dst_t>(src[x]);
    } else if (last.single) {
      for (int64_t x = 0; x < n; ++x) dst[x] = static_cast<dst_t>(src[i0[x]]);
    } else {
      for (int64_t x = 0; x < n; ++x) {
        dst[x] = static_cast<dst_t>(w0[x] * static_cast<acc_t>(src[i0[x]]) +
                                    w1[x] * static_cast<acc_t>(src[i1[x]]));
      }
    }
  }
}

// The stencil's part of the adjoint of resample_rows over `rows` whole rows at once: as
// out_len = 2 in_len, dst[flat] reads src[2 flat + first + k] for every flat index r in_len + j,
// so the rows make one long strided loop, from row 0's s.lo to the last row's s.hi. The
// coordinates outside [lo, hi) of the rows in between get values that unresample_rows
// overwrites (their reads stay inside src).
template <int kTaps, typename dst_t, typename acc_t>
C10_ALWAYS_INLINE void unresample_stencil(dst_t* __restrict dst, const acc_t* __restrict src,
                                          int64_t rows, const LastDim<acc_t>& last) {
  const Stencil<acc_t>& s = last.stencil;
  acc_t w[kTaps];
  for (int k = 0; k < kTaps; ++k) w[k] = s.weight[k];
  const acc_t* __restrict from = src + s.first;
  const int64_t end = (rows - 1) * last.in_len + s.hi;
  for (int64_t flat = s.lo; flat < end; ++flat) {
    acc_t sum = w[0] * from[2 * flat];
    for (int k = 1; k < kTaps; ++k) sum += w[k] * from[2 * flat + k];
    dst[flat] = static_cast<dst_t>(sum);
  }
}

// The adjoint of resample_rows: out_len -> in_len elements per row (acc: in_len scratch). A
// gather over the transposed taps, so no two iterations add into one element; a 2x upsample's
// stencil (see Stencil) instead, where it holds.
template <typename dst_t, typename acc_t>
C10_ALWAYS_INLINE void unresample_rows(dst_t* __restrict dst, const acc_t* __restrict src,
                                       int64_t rows, const LastDim<acc_t>& last,
                                       acc_t* __restrict acc) {
  const int32_t* __restrict count = last.reader_count.data();
  const Stencil<acc_t>& s = last.stencil;
  if (s.hi > s.lo) {
    if (s.taps == 2) {
      unresample_stencil<2>(dst, src, rows, last);
    } else {
      unresample_stencil<4>(dst, src, rows, last);
    }
    // The coordinates outside the stencil's run, one coordinate at a time over every row (so
    // that the rows' independent sums overlap).
    for (const auto& [from, to] : {std::pair{int64_t{0}, s.lo}, std::pair{s.hi, last.in_len}}) {
      for (int64_t j = from; j < to; ++j) {
        const int32_t* __restrict x = last.readers.data() + j;
        const acc_t* __restrict w = last.reader_weights.data() + j;
        const int32_t n = count[j];
        const acc_t* __restrict row = src;
        for (int64_t r = 0; r < rows; ++r, row += last.out_len) {
          acc_t sum = 0;
          for (int32_t k = 0; k < n; ++k) sum += w[k * last.in_len] * row[x[k * last.in_len]];
          dst[r * last.in_len + j] = static_cast<dst_t>(sum);
        }
      }
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r, src += last.out_len, dst += last.in_len) {
    if (last.identity) {
      for (int64_t j = 0; j < last.in_len; ++j) dst[j] = static_cast<dst_t>(src[j]);
      continue;
    }
    std::fill(acc, acc + last.in_len, acc_t(0));
    for (int32_t k = 0; k < last.max_readers; ++k) {
      const int32_t* __restrict x = last.readers.data() + k * last.in_len;
      const acc_t* __restrict w = last.reader_weights.data() + k * last.in_len;
      for (int64_t j = 0; j < last.in_len; ++j) {
        acc[j] += w[j] * keep_if(src[x[j]], k < count[j]);  // x[j] = 0 (valid) past the count
      }
    }
    for (int64_t j = 0; j < last.in_len; ++j) dst[j] = static_cast<dst_t>(acc[j]);
  }
}

}  // namespace interp_cpu
}  // namespace ndops
