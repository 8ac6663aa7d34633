// Box-window pooling on the CPU for any N (declarations and tap tables: pool_engine.h).
//
// Forward, per output row (a line along the last spatial dim), parallel over rows:
//  1. vertical: reduce the input rows of the window's outer taps (its taps in every dim but
//     the last) elementwise along the row, a contiguous loop that vectorizes and does most of
//     the work;
//  2. horizontal: reduce each output's taps along the last dim of that reduced row, with
//     vectorized loops over the outputs of the dim's regular run.
// For max, step 1 keeps per element the first maximum (or last NaN) over the outer taps and
// which outer tap it came from; step 2 merges those candidates in inner order with
// max_pool_prefers_split, which together give exactly torch's row-major rule, indices too.
// Without indices the taps are not tracked (max_row_values: ~1.5x faster), and the rare
// windows where +0 and -0 tie for the maximum are redone in row-major order.
// The average's backward runs per (b, c) plane and writes each element of grad_input once, a
// slab (the last two dims) at a time: every output slab's shares (grad / divisor) are spread
// over its windows' span in the slab's two dims, then each input slab is stored as the sum of
// the spread slabs whose windows read it along the outer dims (SlabGeometry).
#include "cpu/pool_engine.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/macros/Macros.h>

#include <cstddef>
#include <limits>
#include <numeric>
#include <type_traits>

#include "common/nd_index.h"
#include "cpu/pool_loops.h"

// The extension is built for baseline x86-64, whose SSE2 vectors hold 4 floats; the row
// kernels get one copy per instruction set, picked when the library loads.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define NDOPS_ROW_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NDOPS_ROW_KERNEL
#endif

namespace ndops {
namespace pool_cpu {
namespace {

int64_t plane_size(const std::vector<DimTaps>& dims, bool output) {
  int64_t size = 1;
  for (const DimTaps& d : dims) size *= output ? d.out_size : d.in_size;
  return size;
}

// Input elements one output row reads at most (sizes the parallel tasks).
int64_t row_work(const BoxPool& pool) {
  const DimTaps& last = pool.dims.back();
  int64_t work = std::max<int64_t>(last.span_end - last.span_begin, 1);
  for (size_t d = 0; d + 1 < pool.dims.size(); ++d) work *= pool.dims[d].max_count();
  return work;
}

// Walks output rows from a flat row number (plane-major), giving for each the plane and the
// in-plane offsets of the input rows its window reads, outer taps in row-major order.
class RowWalker {
 public:
  RowWalker(const BoxPool& pool, int64_t row) : dims_(pool.dims), outer_(pool.dims.size() - 1) {
    space_.push_back(pool.planes);
    std::vector<int64_t> in_sizes;
    for (const DimTaps& d : dims_) in_sizes.push_back(d.in_size);
    for (int d = 0; d < outer_; ++d) space_.push_back(dims_[d].out_size);
    strides_.resize(in_sizes.size());
    contiguous_strides(in_sizes.data(), static_cast<int>(in_sizes.size()), strides_.data());
    coords_.resize(outer_ + 1);
    unravel_index(row, space_.data(), outer_ + 1, coords_.data());
    load();
  }
  int64_t plane() const { return coords_[0]; }
  const int64_t* tap_rows() const { return tap_rows_.data(); }
  int32_t tap_count() const { return static_cast<int32_t>(tap_rows_.size()); }
  int64_t outer_divisor() const { return outer_divisor_; }
  // How many rows from this one, at most `limit`, lie in the regular run of dim N - 2: their
  // windows are this row's shifted by shift() elements per row, with the same divisor.
  int64_t run_length(int64_t limit) const {
    if (outer_ == 0) return 1;
    const DimTaps& dim = dims_[outer_ - 1];
    const int64_t o = coords_[outer_];
    if (o < dim.regular_begin || o >= dim.regular_end) return 1;
    return std::min(dim.regular_end - o, limit);
  }
  int64_t shift() const {
    return outer_ == 0 ? 0 : dims_[outer_ - 1].regular_stride * strides_[outer_ - 1];
  }
  // Moves `rows` rows on (rows <= run_length(...)).
  void skip(int64_t rows) {
    if (rows > 1) {
      coords_[outer_] += rows - 1;
      for (int64_t& row : tap_rows_) row += (rows - 1) * shift();
    }
    next();
  }
  void next() {
    if (outer_ > 0) {  // within the regular run of dim N - 2 the tap rows just shift
      const DimTaps& dim = dims_[outer_ - 1];
      int64_t& o = coords_[outer_];
      if (o >= dim.regular_begin && o + 1 < dim.regular_end) {
        ++o;
        for (int64_t& row : tap_rows_) row += shift();
        return;  // the divisor is the same along the run
      }
    }
    advance_index(coords_.data(), space_.data(), outer_ + 1);
    load();
  }

