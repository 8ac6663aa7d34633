// CPU kernels of interpolate_nd and _interpolate_nd_backward (schemas: csrc/ndops.cpp; per-dim
// source coordinates: csrc/common/interp.h; tables and loops: csrc/cpu/interp_levels.h) for the
// modes nearest, nearest-exact and linear (multilinear), N interpolated dims, N at run time.
//
// Interpolation is separable, so both kernels resample one dim at a time, in "levels", each a
// contiguous combination of two slabs of the level before (one for nearest). With outer dims
// 0..M-1 (M = N - 1) and the last dim's table applied first:
//   R(i)  input slab i of dim 0 with its last dim resampled (a gather), shape
//         (in_1, ..., in_{N-2}, out_last), cached for the two slabs in use;
//   S_1   = w0 R(i0) + w1 R(i1) through the taps (i0, i1, w0, w1) of dim 0 at o_0;
//   S_L   = w0 S_{L-1}[i0] + w1 S_{L-1}[i1] through the taps of dim L-1 at o_{L-1};
//   S_M   = the output row at (o_0, ..., o_{M-1}).
// Walking the output rows in order, a level is recomputed only when its coordinates change,
// so an output element costs a few contiguous (vectorized) multiply-adds whatever N is, and a
// level that is a copy (one tap of weight 1) is a view of the level before.
// - forward: parallel over (plane, output row); each output element is written once.
// - backward: the adjoint, levels run backwards (accumulate, then flush a level into the one
//   above once its coordinates are done); the innermost outer level is gathered instead (each
//   of its rows summed once from the grad rows that read it, through the transposed taps) and
//   added straight into the level above.
//   Each task owns a range of input slabs of dim 0 and gathers every output row that reads
//   them: no two threads write one element, each grad_input element is written once, and the
//   sums run in an order that does not depend on the number of threads (deterministic).
// Channels-last input (B, C, *spatial) runs as the contiguous (B, *spatial, C) with C an extra,
// unchanged last dim: every level is then a plain multiply-add over channels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/interp_shape.h"
#include "common/nd_index.h"
#include "cpu/huge_pages.h"
#include "cpu/interp_levels.h"

// The row loops are compiled once per vector width and the widest one the CPU runs is picked
// at load time (the extension itself targets baseline x86-64); the loops of interp_levels.h
// are inlined into them.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define NDOPS_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NDOPS_VECTOR_CLONES
#endif
// Lambdas inside those loops must be inlined into each copy too.
#if defined(__GNUC__)
#define NDOPS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define NDOPS_INLINE_LAMBDA
#endif

