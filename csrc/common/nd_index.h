// Generic N-d index arithmetic on row-major (last dim fastest) shapes, N a runtime value.
//
// Host and device code share these: plain pointers to int64_t arrays, no allocation, no
// exceptions. Callers own the arrays (a std::vector on the host, a fixed-size struct copied
// into a CUDA kernel's arguments).
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace ndops {

// coords[0..ndim) of the element at row-major position `linear` in a tensor of `sizes`.
C10_HOST_DEVICE inline void unravel_index(int64_t linear, const int64_t* sizes, int ndim,
                                          int64_t* coords) {
  for (int d = ndim - 1; d >= 0; --d) {
    coords[d] = linear % sizes[d];
    linear /= sizes[d];
  }
}

// Offset of `coords` under `strides` (element strides, not bytes).
C10_HOST_DEVICE inline int64_t ravel_index(const int64_t* coords, const int64_t* strides,
                                           int ndim) {
  int64_t offset = 0;
  for (int d = 0; d < ndim; ++d) offset += coords[d] * strides[d];
  return offset;
}

// Step `coords` to the next row-major position (an odometer). Returns false when it wrapped
// past the last position (coords are then all zero again).
C10_HOST_DEVICE inline bool advance_index(int64_t* coords, const int64_t* sizes, int ndim) {
  for (int d = ndim - 1; d >= 0; --d) {
    if (++coords[d] < sizes[d]) return true;
    coords[d] = 0;
  }
  return false;
}

// Row-major element strides of a contiguous tensor of `sizes`.
C10_HOST_DEVICE inline void contiguous_strides(const int64_t* sizes, int ndim,
                                               int64_t* strides) {
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= sizes[d];
  }
}

}  // namespace ndops