 private:
  // The tap rows of dims [0, d] are those of dims [0, d) times dim d's taps, expanded in
  // place from the back so that the order stays row-major.
  void load() {
    tap_rows_.assign(1, 0);
    outer_divisor_ = 1;
    for (int d = 0; d < outer_; ++d) {
      const DimTaps& dim = dims_[d];
      const int64_t o = coords_[d + 1], count = dim.count[o];
      const int64_t first = dim.first[o] * strides_[d], step = dim.step * strides_[d];
      outer_divisor_ *= dim.divisor[o];
      const int64_t before = static_cast<int64_t>(tap_rows_.size());
      tap_rows_.resize(before * count);
      for (int64_t r = before - 1; r >= 0; --r) {
        const int64_t base = tap_rows_[r] + first;
        for (int64_t j = count - 1; j >= 0; --j) tap_rows_[r * count + j] = base + j * step;
      }
    }
  }

  const std::vector<DimTaps>& dims_;
  const int outer_;
  std::vector<int64_t> space_, strides_, coords_, tap_rows_;
  int64_t outer_divisor_ = 1;
};

// Per-task buffers of the row kernels: the reduced row (and for max the outer tap of each
// element, with zeros for rows that have one outer tap), and per output the running result.
template <typename buffer_t>
struct RowBuffers {
  explicit RowBuffers(const DimTaps& last)
      : acc(last.span_end - last.span_begin), tap(acc.size()), zero_tap(acc.size(), 0),
        best_tap(last.out_size), best_j(last.out_size), sum(last.out_size),
        divisor(last.out_size) {}
  std::vector<buffer_t> acc;
  std::vector<int32_t> tap, zero_tap, best_tap, best_j;
  std::vector<buffer_t> sum;
  // An average's divisor per output of the row, valid for the outer divisor divisor_of.
  std::vector<buffer_t> divisor;
  int64_t divisor_of = -1;

