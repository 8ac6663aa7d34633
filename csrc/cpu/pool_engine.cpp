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
// The average's backward runs per (b, c) plane, so no two threads write one element: each
// output row spreads its shares along the last dim, then adds them to its outer tap rows.
#include "cpu/pool_engine.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/macros/Macros.h>

#include <limits>
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

int64_t tasks_grain(int64_t work_per_item) {
  return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(work_per_item, 1));
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

// Max over one output row's windows, written to out (and flat indices to index, if not
// null). tap_rows address the row's input rows from `plane`, which is the (b, c) plane
// `origin` shifted along a run of rows (the indices are relative to origin).
template <typename scalar_t>
C10_ALWAYS_INLINE void max_row(const scalar_t* origin, const scalar_t* plane,
                               const int64_t* tap_rows, int32_t rows, const DimTaps& last,
                               RowBuffers<scalar_t>& b, scalar_t* out, int64_t* index) {
  const int64_t lo = last.span_begin, len = last.span_end - lo, step = last.step;
  // vertical: per element, the first maximum (last NaN) over the outer taps, in their order
  const scalar_t* values = plane + tap_rows[0] + lo;
  const int32_t* taps = b.zero_tap.data();
  if (rows > 1) {
    fold_rows(rows, [&](auto kRows, auto kFirst, int32_t t) C10_ALWAYS_INLINE_ATTRIBUTE {
      auto row = [&](int32_t r) C10_ALWAYS_INLINE_ATTRIBUTE {
        return r < kRows() ? plane + tap_rows[t + r] + lo : nullptr;
      };
      max_fold<kRows(), kFirst()>(row(0), row(1), row(2), row(3), t, len, b.acc.data(),
                                  b.tap.data());
    });
    values = b.acc.data();
    taps = b.tap.data();
  }
  // horizontal: merge each window's candidates in inner order, straight into `out`
  int32_t* best_tap = b.best_tap.data();
  int32_t* best_j = b.best_j.data();
  for (int64_t x = 0; x < last.out_size; ++x) {  // windows outside the regular run
    if (x == last.regular_begin) x = last.regular_end;
    if (x >= last.out_size) break;
    const int64_t i = last.first[x] - lo;
    start_run<1>(values + i, taps + i, 1, 1, out + x, best_tap + x, best_j + x);
    for (int32_t j = 1; j < last.count[x]; ++j) {
      merge_run<1>(values + i + j * step, taps + i + j * step, 1, 1, j, out + x, best_tap + x,
                   best_j + x);
    }
  }
  with_static_stride(last.regular_stride, [&](auto kStride) C10_ALWAYS_INLINE_ATTRIBUTE {
    const int64_t x0 = last.regular_begin, n = last.regular_end - x0, s = last.regular_stride;
    const int64_t i = n > 0 ? last.regular_origin + x0 * s - lo : 0;
    start_run<kStride()>(values + i, taps + i, s, n, out + x0, best_tap + x0, best_j + x0);
    for (int32_t j = 1; j < last.regular_count; ++j) {
      merge_run<kStride()>(values + i + j * step, taps + i + j * step, s, n, j, out + x0,
                           best_tap + x0, best_j + x0);
    }
  });
  if (index != nullptr) {
    flat_indices(tap_rows, best_tap, last.first.data(), best_j, step, plane - origin,
                 last.out_size, index);
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
  with_static_stride(last.regular_stride, [&](auto kStride) C10_ALWAYS_INLINE_ATTRIBUTE {
    const int64_t x0 = last.regular_begin, n = last.regular_end - x0, s = last.regular_stride;
    const int64_t i = n > 0 ? last.regular_origin + x0 * s - lo : 0;
    for (int64_t j = 0; j < last.regular_count; ++j) {
      sum_run<kStride()>(acc + i + j * step, s, n, sum + x0);
    }
  });
  divide(sum, b.divisors(last, outer_divisor, divisor_override), last.out_size, out);
}

// Adds grad_row's shares (grad / divisor) to every element of its windows: along the last
// dim into `share`, then to each outer tap row of the plane's accumulator.
template <typename scalar_t>
C10_ALWAYS_INLINE void avg_backward_row(const scalar_t* grad_row, const int64_t* tap_rows,
                                       int32_t rows, const DimTaps& last, int64_t outer_divisor,
                                       std::optional<int64_t> divisor_override,
                                       RowBuffers<at::opmath_type<scalar_t>>& b,
                                       at::opmath_type<scalar_t>* plane) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t lo = last.span_begin, len = last.span_end - lo, step = last.step;
  acc_t* share = b.acc.data();
  acc_t* grad = b.sum.data();
  const acc_t* __restrict divisor = b.divisors(last, outer_divisor, divisor_override);
  for (int64_t x = 0; x < last.out_size; ++x) {
    grad[x] = static_cast<acc_t>(grad_row[x]) / divisor[x];
  }
  std::fill(share, share + len, acc_t(0));
  for (int64_t x = 0; x < last.out_size; ++x) {  // horizontal, outside the regular run
    if (x == last.regular_begin) x = last.regular_end;
    if (x >= last.out_size) break;
    for (int64_t c = 0; c < last.count[x]; ++c) share[last.first[x] - lo + c * step] += grad[x];
  }
  with_static_stride(last.regular_stride, [&](auto kStride) C10_ALWAYS_INLINE_ATTRIBUTE {
    const int64_t x0 = last.regular_begin, n = last.regular_end - x0, s = last.regular_stride;
    const int64_t i = n > 0 ? last.regular_origin + x0 * s - lo : 0;
    for (int64_t j = 0; j < last.regular_count; ++j) {
      spread_run<kStride()>(grad + x0, s, n, share + i + j * step);
    }
  });
  for (int32_t t = 0; t < rows; ++t) {  // vertical
    acc_t* __restrict target = plane + tap_rows[t] + lo;
    const acc_t* __restrict source = share;
    for (int64_t i = 0; i < len; ++i) target[i] += source[i];
  }
}

