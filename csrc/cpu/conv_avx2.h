// The AVX2 + FMA preamble of csrc/cpu/conv_direct_avx2.cpp and conv_weight_grad_avx2.cpp, and
// nowhere else: including it switches code generation to AVX2 + FMA for the rest of the file,
// until NDOPS_AVX2_END. Include it after every other header, so that no function of another
// header (which may also be compiled, inline, into baseline files) is built for AVX2 here.
// What it defines lives in an anonymous namespace: internal linkage, one copy per AVX2 file,
// so nothing here can stand in for a baseline function at link time. x86-64 with GCC or
// Clang only.
#pragma once

#include <cstdint>

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define NDOPS_AVX2_END _Pragma("clang attribute pop")
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define NDOPS_AVX2_END _Pragma("GCC pop_options")
#endif

// Loops over a tile's registers must be unrolled completely, or GCC keeps the accumulators in
// memory (a load and a store around every FMA).
#define NDOPS_UNROLL _Pragma("GCC unroll 16")

namespace ndops {
namespace {

constexpr int64_t kLanes = 8;

int64_t min_of(int64_t a, int64_t b) { return a < b ? a : b; }

}  // namespace
}  // namespace ndops