  const buffer_t* divisors(const DimTaps& last, int64_t outer_divisor,
                           std::optional<int64_t> divisor_override) {
    if (divisor_of != outer_divisor) {  // rows in a regular run share one
      for (int64_t x = 0; x < last.out_size; ++x) {
        divisor[x] = static_cast<buffer_t>(
            divisor_override.value_or(outer_divisor * last.divisor[x]));
      }
      divisor_of = outer_divisor;
    }
    return divisor.data();
  }
};

// ---- row kernels -----------------------------------------------------------------------------

// The outputs [x0, x0 + n) of the last dim's regular run, whose windows start at offset
// i + (x - x0) * stride of a row held from span_begin: calls tiled(kWidth, i, x0, n) when the
// windows tile the run (with_tiled_width) and `tiled` is not nullptr, else
// each_tap(kStride, offset, x0, n, j) for the taps j in order, offset = i + j * step.
// (The average's forward sum has no tiled form: measured, it was no faster.)
template <typename Tiled, typename EachTap>
C10_ALWAYS_INLINE void for_regular_run(const DimTaps& last, const Tiled& tiled,
                                       const EachTap& each_tap) {
  const int64_t x0 = last.regular_begin, n = last.regular_end - x0, s = last.regular_stride;
  const int64_t i = n > 0 ? last.regular_origin + x0 * s - last.span_begin : 0;
  if constexpr (!std::is_same_v<Tiled, std::nullptr_t>) {
    const bool done = with_tiled_width(last.regular_count, s, last.step, [&](auto kWidth)
                                           C10_ALWAYS_INLINE_ATTRIBUTE {
      tiled(kWidth, i, x0, n);
    });
    if (done) return;
  }
  with_static_stride(s, [&](auto kStride) C10_ALWAYS_INLINE_ATTRIBUTE {
    for (int32_t j = 0; j < last.regular_count; ++j) {
      each_tap(kStride, i + j * last.step, x0, n, j);
    }
  });
}

// Merges the candidates values[i] (from outer taps taps[i], with kTaps) of each window of a row
// along the last dim, in inner order, into out[x] (and, with kTaps, the winner's outer tap and
// inner tap into b.best_tap[x], b.best_j[x]). values[i] holds input coordinate span_begin + i.
// Without kTaps, returns whether +0 and -0 tied for the maximum of some window (merge_run).
template <bool kTaps, typename scalar_t>
C10_ALWAYS_INLINE bool horizontal_max(const scalar_t* values, const int32_t* taps,
                                      const DimTaps& last, RowBuffers<scalar_t>& b,
                                      scalar_t* out) {
  const int64_t lo = last.span_begin, step = last.step;
  int32_t* best_tap = b.best_tap.data();
  int32_t* best_j = b.best_j.data();
  int32_t zero_tie = 0;
  for (int64_t x = 0; x < last.out_size; ++x) {  // windows outside the regular run
    if (x == last.regular_begin) x = last.regular_end;
    if (x >= last.out_size) break;
    const int64_t i = last.first[x] - lo;
    start_run<1, kTaps>(values + i, taps + i, 1, 1, out + x, best_tap + x, best_j + x);
    for (int32_t j = 1; j < last.count[x]; ++j) {
      zero_tie |= merge_run<1, kTaps>(values + i + j * step, taps + i + j * step, 1, 1, j,
                                      out + x, best_tap + x, best_j + x);
    }
  }
  for_regular_run(
      last,
      [&](auto kWidth, int64_t i, int64_t x0, int64_t n) C10_ALWAYS_INLINE_ATTRIBUTE {
        zero_tie |= tiled_run<kWidth(), kTaps>(values + i, taps + i, n, out + x0, best_tap + x0,
                                               best_j + x0);
      },
      [&](auto kStride, int64_t i, int64_t x0, int64_t n, int32_t j) C10_ALWAYS_INLINE_ATTRIBUTE {
        const int64_t s = last.regular_stride;
        if (j == 0) {
          start_run<kStride(), kTaps>(values + i, taps + i, s, n, out + x0, best_tap + x0,
                                      best_j + x0);
        } else {
          zero_tie |= merge_run<kStride(), kTaps>(values + i, taps + i, s, n, j, out + x0,
                                                  best_tap + x0, best_j + x0);
        }
      });
  return zero_tie != 0;
}

// Vertical step of the max: per element of the row's span, the first maximum (last NaN) over
// the outer taps in their order, in b.acc (with kTaps, the winning outer tap in b.tap); a
// row with one outer tap is its own input row.
template <bool kTaps, typename scalar_t>
C10_ALWAYS_INLINE const scalar_t* vertical_max(const scalar_t* plane, const int64_t* tap_rows,
                                               int32_t rows, const DimTaps& last,
                                               RowBuffers<scalar_t>& b) {
  const int64_t lo = last.span_begin, len = last.span_end - lo;
  if (rows == 1) return plane + tap_rows[0] + lo;
  fold_rows(rows, [&](auto kRows, auto kFirst, int32_t t) C10_ALWAYS_INLINE_ATTRIBUTE {
    auto row = [&](int32_t r) C10_ALWAYS_INLINE_ATTRIBUTE {
      return r < kRows() ? plane + tap_rows[t + r] + lo : nullptr;
    };
    max_fold<kRows(), kFirst(), kTaps>(row(0), row(1), row(2), row(3), t, len, b.acc.data(),
                                       b.tap.data());
  });
  return b.acc.data();
}

// Max over one output row's windows, written to out, and flat indices to index. tap_rows
// address the row's input rows from `plane`, which is the (b, c) plane `origin` shifted along
// a run of rows (the indices are relative to origin).
template <typename scalar_t>
C10_ALWAYS_INLINE void max_row(const scalar_t* origin, const scalar_t* plane,
                               const int64_t* tap_rows, int32_t rows, const DimTaps& last,
                               RowBuffers<scalar_t>& b, scalar_t* out, int64_t* index) {
  const scalar_t* values = vertical_max<true>(plane, tap_rows, rows, last, b);
  const int32_t* taps = rows > 1 ? b.tap.data() : b.zero_tap.data();
  // horizontal: merge each window's candidates in inner order, straight into `out`
  horizontal_max<true>(values, taps, last, b, out);
  flat_indices(tap_rows, b.best_tap.data(), last.first.data(), b.best_j.data(), last.step,
               plane - origin, last.out_size, index);
}

// The values alone, without taps to track: per element the maximum over the outer taps, then
// over each window along the last dim. The value equals torch's first maximum in row-major
// order except possibly for the sign of a zero, so if +0 and -0 tied in some window (rare),
// the row's windows whose maximum is a zero are redone in row-major order.
template <typename scalar_t>
C10_ALWAYS_INLINE void max_row_values(const scalar_t* plane, const int64_t* tap_rows,
                                      int32_t rows, const DimTaps& last,
                                      RowBuffers<scalar_t>& b, scalar_t* out) {
  const scalar_t* values = vertical_max<false>(plane, tap_rows, rows, last, b);
  if (!horizontal_max<false>(values, b.zero_tap.data(), last, b, out)) return;
  for (int64_t x = 0; x < last.out_size; ++x) {
    if (out[x] != scalar_t(0)) continue;
    scalar_t best = plane[tap_rows[0] + last.first[x]];
    for (int32_t t = 0; t < rows; ++t) {
      for (int64_t j = 0; j < last.count[x]; ++j) {
        const scalar_t v = plane[tap_rows[t] + last.first[x] + j * last.step];
        best = max_pool_replaces(v, best) ? v : best;
      }
    }
    out[x] = best;
  }
}

template <typename scalar_t>
C10_ALWAYS_INLINE void avg_row(const scalar_t* plane, const int64_t* tap_rows, int32_t rows,
                              const DimTaps& last, int64_t outer_divisor,
                              std::optional<int64_t> divisor_override,
                              RowBuffers<at::opmath_type<scalar_t>>& b, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t lo = last.span_begin, len = last.span_end - lo, step = last.step;
  acc_t* acc = b.acc.data();
  fold_rows(rows, [&](auto kRows, auto kFirst, int32_t t) C10_ALWAYS_INLINE_ATTRIBUTE {
    auto row = [&](int32_t r) C10_ALWAYS_INLINE_ATTRIBUTE {  // vertical
      return r < kRows() ? plane + tap_rows[t + r] + lo : nullptr;
    };
    sum_fold<kRows(), kFirst()>(row(0), row(1), row(2), row(3), len, acc);
  });
  acc_t* sum = b.sum.data();
  std::fill(sum, sum + last.out_size, acc_t(0));
  for (int64_t x = 0; x < last.out_size; ++x) {  // horizontal, outside the regular run
    if (x == last.regular_begin) x = last.regular_end;
    if (x >= last.out_size) break;
    for (int64_t c = 0; c < last.count[x]; ++c) sum[x] += acc[last.first[x] - lo + c * step];
  }
  for_regular_run(
      last, nullptr,
      [&](auto kStride, int64_t i, int64_t x0, int64_t n, int32_t) C10_ALWAYS_INLINE_ATTRIBUTE {
        sum_run<kStride()>(acc + i, last.regular_stride, n, sum + x0);
      });
  divide(sum, b.divisors(last, outer_divisor, divisor_override), last.out_size, out);
}

// Adds grad_row's shares (grad / divisor) to the elements of its windows along the last
// dim: share[i - span_begin] for input coordinate i.
template <typename scalar_t>
C10_ALWAYS_INLINE void spread_row(const scalar_t* grad_row, const DimTaps& last,
                                  const at::opmath_type<scalar_t>* __restrict divisor,
                                  RowBuffers<at::opmath_type<scalar_t>>& b,
                                  at::opmath_type<scalar_t>* share) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t lo = last.span_begin, step = last.step;
  acc_t* grad = b.sum.data();
  for (int64_t x = 0; x < last.out_size; ++x) {
    grad[x] = static_cast<acc_t>(grad_row[x]) / divisor[x];
  }
  for (int64_t x = 0; x < last.out_size; ++x) {  // outside the regular run
    if (x == last.regular_begin) x = last.regular_end;
    if (x >= last.out_size) break;
    for (int64_t c = 0; c < last.count[x]; ++c) share[last.first[x] - lo + c * step] += grad[x];
  }
  for_regular_run(
      last,
      [&](auto kWidth, int64_t i, int64_t x0, int64_t n) C10_ALWAYS_INLINE_ATTRIBUTE {
        tiled_spread_run<kWidth()>(grad + x0, n, share + i);
      },
      [&](auto kStride, int64_t i, int64_t x0, int64_t n, int32_t) C10_ALWAYS_INLINE_ATTRIBUTE {
        spread_run<kStride()>(grad + x0, last.regular_stride, n, share + i);
      });
}

// ---- runs of rows: one call per run of rows that share their window shape (RowWalker) ------

// Indices cost the max kernel a tap per element and a tap-aware merge: rows without them
// (a forward whose indices nobody wants) take max_row_values.
template <typename scalar_t>
NDOPS_ROW_KERNEL void max_rows(const scalar_t* plane, const int64_t* tap_rows, int32_t taps,
                               int64_t count, int64_t shift, const DimTaps& last,
                               RowBuffers<scalar_t>& b, scalar_t* out, int64_t* index) {
  const int64_t width = last.out_size;
  for (int64_t r = 0; r < count; ++r) {
    if (index == nullptr) {
      max_row_values(plane + r * shift, tap_rows, taps, last, b, out + r * width);
    } else {
      max_row(plane, plane + r * shift, tap_rows, taps, last, b, out + r * width,
              index + r * width);
    }
  }
}

template <typename scalar_t>
NDOPS_ROW_KERNEL void avg_rows(const scalar_t* plane, const int64_t* tap_rows, int32_t taps,
                               int64_t count, int64_t shift, const DimTaps& last,
                               int64_t outer_divisor, std::optional<int64_t> divisor_override,
                               RowBuffers<at::opmath_type<scalar_t>>& b, scalar_t* out) {
  for (int64_t r = 0; r < count; ++r) {
    avg_row(plane + r * shift, tap_rows, taps, last, outer_divisor, divisor_override, b,
            out + r * last.out_size);
  }
}

// ---- drivers ---------------------------------------------------------------------------------

void check_tap_rows(const BoxPool& pool) {
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < pool.dims.size(); ++d) {
    rows *= std::max<int64_t>(pool.dims[d].max_count(), 1);
    TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "ndops pooling: a window spans ",
                "more than 2^31 - 1 rows of the last spatial dim");
  }
}

