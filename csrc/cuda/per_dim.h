// The per-element side of the CUDA kernels that is not CUDA-specific: per-dim kernel arguments
// passed by value, and the inverse tables through which the backward kernels gather. Plain
// C++ with C10_HOST_DEVICE functions (no CUDA headers), so the element functions built on it
// (csrc/cuda/*_elements.h) also compile for the host, where tests/test_cuda_host.py runs them
// against the CPU kernels.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <vector>

// Unrolls the loop that follows (over kMaxDims dims, most of them skipped at run time): nvcc's
// pragma in device code, GCC's where g++ compiles these headers for the host
// (tests/test_cuda_host.py); nothing in nvcc's host pass, which warns on either.
#if defined(__CUDA_ARCH__)
#define NDOPS_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#define NDOPS_UNROLL
#else
#define NDOPS_UNROLL _Pragma("GCC unroll 12")
#endif

namespace ndops {
namespace cuda {

// Spatial (or padded, or interpolated) dims a CUDA kernel takes: per-dim arguments travel by
// value in the kernel's parameters, and loops over dims are unrolled to this bound so that
// per-dim values stay in registers.
constexpr int kMaxDims = 12;

template <typename T>
struct PerDim {
  T v[kMaxDims];
};

template <typename T, typename Source>
PerDim<T> per_dim(const Source& values) {
  PerDim<T> out{};
  for (size_t d = 0; d < values.size(); ++d) out.v[d] = static_cast<T>(values[d]);
  return out;
}

// The planes a kernel maps one onto the other: per-dim input and output sizes, their element
// counts, and the input's row-major strides. The element functions' argument structs extend it.
struct PlaneArgs {
  int ndim = 0;
  int64_t in_plane = 1, out_plane = 1;
  PerDim<int64_t> in_sizes{}, out_sizes{}, in_strides{};
};

template <typename Sizes>
PlaneArgs plane_args(const Sizes& in_sizes, const Sizes& out_sizes) {
  PlaneArgs a;
  a.ndim = static_cast<int>(in_sizes.size());
  a.in_sizes = per_dim<int64_t>(in_sizes);
  a.out_sizes = per_dim<int64_t>(out_sizes);
  for (int d = a.ndim - 1; d >= 0; --d) {
    a.in_strides.v[d] = a.in_plane;
    a.in_plane *= in_sizes[d];
    a.out_plane *= out_sizes[d];
  }
  return a;
}

inline void check_dims(const char* op, int64_t ndim) {
  TORCH_CHECK(ndim <= kMaxDims, op, ": the CUDA kernels take at most ", kMaxDims,
              " spatial dims, got ", ndim);
}

// Per-dim tables inverting a map from output to input coordinates (output coordinate o of dim
// d reads some input coordinates j, each with a weight and an integer factor): backward
// kernels gather through them, so no two threads write one element and every sum runs in a
// fixed order (deterministic, no atomics). Flattened into one int64 table:
//   [begin_at.v[d] + j]      entry range start of input coordinate j of dim d (its end: + 1);
//   [outputs_at + e]         entry e's output coordinate (or its offset in the output plane);
//   [factors_at + e]         entry e's factor;
// and a table of weights, entry e at [e].
struct ReaderTables {
  int ndim = 0;
  PerDim<int64_t> begin_at{};
  int64_t outputs_at = 0, factors_at = 0;
  std::vector<int64_t> index;
  std::vector<double> weights;
};

class ReaderTablesBuilder {
 public:
  // Adds the next dim: taps(o, emit) calls emit(j, weight, factor) for each input coordinate j
  // that output coordinate o reads; `output_value(o)` is what an entry stores for o.
  template <typename Taps, typename OutputValue>
  void add_dim(int64_t in_size, int64_t out_size, const Taps& taps,
               const OutputValue& output_value) {
    std::vector<int64_t> begin(in_size + 1, 0);
    for (int64_t o = 0; o < out_size; ++o) {
      taps(o, [&](int64_t j, double, int64_t) { ++begin[j + 1]; });
    }
    for (int64_t j = 0; j < in_size; ++j) begin[j + 1] += begin[j];
    const int64_t base = static_cast<int64_t>(outputs_.size());
    outputs_.resize(base + begin[in_size]);
    weights_.resize(outputs_.size());
    factors_.resize(outputs_.size());
    std::vector<int64_t> cursor(begin.begin(), begin.end() - 1);
    for (int64_t o = 0; o < out_size; ++o) {
      taps(o, [&](int64_t j, double weight, int64_t factor) {
        const int64_t e = base + cursor[j]++;
        outputs_[e] = output_value(o);
        weights_[e] = weight;
        factors_[e] = factor;
      });
    }
    begin_at_.v[dims_] = static_cast<int64_t>(begins_.size());
    for (const int64_t b : begin) begins_.push_back(base + b);
    ++dims_;
  }

