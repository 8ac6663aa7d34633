// Internals of the direct convolution (csrc/cpu/conv_direct.cpp) shared with its backward
// (csrc/cpu/conv_direct_backward.cpp): the plan of a call, its tasks, the source rows of a
// task and the forward over planes.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "cpu/conv.h"
#include "cpu/conv_direct_kernels.h"
#include "cpu/conv_gather.h"

namespace ndops {

// Readable floats past a staged row's last slot: the overrun of its last (partial) vector, whose
// lanes are computed and never stored (inside the staged tensor, the next phase's or row's).
constexpr int64_t kSlack = 8;
// Output rows per task at most, which bounds a task's table of row offsets (RowScratch).
constexpr int64_t kMaxTaskRows = 64;

struct DirectPlan {
  ConvPlan conv;   // gathering N - 1 dims: the source tables of every dim but the last
  int outer = 0;   // the dims before the row dim (N - 2 of them)
  int64_t outer_positions = 1, outer_taps = 1;
  int64_t rows_in = 1, rows_out = 1, row_kernel = 1;  // the row dim, N - 2
  int64_t width = 1, last_kernel = 1;                 // the last dim: output size, kernel
  int64_t row_taps = 1;  // C_in/groups * outer_taps * row_kernel
  // raw: the row kernels read the input's own rows (stride 1, zero padding, unit stride
  // along the last dim; RowConv::in_width); else a staged copy (stage_input).
  bool raw = false;
  int64_t phase_stride = 0, row_stride = 0;
  std::vector<int64_t> slot_source;  // [row_stride]: input coordinate of each entry, or -1
  int64_t run_begin = 0, run_end = 0;  // the longest run of slot_source counting up by one
  std::vector<int64_t> tap_offsets;    // [last_kernel]

  int64_t cin() const { return conv.group_channels; }
  int64_t cout() const { return conv.out_channels / conv.groups; }
};

// The plan of conv(x, w) at N >= 2 (conv_nd at N = 1 runs with a unit dim in front, UnitDim),
// for its forward or its weight gradient (which read raw rows in different cases).
DirectPlan direct_plan(const char* op, const at::Tensor& x, const at::Tensor& w,
                       const ConvArgs& args, bool for_weight_grad);

// Tasks: (plane, chunk of output rows); plane = b * outer_positions + outer position.
struct Tasks {
  int64_t planes, chunks, chunk;
  int64_t count() const { return planes * chunks; }
};

Tasks split_tasks(const DirectPlan& p);

// The input staged for the row kernels: (B, C_in, *in_sizes[:-1], row_stride), each row with
// the last dim's padding applied and split into stride phases (slot m holds input coordinate
// slot_source[m], or zero), readable kSlack floats past its end.
at::Tensor stage_input(const DirectPlan& p, const at::Tensor& x);

// The zero row read in place of null staged rows.
class ZeroRow {
 public:
  explicit ZeroRow(const DirectPlan& p) : values_(p.row_stride + kSlack, 0.0f) {}
  const float* row() const { return values_.data(); }

 private:
  std::vector<float> values_;
};

// Per-thread scratch of row_sources.
struct RowScratch {
  explicit RowScratch(const DirectPlan& p)
      : planes(p.cin() * p.outer_taps),
        row_offsets(p.row_kernel * std::min(p.rows_out, kMaxTaskRows)),
        outer_offsets(p.outer_taps),
        out_coords(p.outer),
        tap_coords(p.outer) {}
  std::vector<const float*> planes;  // RowConv::planes
  std::vector<int64_t> row_offsets;  // RowConv::row_offsets
  std::vector<int64_t> outer_offsets, out_coords, tap_coords;
};

// The RowConv of output rows [h0, h1) of group g in plane (b, outer position o): the planes
// they read through each (channel, outer tap) and the offsets of the rows in them (null, -1
// where a dim's zero padding is read), in `rows` (the staged input or, for raw plans, the input
// itself).
RowConv row_sources(const DirectPlan& p, const at::Tensor& rows, int64_t b, int64_t o,
                    int64_t g, int64_t h0, int64_t h1, RowScratch& s, const float* zeros);

// Offset of plane `plane`'s first output element in a contiguous (B, C, *out) tensor.
int64_t plane_offset(const DirectPlan& p, const at::Tensor& t, int64_t plane,
                     std::vector<int64_t>& coords);

// conv_forward's direct kernel at N >= 2.
ConvOutputs forward_planes(const char* op, const at::Tensor& x, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const ConvArgs& args,
                           const ConvEpilogue& epilogue, bool keep_pre_activation);

// The args of a conv_nd at N = 1 run as N = 2 with a unit dim in front.
struct UnitDim {
  std::vector<int64_t> stride, padding, dilation;
  ConvArgs args;
  explicit UnitDim(const ConvArgs& a)
      : stride{1, a.stride[0]}, dilation{1, a.dilation[0]} {
    padding = a.padding.size() == 1 ? std::vector<int64_t>{0, a.padding[0]}
                                     : std::vector<int64_t>{0, 0, a.padding[0], a.padding[1]};
    args = {stride, padding, dilation, a.groups, a.padding_mode};
  }
};

}  // namespace ndops
