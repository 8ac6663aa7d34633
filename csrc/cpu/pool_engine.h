// The CPU engine behind every pooling op with box windows (csrc/cpu/pool.cpp: sliding max /
// average; csrc/cpu/adaptive_pool.cpp: adaptive max / average): a window is described per
// spatial dim by a tap table, and one generic kernel (csrc/cpu/pool_engine.cpp) pools any N.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/window.h"

namespace ndops {
namespace pool_cpu {

// One spatial dim of a box-window pool: output o reads the input coordinates
// first[o] + j * step, j < count[o]; divisor[o] is its factor of an average's divisor.
struct DimTaps {
  int64_t in_size = 0, out_size = 0, step = 1;
  std::vector<int64_t> first, count, divisor;
  int64_t span_begin = 0, span_end = 0;  // the coordinates some window reads
  // The longest run of outputs [regular_begin, regular_end) whose windows all hold
  // regular_count taps, start regular_stride apart (first[o] = regular_origin + o *
  // regular_stride) and share one divisor: the interior of a sliding window, or an adaptive
  // one with in % out == 0. The kernel reduces them with loops over o that vectorize.
  int64_t regular_begin = 0, regular_end = 0, regular_origin = 0, regular_stride = 1;
  int64_t regular_count = 0;

  // Append output position out_size's window.
  void add(WindowTaps taps, int64_t divisor_factor) {
    if (taps.count > 0) {
      const int64_t last = taps.first + (taps.count - 1) * step;
      span_begin = span_end == 0 ? taps.first : std::min(span_begin, taps.first);
      span_end = std::max(span_end, last + 1);
    }
    first.push_back(taps.first);
    count.push_back(taps.count);
    divisor.push_back(divisor_factor);
    ++out_size;
  }

  int64_t max_count() const {
    return count.empty() ? 0 : *std::max_element(count.begin(), count.end());
  }

  // Call once every window is added.
  void find_regular_run() {
    const int64_t full = max_count();
    for (int64_t o = 0; o < out_size;) {
      if (count[o] != full) {
        ++o;
        continue;
      }
      const int64_t stride = o + 1 < out_size ? first[o + 1] - first[o] : 1;
      int64_t end = o + 1;
      while (end < out_size && count[end] == full && first[end] - first[end - 1] == stride &&
             divisor[end] == divisor[o]) {
        ++end;
      }
      if (stride >= 1 && end - o > regular_end - regular_begin) {
        regular_begin = o;
        regular_end = end;
        regular_stride = stride;
        regular_origin = first[o] - o * stride;
        regular_count = full;
      }
      o = end;
    }
  }
};

// A pool over `planes` contiguous (b, c) planes; dims.back() is the last spatial dim.
struct BoxPool {
  int64_t planes = 0;
  std::vector<DimTaps> dims;
  std::optional<int64_t> divisor_override;  // averages only
};

// Zeroes a buffer front to back just ahead of the writes that accumulate into it, so each
// part is zeroed while it is about to be used (still in cache) instead of in a pass of its own
// before: [0, reached) is always zeroed. For writes that mostly move forward (a plane's
// gradient filled output row by output row).
template <typename T>
class ZeroAhead {
 public:
  ZeroAhead(T* data, int64_t size) : data_(data), size_(size) {}
  // Zeroes up to at least `until` (and a chunk beyond, so calls stay rare).
  void reach(int64_t until) {
    if (until <= reached_) return;
    const int64_t stop = std::min(size_, std::max(until, reached_ + kChunk));
    std::fill(data_ + reached_, data_ + stop, T(0));
    reached_ = stop;
  }
  void finish() { reach(size_); }

 private:
  static constexpr int64_t kChunk = 2048;
  T* data_;
  int64_t size_, reached_ = 0;
};

// at::parallel_for's grain for items of `work_per_item` elements each: ~32K elements a task.
inline int64_t tasks_grain(int64_t work_per_item) {
  return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(work_per_item, 1));
}

// values[b, c, *o] = max over window o of input[b, c], and indices (flat in the plane) when
// `indices` is not null; ties and NaNs as torch (csrc/common/window.h). Every window must hold
// an input element.
void box_max_forward(const at::Tensor& input, const BoxPool& pool, const at::Tensor& values,
                     const at::Tensor* indices);

// out[b, c, *o] = sum over window o of input[b, c] / its divisor.
void box_avg_forward(const at::Tensor& input, const BoxPool& pool, const at::Tensor& out);

// The adjoint of box_avg_forward: grad_input from grad_output (both contiguous).
void box_avg_backward(const at::Tensor& grad_output, const BoxPool& pool,
                      const at::Tensor& grad_input);

}  // namespace pool_cpu
}  // namespace ndops