template <bool kMax, typename scalar_t>
void forward_rows(const scalar_t* in, scalar_t* out, int64_t* index, const BoxPool& pool) {
  using buffer_t = std::conditional_t<kMax, scalar_t, at::opmath_type<scalar_t>>;
  const DimTaps& last = pool.dims.back();
  const int64_t in_plane = plane_size(pool.dims, false), width = last.out_size;
  const int64_t rows = pool.planes * (plane_size(pool.dims, true) / width);
  at::parallel_for(0, rows, tasks_grain(row_work(pool)), [&](int64_t begin, int64_t end) {
    RowBuffers<buffer_t> buffers(last);
    RowWalker walker(pool, begin);
    for (int64_t row = begin, count = 0; row < end; row += count, walker.skip(count)) {
      count = walker.run_length(end - row);
      const scalar_t* plane = in + walker.plane() * in_plane;
      if constexpr (kMax) {
        max_rows(plane, walker.tap_rows(), walker.tap_count(), count, walker.shift(), last,
                 buffers, out + row * width, index == nullptr ? nullptr : index + row * width);
      } else {
        avg_rows(plane, walker.tap_rows(), walker.tap_count(), count, walker.shift(), last,
                 walker.outer_divisor(), pool.divisor_override, buffers, out + row * width);
      }
    }
  });
}

