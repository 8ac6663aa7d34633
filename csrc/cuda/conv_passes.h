// The CUDA memory passes of the gathered N-d convolution: the four entry points of the CPU
// passes (csrc/cpu/conv_gather.h), with the same signatures and contracts, defined in
// csrc/cuda/conv_gather.cu and csrc/cuda/conv_epilogue.cu. The conv orchestration
// (csrc/cpu/conv.cpp) is device-agnostic: the CPU entry points hand CUDA tensors to these.
//
// Linking: the .cu files are compiled only in a CUDA build, so these functions are referenced
// only from code under `#if defined(NDOPS_WITH_CUDA)` (setup.py defines it for the C++ sources
// of a CUDA build alone); a CPU-only build neither compiles nor references them.
#pragma once

#include "cpu/conv_gather.h"

namespace ndops {
namespace cuda {

decltype(ndops::gather_taps) gather_taps;
decltype(ndops::scatter_taps) scatter_taps;
decltype(ndops::unpack_positions) unpack_positions;
decltype(ndops::pack_positions) pack_positions;

}  // namespace cuda
}  // namespace ndops