namespace ndops {
namespace interp_cpu {
namespace {

// Step `coords` to the next row-major position; returns the position that was incremented
// (every later one wrapped to 0), or -1 past the end.
int advance_odometer(int64_t* coords, const int64_t* sizes, int ndim) {
  for (int d = ndim - 1; d >= 0; --d) {
    if (++coords[d] < sizes[d]) return d;
    coords[d] = 0;
  }
  return -1;
}

// R(i) of one plane, computed unless cached; R(keep) stays cached.
template <typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE const acc_t* cached_r(SlabPair<acc_t>& cache, const scalar_t* in_plane,
                                        int64_t plane, int64_t i, int64_t keep,
                                        const Levels<acc_t>& lv) {
  const int64_t key = plane * lv.in0 + i;
  int slot = cache.find(key);
  if (slot < 0) {
    slot = cache.id[0] == plane * lv.in0 + keep ? 1 : 0;
    cache.id[slot] = key;
    resample_rows(cache.data[slot].data(), in_plane + i * lv.in_slab0(), lv.rows1, lv.last);
  }
  return cache.data[slot].data();
}

// Output rows [begin, end) of the row space (plane, o_0, ..., o_{M-1}), M >= 1.
template <typename scalar_t, typename acc_t>
NDOPS_VECTOR_CLONES void forward_rows(const scalar_t* in, scalar_t* out,
                                      const Levels<acc_t>& lv, int64_t begin, int64_t end) {
  const int M = lv.outer;
  std::vector<int64_t> row_space{lv.planes};
  row_space.insert(row_space.end(), lv.out_sizes.begin(), lv.out_sizes.end() - 1);
  std::vector<int64_t> coords(M + 1);
  SlabPair<acc_t> r_cache(lv.r_size());
  std::vector<std::vector<acc_t>> buffers(M);
  std::vector<const acc_t*> level(M);  // level[L]: S_L, its own buffer or a view of S_{L-1}
  for (int L = 1; L < M; ++L) buffers[L].resize(lv.slab[L]);
  // The slabs that the taps of dim L-1 at coords[L] combine into S_L (L = 1: R(i0), R(i1)).
  auto sources = [&](int L, const Tap<acc_t>& t, const acc_t** a,
                     const acc_t** b) NDOPS_INLINE_LAMBDA {
    if (L == 1) {
      const scalar_t* in_plane = in + coords[0] * lv.in_plane;
      *a = cached_r(r_cache, in_plane, coords[0], t.index0, t.index1, lv);
      *b = t.count == 2 ? cached_r(r_cache, in_plane, coords[0], t.index1, t.index0, lv) : *a;
    } else {
      *a = level[L - 1] + t.index0 * lv.slab[L];
      *b = level[L - 1] + t.index1 * lv.slab[L];
    }
  };

  unravel_index(begin, row_space.data(), M + 1, coords.data());
  int first = 1;  // the first level to recompute; S_L depends on (plane, o_0, ..., o_{L-1})
  for (int64_t row = begin; row < end;) {
    for (int L = first; L < M; ++L) {
      const Tap<acc_t>& t = lv.taps[L - 1][coords[L]];
      const acc_t *a, *b;
      sources(L, t, &a, &b);
      if (t.is_copy()) {
        level[L] = a;
      } else {
        blend(buffers[L].data(), a, b, t, lv.slab[L]);
        level[L] = buffers[L].data();
      }
    }
    // S_M, the output rows, for the run of o_{M-1} that shares the levels above.
    const int64_t o_first = coords[M];
    const int64_t run = std::min(lv.out_sizes[M - 1] - o_first, end - row);
    if (M == 1) {
      for (int64_t o = o_first; o < o_first + run; ++o) {
        coords[M] = o;
        const Tap<acc_t>& t = lv.taps[0][o];
        const acc_t *a, *b;
        sources(1, t, &a, &b);
        blend(out + (row + o - o_first) * lv.out_len, a, b, t, lv.out_len);
      }
    } else {  // short rows: the loop's invariants in locals, not re-read through the captures
      const acc_t* above = level[M - 1];
      const Tap<acc_t>* taps = lv.taps[M - 1].data();
      const int64_t stride = lv.slab[M], n = lv.out_len;
      scalar_t* dst = out + row * n;
      for (int64_t o = o_first; o < o_first + run; ++o, dst += n) {
        const Tap<acc_t>& t = taps[o];
        blend(dst, above + t.index0 * stride, above + t.index1 * stride, t, n);
      }
      coords[M] = o_first + run - 1;
    }
    row += run;
    first = std::max(1, advance_odometer(coords.data(), row_space.data(), M + 1));
  }
}

template <typename scalar_t, typename acc_t>
void interpolate_forward(const scalar_t* in, scalar_t* out, const Levels<acc_t>& lv) {
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / lv.out_len);
  if (lv.outer == 0) {  // N = 1: each plane is one row
    at::parallel_for(0, lv.planes, grain, [&](int64_t begin, int64_t end) {
      resample_rows(out + begin * lv.out_len, in + begin * lv.in_len, end - begin, lv.last);
    });
    return;
  }
  at::parallel_for(0, lv.planes * (lv.out_plane / lv.out_len), grain,
                   [&](int64_t begin, int64_t end) {
                     forward_rows<scalar_t, acc_t>(in, out, lv, begin, end);
                   });
}

// The adjoint of levels 2..M for the output rows at (plane, o_0), M >= 2: the adjoint of
// S_1, returned in acc[1]. coords[1..M-2]: scratch for (o_1, ..., o_{M-2}).
template <typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE const acc_t* unlevel_rows(const scalar_t* grad_rows, const Levels<acc_t>& lv,
                                            std::vector<std::vector<acc_t>>& acc,
                                            std::vector<int64_t>& coords) {
  const int M = lv.outer;
  const int64_t run = lv.out_sizes[M - 1];  // the rows of one sweep of o_{M-1}
  const int64_t sweeps = product(lv.out_sizes.begin() + 1, lv.out_sizes.end() - 2);
  for (int L = 1; L <= M - 2; ++L) std::fill(acc[L].begin(), acc[L].end(), acc_t(0));
  std::fill(coords.begin(), coords.end(), 0);
  for (int64_t sweep = 0; sweep < sweeps; ++sweep, grad_rows += run * lv.out_len) {
    // The adjoint of S_{M-1} from this sweep's rows alone, gathered whole: for M = 2 it is
    // S_1's; else it goes straight into S_{M-2}'s through the taps of dim M-2 at o_{M-2}.
    if (M == 2) {
      gather_rows<RowSink::kWrite>(grad_rows, lv.inner_readers, lv.out_len, acc[1].data(),
                                   acc[1].data(), acc_t(1), acc_t(0));
    } else {
      const Tap<acc_t>& t = lv.taps[M - 2][coords[M - 2]];
      acc_t* into = acc[M - 2].data();
      if (t.count == 2) {
        gather_rows<RowSink::kTwoTaps>(grad_rows, lv.inner_readers, lv.out_len,
                                       into + t.index0 * lv.slab[M - 1],
                                       into + t.index1 * lv.slab[M - 1], t.weight0, t.weight1);
      } else {
        gather_rows<RowSink::kOneTap>(grad_rows, lv.inner_readers, lv.out_len,
                                      into + t.index0 * lv.slab[M - 1],
                                      into + t.index0 * lv.slab[M - 1], t.weight0, acc_t(0));
      }
    }
    // The adjoint of S_L is complete once o_L, ..., o_{M-1} are at their last value: flush it
    // into the adjoint of S_{L-1} through the taps of dim L-1 at o_{L-1}.
    for (int L = M - 2; L >= 2 && coords[L] == lv.out_sizes[L] - 1; --L) {
      add_taps(acc[L - 1].data(), acc[L].data(), lv.taps[L - 1][coords[L - 1]], lv.slab[L]);
      std::fill(acc[L].begin(), acc[L].end(), acc_t(0));
    }
    advance_odometer(coords.data() + 1, lv.out_sizes.data() + 1, M - 2);
  }
  return acc[1].data();
}

// The input slabs of dim 0 in [begin, end) of the space (plane, i), M >= 1.
template <typename scalar_t, typename acc_t>
NDOPS_VECTOR_CLONES void backward_slabs(const scalar_t* grad_out, scalar_t* grad_in,
                                        const Levels<acc_t>& lv, int64_t begin, int64_t end) {
  const int M = lv.outer;
  const int64_t in0 = lv.in0, slab0 = lv.in_slab0();
  const int64_t grad_per_o0 = lv.out_plane / lv.out_sizes[0];
  // acc[L]: the adjoint of S_L, L = 1 .. M-2 (S_{M-1}'s is never held; for M = 2, S_1's).
  std::vector<std::vector<acc_t>> acc(M);
  for (int L = 1; L <= (M == 2 ? 1 : M - 2); ++L) acc[L].resize(lv.slab[L]);
  std::vector<int64_t> coords(M);
  std::vector<acc_t> row_acc(lv.in_len);
  SlabPair<acc_t> r_adj(lv.r_size());  // the adjoints of R(i), keyed by i

  for (int64_t plane = begin / in0; plane * in0 < end; ++plane) {
    const int64_t lo = std::max(begin, plane * in0) - plane * in0;
    const int64_t hi = std::min(end, (plane + 1) * in0) - plane * in0;
    scalar_t* grad_plane = grad_in + plane * lv.in_plane;
    int64_t unwritten = lo;  // this task's slabs [lo, unwritten) are written
    // Write the slab held in `slot` (the adjoint of its last-dim resampling) if this task owns
    // it, after zeroing the skipped slabs before it (read by no output); free the slot.
    auto flush = [&](int slot) NDOPS_INLINE_LAMBDA {
      const int64_t i = r_adj.id[slot];
      r_adj.id[slot] = -1;
      if (i < lo || i >= hi) return;
      std::fill(grad_plane + unwritten * slab0, grad_plane + i * slab0, scalar_t(0));
      unresample_rows(grad_plane + i * slab0, r_adj.data[slot].data(), lv.rows1, lv.last,
                      row_acc.data());
      unwritten = i + 1;
    };
    auto flush_below = [&](int64_t limit) NDOPS_INLINE_LAMBDA {  // lowest slab first
      const int low = r_adj.id[1] < 0 || (r_adj.id[0] >= 0 && r_adj.id[0] < r_adj.id[1]) ? 0 : 1;
      for (const int slot : {low, 1 - low}) {
        if (r_adj.id[slot] >= 0 && r_adj.id[slot] < limit) flush(slot);
      }
    };
    // o_0 in order: the taps only move forward, so a held slab below index0 is complete.
    for (int64_t o0 = 0; o0 < lv.out_sizes[0]; ++o0) {
      const Tap<acc_t>& t = lv.taps[0][o0];
      if (t.index0 >= hi) break;
      if ((t.count == 2 ? t.index1 : t.index0) < lo) continue;
      flush_below(t.index0);
      // The adjoint of S_1 at o_0 (for M = 1, S_1 is the output row: the grad row).
      const scalar_t* grad_rows = grad_out + plane * lv.out_plane + o0 * grad_per_o0;
      const acc_t* v = M == 1 ? nullptr : unlevel_rows(grad_rows, lv, acc, coords);
      for (int tap = 0; tap < t.count; ++tap) {
        const int64_t i = tap == 0 ? t.index0 : t.index1;
        int slot = r_adj.find(i);
        const bool first_term = slot < 0;  // written, not added to zeros
        if (first_term) {  // at most two slabs are held: index0 and index1
          slot = r_adj.id[0] < 0 ? 0 : 1;
          r_adj.id[slot] = i;
        }
        const acc_t w = tap == 0 ? t.weight0 : t.weight1;
        acc_t* into = r_adj.data[slot].data();
        const auto take = [&](const auto* src) NDOPS_INLINE_LAMBDA {
          first_term ? add_scaled<false>(into, src, w, lv.r_size())
                     : add_scaled(into, src, w, lv.r_size());
        };
        v != nullptr ? take(v) : take(grad_rows);
      }
    }
    flush_below(in0);
    std::fill(grad_plane + unwritten * slab0, grad_plane + hi * slab0, scalar_t(0));
  }
}

template <typename scalar_t, typename acc_t>
void interpolate_backward(const scalar_t* grad_out, scalar_t* grad_in, const Levels<acc_t>& lv) {
  if (lv.outer == 0) {  // N = 1: each plane is one row
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / lv.out_len);
    at::parallel_for(0, lv.planes, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> row_acc(lv.in_len), row(lv.out_len);
      for (int64_t p = begin; p < end; ++p) {
        const scalar_t* g = grad_out + p * lv.out_len;
        std::transform(g, g + lv.out_len, row.begin(), [](scalar_t v) { return acc_t(v); });
        unresample_rows(grad_in + p * lv.in_len, row.data(), 1, lv.last, row_acc.data());
      }
    });
    return;
  }
  const int64_t grad_per_slab = std::max<int64_t>(1, lv.out_plane / lv.in0);
  at::parallel_for(0, lv.planes * lv.in0, std::max<int64_t>(1, (int64_t{1} << 15) / grad_per_slab),
                   [&](int64_t begin, int64_t end) {
                     backward_slabs<scalar_t, acc_t>(grad_out, grad_in, lv, begin, end);
                   });
}