// The average's backward works on slabs: the last two spatial dims (the last one for N = 1)
// of one (b, c) plane at fixed outer coordinates. Spread slab s (an output slab) is
//   sum over its output rows o of: the row's shares spread along the last dim (spread_row),
//   added to every row of the slab that o's window reads along dim N - 2,
// over the window's span [lo, lo + span) in each of the two dims; an input slab is the sum of
// the spread slabs of the output slabs whose windows read it along the outer dims.
struct SlabGeometry {
  int outer = 0;                     // dims before the slab
  const DimTaps* row_dim = nullptr;  // dim N - 2 (none for N = 1)
  int64_t row_lo = 0, rows = 1;      // the span of dim N - 2 (one row for N = 1)
  int64_t in_rows = 1, out_rows = 1, row_step = 1;
  int64_t lo = 0, span = 0;     // the span of the last dim
  bool covers_slab = false;     // the spans are the whole slab: no zero margins
  int64_t size() const { return rows * span; }

  explicit SlabGeometry(const BoxPool& pool) {
    const int n = static_cast<int>(pool.dims.size());
    outer = std::max(n - 2, 0);
    if (n >= 2) {
      const DimTaps& dim = pool.dims[n - 2];
      row_dim = &dim;
      row_lo = dim.span_begin;
      rows = dim.span_end - dim.span_begin;
      in_rows = dim.in_size;
      out_rows = dim.out_size;
      row_step = dim.step;
    }
    lo = pool.dims.back().span_begin;
    span = pool.dims.back().span_end - lo;
    covers_slab = row_lo == 0 && rows == in_rows && lo == 0 && span == pool.dims.back().in_size;
  }
};