  ReaderTables finish() const {
    ReaderTables t;
    t.ndim = dims_;
    t.begin_at = begin_at_;
    t.outputs_at = static_cast<int64_t>(begins_.size());
    t.factors_at = t.outputs_at + static_cast<int64_t>(outputs_.size());
    t.index = begins_;
    t.index.insert(t.index.end(), outputs_.begin(), outputs_.end());
    t.index.insert(t.index.end(), factors_.begin(), factors_.end());
    t.weights = weights_;
    return t;
  }

 private:
  int dims_ = 0;
  PerDim<int64_t> begin_at_{};
  std::vector<int64_t> begins_, outputs_, factors_;
  std::vector<double> weights_;
};

// The reader tables of a map between the planes of `a`, each entry storing its output
// coordinate as an offset in the row-major output plane: taps(d, o, emit) emits the input
// coordinates of dim d that output coordinate o reads (as in ReaderTablesBuilder::add_dim).
template <typename Taps>
ReaderTables plane_readers(const PlaneArgs& a, const Taps& taps) {
  ReaderTablesBuilder tables;
  int64_t out_stride = a.out_plane;
  for (int d = 0; d < a.ndim; ++d) {
    out_stride /= a.out_sizes.v[d];
    tables.add_dim(
        a.in_sizes.v[d], a.out_sizes.v[d],
        [&](int64_t o, const auto& emit) { taps(d, o, emit); },
        [&](int64_t o) { return o * out_stride; });
  }
  return tables.finish();
}

// What a kernel needs of ReaderTables (the tables themselves travel as pointers).
struct ReaderArgs {
  int ndim;
  PerDim<int64_t> in_sizes, begin_at;
  int64_t outputs_at, factors_at;
};

template <typename Sizes>
ReaderArgs reader_args(const ReaderTables& t, const Sizes& in_sizes) {
  return {t.ndim, per_dim<int64_t>(in_sizes), t.begin_at, t.outputs_at, t.factors_at};
}

// Calls visit(offset, weight, factor) for every output element that reads the input element at
// in-plane position `position`: every combination of one reader per dim, with the sum of the
// readers' output values (offsets), the product of their weights (1 when weights is null) and
// the product of their factors.
template <typename weight_t, typename Visit>
C10_HOST_DEVICE inline void for_each_reader(int64_t position, const ReaderArgs& r,
                                            const int64_t* table, const weight_t* weights,
                                            const Visit& visit) {
  int64_t first[kMaxDims], count[kMaxDims], combinations = 1;
NDOPS_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    first[d] = 0;
    count[d] = 1;
    if (d < r.ndim) {
      const int64_t j = position % r.in_sizes.v[d];
      position /= r.in_sizes.v[d];
      first[d] = table[r.begin_at.v[d] + j];
      count[d] = table[r.begin_at.v[d] + j + 1] - first[d];
      combinations *= count[d];
    }
  }
  for (int64_t k = 0; k < combinations; ++k) {
    int64_t pick = k, offset = 0, factor = 1;
    weight_t weight = weight_t(1);
NDOPS_UNROLL
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d < r.ndim) {
        const int64_t e = first[d] + pick % count[d];
        pick /= count[d];
        offset += table[r.outputs_at + e];
        factor *= table[r.factors_at + e];
        if (weights != nullptr) weight *= weights[e];
      }
    }
    visit(offset, weight, factor);
  }
}

// Element i of a gradient made of planes of `in_plane` elements, each read by the planes of
// `out_plane` elements of `grad`: the sum (in acc_t) of every grad element that read it.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline scalar_t sum_of_readers(const scalar_t* grad, int64_t i,
                                               int64_t in_plane, int64_t out_plane,
                                               const ReaderArgs& r, const int64_t* table) {
  const int64_t lead = i / in_plane;
  const scalar_t* plane = grad + lead * out_plane;
  acc_t sum = acc_t(0);
  for_each_reader<acc_t>(i - lead * in_plane, r, table, nullptr,
                         [&](int64_t offset, acc_t, int64_t) {
                           sum += static_cast<acc_t>(plane[offset]);
                         });
  return static_cast<scalar_t>(sum);
}

}  // namespace cuda
}  // namespace ndops
