// Index math of unfold_nd / fold_nd along one spatial dim (sliding blocks <-> columns).
//
// Along every spatial dim, block position l and kernel tap t meet at image coordinate
// l * stride + t * dilation - padding: unfold reads it (zero outside [0, size)), fold adds
// into it. The number of block positions is torch's sliding-window count, pooled_size() of
// window.h without ceil_mode. Host and device code share these: no allocation, no
// exceptions, 64-bit arithmetic.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

#include "common/window.h"

namespace ndops {

// Block positions along one dim: (size + 2p - d(k - 1) - 1) // s + 1 (<= 0: no block fits).
C10_HOST_DEVICE inline int64_t block_count(int64_t size, int64_t kernel, int64_t dilation,
                                           int64_t padding, int64_t stride) {
  return pooled_size(size, kernel, stride, padding, dilation, false);
}

// Image coordinate of tap t of block l (may lie in the padding: < 0 or >= size).
C10_HOST_DEVICE inline int64_t block_tap_coordinate(int64_t l, int64_t t, int64_t dilation,
                                                    int64_t padding, int64_t stride) {
  return l * stride + t * dilation - padding;
}

// The block positions [begin, end) (empty when begin == end; both within [0, blocks]) whose
// tap t lies inside the image: 0 <= l * s + t * d - p < size and 0 <= l < blocks. A window
// [lo, hi) of the image is the image of size hi - lo with padding p + lo.
struct BlockRange {
  int64_t begin;
  int64_t end;
};

C10_HOST_DEVICE inline BlockRange tap_block_range(int64_t t, int64_t size, int64_t blocks,
                                                  int64_t dilation, int64_t padding,
                                                  int64_t stride) {
  const int64_t first = block_tap_coordinate(0, t, dilation, padding, stride);
  // l >= ceil(-first / s) and l <= floor((size - 1 - first) / s)
  int64_t begin = first >= 0 ? 0 : (-first + stride - 1) / stride;
  int64_t end = first < size ? (size - 1 - first) / stride + 1 : 0;
  begin = begin < blocks ? begin : blocks;
  end = end < blocks ? end : blocks;
  return {begin, end > begin ? end : begin};
}

// The block whose tap t lands on image coordinate x (l * s + t * d - p == x), or -1 when
// none does: the pairs (t, l) that fold sums into x.
C10_HOST_DEVICE inline int64_t block_of_tap(int64_t x, int64_t t, int64_t blocks,
                                            int64_t dilation, int64_t padding, int64_t stride) {
  const int64_t shifted = x + padding - t * dilation;  // = l * s
  if (shifted < 0 || shifted % stride != 0) return -1;
  const int64_t l = shifted / stride;
  return l < blocks ? l : -1;
}

}  // namespace ndops