// One output slab's spread slab (see SlabGeometry) from its grad rows, into `slab`.
template <typename scalar_t>
NDOPS_ROW_KERNEL void spread_slab(const scalar_t* grad_rows, const BoxPool& pool,
                                  const SlabGeometry& g, int64_t outer_divisor,
                                  RowBuffers<at::opmath_type<scalar_t>>& b,
                                  at::opmath_type<scalar_t>* slab) {
  using acc_t = at::opmath_type<scalar_t>;
  const DimTaps& last = pool.dims.back();
  const DimTaps* row_dim = g.row_dim;
  acc_t* share = b.acc.data();
  std::fill(slab, slab + g.size(), acc_t(0));
  for (int64_t o = 0; o < g.out_rows; ++o) {
    const int64_t divisor = outer_divisor * (row_dim ? row_dim->divisor[o] : 1);
    std::fill(share, share + g.span, acc_t(0));
    spread_row(grad_rows + o * last.out_size, last,
               b.divisors(last, divisor, pool.divisor_override), b, share);
    const int64_t first = row_dim ? row_dim->first[o] - g.row_lo : 0;
    const int64_t count = row_dim ? row_dim->count[o] : 1;
    for (int64_t j = 0; j < count; ++j) {
      acc_t* __restrict target = slab + (first + j * g.row_step) * g.span;
      const acc_t* __restrict source = share;
      for (int64_t i = 0; i < g.span; ++i) target[i] += source[i];
    }
  }
}

