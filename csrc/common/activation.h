// Pointwise activations fused into other kernels, and their derivatives, as torch defines them:
// relu, leaky_relu(negative_slope), silu, gelu (exact, erf) and gelu_tanh (approximate="tanh").
// The activation is a template parameter so the per-element switch vanishes from hot loops.
// Shared verbatim by the CPU and CUDA kernels; acc_t is float or double. gelu is the exact
// (erf) one; in float it is computed to torch's float accuracy (see normal_cdf).
#pragma once

#include <c10/macros/Macros.h>

#include <math.h>

#include <cstdint>
#include <cstring>

namespace ndops {

enum class Activation : int32_t { kNone = 0, kRelu, kLeakyRelu, kSilu, kGelu, kGeluTanh };

namespace activation_detail {
constexpr double kSqrtHalf = 0.70710678118654752440;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kGeluTanhCubic = 0.044715;

// double: the C library. float: branch-free formulas (loops over them vectorize, where calls
// to the C library's expf/erff would not), as accurate as torch's own float kernels.

// e^x = 2^n e^r, n = round(x / ln 2), e^r by Cephes' expf polynomial: <= 1.4 ulp. x is
// clamped to [-87.3, 88] so that 2^n stays a normal float; NaN propagates through r.
C10_HOST_DEVICE inline float exp_of(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.0f ? 88.0f : x;
  float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // + 1.5 * 2^23 rounds to integer
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // x - n ln 2 in two steps
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  n = n == n ? n : 0.0f;  // NaN x: any finite scale (r is NaN already)
  const int32_t exponent_bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_to_n;
  memcpy(&two_to_n, &exponent_bits, sizeof two_to_n);
  return (p * (r * r) + r + 1.0f) * two_to_n;
}
C10_HOST_DEVICE inline double exp_of(double x) { return ::exp(x); }

// P(N(0, 1) <= z). float: the upper tail 0.5 erfc(|z| / sqrt 2) by Numerical Recipes' erfcc
// (Chebyshev fit, relative error < 1.2e-7 in exact arithmetic), so Phi keeps its relative
// accuracy for negative z too.
C10_HOST_DEVICE inline float normal_cdf(float z) {
  const float u = (z < 0.0f ? -z : z) * static_cast<float>(kSqrtHalf);
  const float t = 1.0f / (1.0f + 0.5f * u);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float tail = 0.5f * t * exp_of(p - u * u);
  return z < 0.0f ? tail : 1.0f - tail;
}
C10_HOST_DEVICE inline double normal_cdf(double z) { return 0.5 * (1.0 + ::erf(z * kSqrtHalf)); }

}  // namespace activation_detail

// act(z). relu and leaky_relu pass NaN through, as torch does.
template <Activation kAct, typename acc_t>
C10_HOST_DEVICE inline acc_t activation_forward(acc_t z, acc_t negative_slope) {
  using namespace activation_detail;
  if constexpr (kAct == Activation::kRelu) {
    return z < acc_t(0) ? acc_t(0) : z;
  } else if constexpr (kAct == Activation::kLeakyRelu) {
    return z > acc_t(0) ? z : z * negative_slope;
  } else if constexpr (kAct == Activation::kSilu) {
    return z / (acc_t(1) + exp_of(-z));
  } else if constexpr (kAct == Activation::kGelu) {
    return z * normal_cdf(z);
  } else if constexpr (kAct == Activation::kGeluTanh) {
    // 0.5 z (1 + tanh(u)) = z * sigmoid(2u), u = sqrt(2 / pi) (z + c z^3): no cancellation in
    // 1 + tanh(u) for negative u.
    const acc_t two_u = acc_t(2 * kSqrt2OverPi) * (z + acc_t(kGeluTanhCubic) * z * z * z);
    return z / (acc_t(1) + exp_of(-two_u));
  } else {
    return z;
  }
}

// d act / d z at z (torch's conventions at the kinks: relu' (0) = 0, leaky_relu'(0) = slope).
template <Activation kAct, typename acc_t>
C10_HOST_DEVICE inline acc_t activation_derivative(acc_t z, acc_t negative_slope) {
  using namespace activation_detail;
  if constexpr (kAct == Activation::kRelu) {
    return z > acc_t(0) ? acc_t(1) : acc_t(0);
  } else if constexpr (kAct == Activation::kLeakyRelu) {
    return z > acc_t(0) ? acc_t(1) : negative_slope;
  } else if constexpr (kAct == Activation::kSilu) {
    // silu = z * s with s = sigmoid(z) = 1 / (1 + e), e = exp(-z), s' = s (1 - s); 1 - s =
    // 1 / (1 + 1 / e) stays exact where s is near 1 (and finite where e overflows).
    const acc_t e = exp_of(-z);
    const acc_t s = acc_t(1) / (acc_t(1) + e);
    return s * (acc_t(1) + z / (acc_t(1) + acc_t(1) / e));
  } else if constexpr (kAct == Activation::kGelu) {
    // gelu = z * Phi(z): Phi(z) + z * phi(z), phi the standard normal density.
    return normal_cdf(z) + z * acc_t(kInvSqrt2Pi) * exp_of(acc_t(-0.5) * z * z);
  } else if constexpr (kAct == Activation::kGeluTanh) {
    // z * s with s = sigmoid(2u): s + z * 2 s (1 - s) u', u' = sqrt(2 / pi) (1 + 3 c z^2);
    // 1 - s as for silu.
    const acc_t z2 = z * z;
    const acc_t e = exp_of(acc_t(-2 * kSqrt2OverPi) * (z + acc_t(kGeluTanhCubic) * z2 * z));
    const acc_t s = acc_t(1) / (acc_t(1) + e);
    const acc_t one_minus_s = acc_t(1) / (acc_t(1) + acc_t(1) / e);
    const acc_t du = acc_t(kSqrt2OverPi) * (acc_t(1) + acc_t(3 * kGeluTanhCubic) * z2);
    return s + acc_t(2) * z * s * one_minus_s * du;
  } else {
    return acc_t(1);
  }
}

}  // namespace ndops