// ---- runs of rows: one call per run of rows that share their window shape (RowWalker) ------

template <typename scalar_t>
NDOPS_ROW_KERNEL void max_rows(const scalar_t* plane, const int64_t* tap_rows, int32_t taps,
                               int64_t count, int64_t shift, const DimTaps& last,
                               RowBuffers<scalar_t>& b, scalar_t* out, int64_t* index) {
  const int64_t width = last.out_size;
  for (int64_t r = 0; r < count; ++r) {
    max_row(plane, plane + r * shift, tap_rows, taps, last, b, out + r * width,
            index == nullptr ? nullptr : index + r * width);
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

template <typename scalar_t>
NDOPS_ROW_KERNEL void avg_backward_rows(const scalar_t* grad, const int64_t* tap_rows,
                                        int32_t taps, int64_t count, int64_t shift,
                                        const DimTaps& last, int64_t outer_divisor,
                                        std::optional<int64_t> divisor_override,
                                        RowBuffers<at::opmath_type<scalar_t>>& b,
                                        at::opmath_type<scalar_t>* plane) {
  for (int64_t r = 0; r < count; ++r) {
    avg_backward_row(grad + r * last.out_size, tap_rows, taps, last, outer_divisor,
                     divisor_override, b, plane + r * shift);
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

template <typename scalar_t>
void backward_planes(const scalar_t* grad_output, scalar_t* grad_input, const BoxPool& pool) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kInPlace = std::is_same_v<acc_t, scalar_t>;  // else via a float buffer
  const DimTaps& last = pool.dims.back();
  const int64_t in_plane = plane_size(pool.dims, false), out_plane = plane_size(pool.dims, true);
  const int64_t rows = out_plane / last.out_size;
  at::parallel_for(0, pool.planes, tasks_grain(rows * row_work(pool)), [&](int64_t begin,
                                                                           int64_t end) {
    RowBuffers<acc_t> buffers(last);
    std::vector<acc_t> converted(kInPlace ? 0 : in_plane);
    for (int64_t plane = begin; plane < end; ++plane) {
      scalar_t* target = grad_input + plane * in_plane;
      acc_t* acc = nullptr;
      if constexpr (kInPlace) {
        acc = target;
      } else {
        acc = converted.data();
      }
      ZeroAhead<acc_t> zero(acc, in_plane);
      RowWalker walker(pool, plane * rows);
      for (int64_t row = 0, count = 0; row < rows; row += count, walker.skip(count)) {
        count = walker.run_length(rows - row);
        if (walker.tap_count() == 0) continue;
        const int64_t last_row = walker.tap_rows()[walker.tap_count() - 1];  // the highest
        zero.reach(last_row + (count - 1) * walker.shift() + last.span_end);
        avg_backward_rows(grad_output + (plane * rows + row) * last.out_size, walker.tap_rows(),
                          walker.tap_count(), count, walker.shift(), last,
                          walker.outer_divisor(), pool.divisor_override, buffers, acc);
      }
      zero.finish();
      if constexpr (!kInPlace) {
        for (int64_t i = 0; i < in_plane; ++i) target[i] = static_cast<scalar_t>(acc[i]);
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