// An input slab (in_rows rows of in_size, contiguous) = the sum of the spread slabs at
// spread + slabs[r] * g.size(), r < count, zero outside their spans.
template <typename scalar_t, typename acc_t>
NDOPS_ROW_KERNEL void store_slab_sum(const acc_t* spread, const int64_t* slabs, int64_t count,
                                     const SlabGeometry& g, int64_t in_size, acc_t* sum,
                                     scalar_t* target) {
  const int64_t size = g.size();
  if (count > 1) {
    std::copy(spread + slabs[0] * size, spread + slabs[0] * size + size, sum);
    for (int64_t r = 1; r < count; ++r) {
      const acc_t* __restrict source = spread + slabs[r] * size;
      acc_t* __restrict acc = sum;
      for (int64_t i = 0; i < size; ++i) acc[i] += source[i];
    }
  }
  const acc_t* data = count == 1 ? spread + slabs[0] * size : sum;
  if (count > 0 && g.covers_slab) {
    scalar_t* __restrict out = target;  // one contiguous copy
    const acc_t* __restrict source = data;
    for (int64_t i = 0; i < size; ++i) out[i] = static_cast<scalar_t>(source[i]);
    return;
  }
  for (int64_t row = 0; row < g.in_rows; ++row) {
    scalar_t* __restrict out = target + row * in_size;
    const int64_t r = row - g.row_lo;
    if (count == 0 || r < 0 || r >= g.rows) {
      std::fill(out, out + in_size, scalar_t(0));
      continue;
    }
    std::fill(out, out + g.lo, scalar_t(0));
    const acc_t* __restrict source = data + r * g.span;
    for (int64_t i = 0; i < g.span; ++i) out[g.lo + i] = static_cast<scalar_t>(source[i]);
    std::fill(out + g.lo + g.span, out + in_size, scalar_t(0));
  }
}

// For one dim, the outputs whose windows read each input coordinate i, in increasing order:
// list[begin[i], begin[i + 1]) (the transpose of the dim's tap table).
struct DimReaders {
  std::vector<int64_t> begin, list;
  explicit DimReaders(const DimTaps& d) : begin(d.in_size + 1, 0) {
    for (int64_t o = 0; o < d.out_size; ++o) {
      for (int64_t j = 0; j < d.count[o]; ++j) ++begin[d.first[o] + j * d.step + 1];
    }
    std::partial_sum(begin.begin(), begin.end(), begin.begin());
    list.resize(begin.back());
    std::vector<int64_t> next(begin.begin(), begin.end() - 1);
    for (int64_t o = 0; o < d.out_size; ++o) {
      for (int64_t j = 0; j < d.count[o]; ++j) list[next[d.first[o] + j * d.step]++] = o;
    }
  }
};

// The output slabs (row-major numbers within the plane) whose windows read the input slab at
// outer coordinates (i_0, ..., i_{outer-1}), in increasing order (a fixed order of summation).
class ReaderSlabs {
 public:
  ReaderSlabs(const BoxPool& pool, int outer) : outer_(outer) {
    std::vector<int64_t> out_sizes;
    for (int d = 0; d < outer_; ++d) {
      dims_.emplace_back(pool.dims[d]);
      out_sizes.push_back(pool.dims[d].out_size);
    }
    stride_.resize(outer_);
    contiguous_strides(out_sizes.data(), outer_, stride_.data());
  }
  void find(const int64_t* in_coords) {
    slabs_.assign(1, 0);
    for (int d = 0; d < outer_; ++d) {
      const DimReaders& dim = dims_[d];
      grown_.clear();
      for (const int64_t slab : slabs_) {
        for (int64_t k = dim.begin[in_coords[d]]; k < dim.begin[in_coords[d] + 1]; ++k) {
          grown_.push_back(slab + dim.list[k] * stride_[d]);
        }
      }
      slabs_.swap(grown_);
    }
  }
  const int64_t* slabs() const { return slabs_.data(); }
  int64_t count() const { return static_cast<int64_t>(slabs_.size()); }