// The resample of interpolate_nd_host (csrc/common/interp_shape.h), which registers it.
at::Tensor forward_contiguous(const at::Tensor& in, const InterpGeometry& g) {
  at::Tensor out =
      empty_with_huge_pages(interp_output_sizes(in.sizes(), g), in.options(), in.nbytes());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, in.scalar_type(),
                                  "interpolate_nd", [&] {
    // Coordinates in double for double, else in float (uint8 too: nearest only).
    using index_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* src = in.const_data_ptr<scalar_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    if constexpr (std::is_same_v<scalar_t, uint8_t>) {
      interpolate_forward(src, dst, Levels<scalar_t>(g, index_t()));
    } else if (g.mode == InterpMode::kLinear) {
      using acc_t = at::opmath_type<scalar_t>;
      interpolate_forward(src, dst, Levels<acc_t>(g, index_t()));
    } else {  // the nearest modes copy: no conversion to and from the opmath type
      interpolate_forward(src, dst, Levels<scalar_t>(g, index_t()));
    }
  });
  return out;
}

at::Tensor backward_contiguous(const at::Tensor& grad, c10::IntArrayRef input_size,
                               const InterpGeometry& g) {
  at::Tensor grad_input = empty_with_huge_pages(input_size, grad.options(), grad.nbytes());
  if (grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                  "_interpolate_nd_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    interpolate_backward(grad.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(),
                         Levels<acc_t>(g, acc_t()));
  });
  return grad_input;
}

}  // namespace
}  // namespace interp_cpu
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CPU, m) {
  using namespace ndops::interp_cpu;
  m.impl("interpolate_nd", &ndops::interpolate_nd_host<forward_contiguous>);
  m.impl("_interpolate_nd_backward",
         &ndops::interpolate_nd_backward_host<backward_contiguous>);
}
