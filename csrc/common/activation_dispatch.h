// Host-side dispatch of the fused activation (csrc/common/activation.h) to a compile-time
// template argument, shared by the CPU and CUDA launchers of conv_nd's epilogue
// (csrc/cpu/conv_epilogue.cpp, csrc/cuda/conv_epilogue.cu).
#pragma once

#include <ATen/Dispatch.h>

#include <type_traits>

#include "common/activation.h"
#include "common/conv_plan.h"

namespace ndops {

template <Activation kAct>
using ActivationTag = std::integral_constant<Activation, kAct>;

// body(ActivationTag<act>{}) with the runtime activation as a compile-time one.
template <typename Body>
void dispatch_activation(Activation act, const Body& body) {
  switch (act) {
    case Activation::kNone: return body(ActivationTag<Activation::kNone>{});
    case Activation::kRelu: return body(ActivationTag<Activation::kRelu>{});
    case Activation::kLeakyRelu: return body(ActivationTag<Activation::kLeakyRelu>{});
    case Activation::kSilu: return body(ActivationTag<Activation::kSilu>{});
    case Activation::kGelu: return body(ActivationTag<Activation::kGelu>{});
    case Activation::kGeluTanh: return body(ActivationTag<Activation::kGeluTanh>{});
  }
}

// body(ActivationTag, scalar_t tag) for the epilogue's activation and `dtype`: complex types
// only without an activation.
template <typename Body>
void dispatch_epilogue(const ConvEpilogue& epilogue, at::ScalarType dtype, const Body& body) {
  if (epilogue.activation == Activation::kNone) {
    AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "conv_nd", [&] {
      body(ActivationTag<Activation::kNone>{}, scalar_t(0));
    });
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "conv_nd_activation", [&] {
    dispatch_activation(epilogue.activation, [&](auto act) { body(act, scalar_t(0)); });
  });
}

}  // namespace ndops
