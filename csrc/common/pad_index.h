// Padding modes as maps from an output coordinate to the input coordinate it copies.
//
// Padding is separable: along every padded dim the output coordinate o reads the input
// coordinate pad_source_index(mode, o, ...) of that dim, independently of the other dims, so
// an N-d padded tensor is out[o_0, ..., o_{N-1}] = in[src_0(o_0), ..., src_{N-1}(o_{N-1})]
// (or the fill value when any src is -1). Shared verbatim by the CPU and CUDA kernels.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace ndops {

enum class PadMode : int32_t { kConstant = 0, kReflect = 1, kReplicate = 2, kCircular = 3 };

// Size of a padded dim (pads may be negative: they crop).
C10_HOST_DEVICE inline int64_t padded_size(int64_t in_size, int64_t pad_left,
                                           int64_t pad_right) {
  return in_size + pad_left + pad_right;
}

// The interior of a padded dim: the output coordinates [begin, end) that read input
// coordinate o - pad_left in every mode (0 <= begin <= end <= out_size); only the borders
// outside it need the mode's map.
C10_HOST_DEVICE inline int64_t pad_interior_begin(int64_t pad_left, int64_t out_size) {
  const int64_t begin = pad_left > 0 ? pad_left : 0;
  return begin < out_size ? begin : out_size;
}
C10_HOST_DEVICE inline int64_t pad_interior_end(int64_t in_size, int64_t pad_left,
                                                int64_t out_size) {
  const int64_t begin = pad_interior_begin(pad_left, out_size);
  const int64_t end = in_size + pad_left < out_size ? in_size + pad_left : out_size;
  return end > begin ? end : begin;
}

// The input coordinate that output coordinate `o` of one padded dim copies, or -1 where
// constant mode writes the fill value. Valid for the pads torch accepts (checked on the host,
// see pad_shape.h):
//   reflect:   |pads| < in_size, so one mirror at each end suffices;
//   replicate: in_size >= 1;
//   circular:  as torch, negative pads crop first and the positive pads then wrap around the
//              cropped extent, at most once.
C10_HOST_DEVICE inline int64_t pad_source_index(PadMode mode, int64_t o, int64_t in_size,
                                                int64_t pad_left, int64_t pad_right) {
  int64_t j = o - pad_left;  // the input coordinate under o before folding it into range
  switch (mode) {
    case PadMode::kConstant:
      return (j >= 0 && j < in_size) ? j : -1;
    case PadMode::kReflect:  // mirror about 0 and in_size - 1, the edge itself not repeated
      if (j < 0) j = -j;
      if (j >= in_size) j = 2 * (in_size - 1) - j;
      return j;
    case PadMode::kReplicate:
      return j < 0 ? 0 : (j >= in_size ? in_size - 1 : j);
    case PadMode::kCircular: {
      const int64_t crop_left = pad_left < 0 ? -pad_left : 0;
      const int64_t period =
          in_size + (pad_left < 0 ? pad_left : 0) + (pad_right < 0 ? pad_right : 0);
      int64_t k = j - crop_left;  // coordinate within the cropped extent [0, period)
      if (k < 0) {
        k += period;
      } else if (k >= period) {
        k -= period;
      }
      return k + crop_left;
    }
  }
  return -1;
}

}  // namespace ndops