 private:
  const int outer_;
  std::vector<DimReaders> dims_;
  std::vector<int64_t> stride_, slabs_, grown_;
};

template <typename scalar_t>
void backward_planes(const scalar_t* grad_output, scalar_t* grad_input, const BoxPool& pool) {
  using acc_t = at::opmath_type<scalar_t>;
  const DimTaps& last = pool.dims.back();
  const SlabGeometry g(pool);
  std::vector<int64_t> in_sizes, out_sizes;
  for (int d = 0; d < g.outer; ++d) {
    in_sizes.push_back(pool.dims[d].in_size);
    out_sizes.push_back(pool.dims[d].out_size);
  }
  const int64_t in_plane = plane_size(pool.dims, false), out_plane = plane_size(pool.dims, true);
  const int64_t in_slab = g.in_rows * last.in_size, out_slab = g.out_rows * last.out_size;
  const int64_t in_slabs = in_plane / in_slab, out_slabs = out_plane / out_slab;
  at::parallel_for(0, pool.planes, tasks_grain(out_plane * row_work(pool) / last.out_size),
                   [&](int64_t begin, int64_t end) {
    RowBuffers<acc_t> buffers(last);
    ReaderSlabs readers(pool, g.outer);
    std::vector<acc_t> spread(out_slabs * g.size()), sum(g.size());
    std::vector<int64_t> coords(std::max(g.outer, 1));
    for (int64_t plane = begin; plane < end; ++plane) {
      std::fill(coords.begin(), coords.end(), 0);
      for (int64_t s = 0; s < out_slabs; ++s) {
        int64_t outer_divisor = 1;
        for (int d = 0; d < g.outer; ++d) outer_divisor *= pool.dims[d].divisor[coords[d]];
        spread_slab(grad_output + plane * out_plane + s * out_slab, pool, g, outer_divisor,
                    buffers, spread.data() + s * g.size());
        advance_index(coords.data(), out_sizes.data(), g.outer);
      }
      std::fill(coords.begin(), coords.end(), 0);
      for (int64_t s = 0; s < in_slabs; ++s) {
        readers.find(coords.data());
        store_slab_sum(spread.data(), readers.slabs(), readers.count(), g, last.in_size,
                       sum.data(), grad_input + plane * in_plane + s * in_slab);
        advance_index(coords.data(), in_sizes.data(), g.outer);
      }
    }
  });
}

}  // namespace

void box_max_forward(const at::Tensor& input, const BoxPool& pool, const at::Tensor& values,
                     const at::Tensor* indices) {
  check_tap_rows(pool);
  const at::Tensor in = input.contiguous();
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "max_pool", [&] {
    forward_rows<true>(in.const_data_ptr<scalar_t>(), values.mutable_data_ptr<scalar_t>(),
                       indices == nullptr ? nullptr : indices->mutable_data_ptr<int64_t>(),
                       pool);
  });
}

void box_avg_forward(const at::Tensor& input, const BoxPool& pool, const at::Tensor& out) {
  check_tap_rows(pool);
  const at::Tensor in = input.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "avg_pool", [&] {
    forward_rows<false>(in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                        nullptr, pool);
  });
}

void box_avg_backward(const at::Tensor& grad_output, const BoxPool& pool,
                      const at::Tensor& grad_input) {
  check_tap_rows(pool);
  const at::Tensor grad = grad_output.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "avg_pool_backward", [&] {
        backward_planes(grad.const_data_ptr<scalar_t>(),
                        grad_input.mutable_data_ptr<scalar_t>(), pool);
      });
}

}  // namespace pool_cpu
}  // namespace ndops
