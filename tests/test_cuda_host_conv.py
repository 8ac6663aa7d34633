"""The CUDA memory passes of the gathered conv (csrc/cuda/conv_elements.h), compiled for the
host and run in plain loops, equal the CPU passes (csrc/cpu/conv_gather.cpp,
conv_epilogue.cpp) element for element: the gather of the leading taps into channels (every
padding mode, inner padding, groups, chunks, channels-last inputs), its adjoint (accumulating,
or starting from conv_transpose's bias), and the moves with the fused activation forward and
backward. Without a GPU this runs all the index math of csrc/cuda/conv_gather.cu and
conv_epilogue.cu; only the launches stay untested. See tests/test_cuda_host.py for the other
families.

The harness compiles the CPU passes into itself (they are not ops of ndops._C): about a minute
on 2 cores, cached afterwards; float64 only.
"""
import os
import random

import pytest
import torch

import ndops

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")

SOURCE = r"""
#include <torch/extension.h>

// The CPU passes under test, compiled into this harness.
#include "cpu/conv_epilogue.cpp"
#include "cpu/conv_gather.cpp"

#include "common/activation_dispatch.h"
#include "cuda/conv_elements.h"

using namespace ndops;
using namespace ndops::cuda;
using Sizes = std::vector<int64_t>;

struct Call {
  ConvPlan plan;
  ChunkArgs args;
  int64_t first, count;
};

Call call(const torch::Tensor& x, Sizes w_sizes, Sizes stride, Sizes padding, Sizes dilation,
          int64_t groups, const std::string& mode, int64_t lead, int64_t first, int64_t count) {
  const torch::Tensor w = torch::empty(w_sizes, x.options().device(torch::kMeta));
  Call c{make_conv_plan("conv", x, w, stride, padding, dilation, groups, mode, int(lead)), {},
         first, count};
  c.count = std::min(count, c.plan.lead_positions - first);
  c.args = chunk_args(c.plan, first, c.count);
  return c;
}

// A channels-last buffer of the native conv: (B * count, channels, *inner), a unit dim in
// front of a single inner dim, random values.
torch::Tensor native_buffer(const Call& c, int64_t channels, const Sizes& inner) {
  Sizes sizes{c.plan.batch * c.count, channels};
  if (inner.size() == 1) sizes.push_back(1);
  sizes.insert(sizes.end(), inner.begin(), inner.end());
  const auto format = sizes.size() == 4 ? at::MemoryFormat::ChannelsLast
                                        : at::MemoryFormat::ChannelsLast3d;
  return torch::randn(sizes, torch::kDouble).contiguous(format);
}

// A random (B, C, *spatial) tensor laid out like x (channels-first or channels-last).
torch::Tensor like_layout(const torch::Tensor& x, Sizes sizes) {
  if (x.size(1) == 1 || x.stride(1) != 1 || x.is_contiguous()) {
    return torch::randn(sizes, torch::kDouble);
  }
  Sizes last{sizes[0]};
  last.insert(last.end(), sizes.begin() + 2, sizes.end());
  last.push_back(sizes[1]);
  return torch::randn(last, torch::kDouble).movedim(-1, 1);
}

Strides strides(const torch::Tensor& t, int lead) {
  return strides_of(collapsed_or_fail(t, lead, "t"));
}

Sizes output_sizes(const ConvPlan& plan) {
  Sizes sizes{plan.batch, plan.out_channels};
  sizes.insert(sizes.end(), plan.out_sizes.begin(), plan.out_sizes.end());
  return sizes;
}

Sizes inner_out_sizes(const ConvPlan& plan) {
  return Sizes(plan.out_sizes.begin() + plan.lead, plan.out_sizes.end());
}

std::vector<torch::Tensor> gather(torch::Tensor x, Sizes w, Sizes stride, Sizes padding,
                                  Sizes dilation, int64_t groups, std::string mode,
                                  int64_t lead, int64_t first, int64_t count) {
  const Call c = call(x, w, stride, padding, dilation, groups, mode, lead, first, count);
  torch::Tensor expected =
      native_buffer(c, c.plan.gathered_channels(), c.plan.gathered_inner_sizes);
  torch::Tensor actual = torch::empty_like(expected);
  gather_taps(x, c.plan, first, c.count, expected);
  const GatherTables t = gather_tables(c.plan);
  const Strides is = strides(x, c.plan.lead);
  for (int64_t i = 0; i < actual.numel(); ++i) {
    actual.data_ptr<double>()[i] = gather_element(x.data_ptr<double>(), i, c.args, is,
                                                  t.table.data(), t.source_begin, t.inner_at);
  }
  return {expected, actual};
}

std::vector<torch::Tensor> scatter(torch::Tensor x, Sizes w, Sizes stride, Sizes padding,
                                   Sizes dilation, int64_t groups, std::string mode,
                                   int64_t lead, int64_t first, int64_t count, bool accumulate,
                                   bool with_initial) {
  const Call c = call(x, w, stride, padding, dilation, groups, mode, lead, first, count);
  const torch::Tensor grad =
      native_buffer(c, c.plan.gathered_channels(), c.plan.gathered_inner_sizes);
  const torch::Tensor initial =
      with_initial ? torch::randn({c.plan.in_channels}, torch::kDouble) : torch::Tensor();
  torch::Tensor expected = like_layout(x, x.sizes().vec());
  torch::Tensor actual = expected.clone(at::MemoryFormat::Preserve);
  scatter_taps(grad, c.plan, first, c.count, expected, accumulate, initial);
  const ConvReaders r = conv_readers(c.plan);
  const Strides gs = strides(grad, 0), os = strides(actual, c.plan.lead);
  for (int64_t i = 0; i < actual.numel(); ++i) {
    scatter_element<double, double, double>(
        grad.data_ptr<double>(), i, c.args, gs, r.table.data(), per_dim<int64_t>(r.lead_at),
        r.copies_at, actual.data_ptr<double>(), os, accumulate,
        with_initial ? initial.data_ptr<double>() : nullptr);
  }
  return {expected, actual};
}

std::vector<torch::Tensor> unpack(torch::Tensor x, Sizes w, Sizes stride, Sizes padding,
                                  Sizes dilation, int64_t groups, std::string mode,
                                  int64_t lead, int64_t first, int64_t count,
                                  int64_t activation, double slope, bool keep_pre) {
  const Call c = call(x, w, stride, padding, dilation, groups, mode, lead, first, count);
  const ConvEpilogue e{static_cast<Activation>(activation), slope};
  const torch::Tensor native = native_buffer(c, c.plan.out_channels, inner_out_sizes(c.plan));
  std::vector<torch::Tensor> outs;  // expected, actual, then their pre-activations
  for (int k = 0; k < (keep_pre ? 2 : 1); ++k) {
    outs.push_back(like_layout(x, output_sizes(c.plan)));
    outs.push_back(outs.back().clone(at::MemoryFormat::Preserve));
  }
  unpack_positions(native, c.plan, first, c.count, e, outs[0],
                   keep_pre ? outs[2] : torch::Tensor());
  const Strides ns = strides(native, 0), os = strides(outs[1], c.plan.lead);
  const Strides ps = keep_pre ? strides(outs[3], c.plan.lead) : os;
  double* pre = keep_pre ? outs[3].data_ptr<double>() : nullptr;
  const int64_t total = c.plan.batch * c.count * c.plan.out_channels * c.plan.inner_out_voxels;
  dispatch_activation(e.activation, [&](auto act) {
    for (int64_t i = 0; i < total; ++i) {
      unpack_element<decltype(act)::value>(native.data_ptr<double>(), i, c.args,
                                           c.plan.out_channels, ns, outs[1].data_ptr<double>(),
                                           os, pre, ps, slope);
    }
  });
  return outs;
}

std::vector<torch::Tensor> pack(torch::Tensor x, Sizes w, Sizes stride, Sizes padding,
                                Sizes dilation, int64_t groups, std::string mode, int64_t lead,
                                int64_t first, int64_t count, int64_t activation, double slope) {
  const Call c = call(x, w, stride, padding, dilation, groups, mode, lead, first, count);
  const ConvEpilogue e{static_cast<Activation>(activation), slope};
  const torch::Tensor grad = like_layout(x, output_sizes(c.plan));
  const torch::Tensor act_input = like_layout(x, output_sizes(c.plan));
  torch::Tensor expected = native_buffer(c, c.plan.out_channels, inner_out_sizes(c.plan));
  torch::Tensor actual = torch::empty_like(expected);
  torch::Tensor bias_grad = torch::zeros({c.plan.out_channels}, torch::kDouble);
  pack_positions(grad, act_input, c.plan, first, c.count, e, expected, bias_grad);
  const Strides gs = strides(grad, c.plan.lead), as = strides(act_input, c.plan.lead);
  const Strides ns = strides(actual, 0);
  dispatch_activation(e.activation, [&](auto act) {
    for (int64_t i = 0; i < actual.numel(); ++i) {
      pack_element<decltype(act)::value>(grad.data_ptr<double>(), i, c.args,
                                         c.plan.out_channels, gs, act_input.data_ptr<double>(),
                                         as, actual.data_ptr<double>(), ns, slope);
    }
  });
  Sizes dims{0};  // the CUDA bias gradient: a sum over all dims of the packed chunk but 1
  for (int64_t d = 2; d < actual.dim(); ++d) dims.push_back(d);
  return {expected, actual, bias_grad, actual.sum(dims)};
}
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ndops.has_extension(), reason="compares with the CPU kernels"),
]
ACTIVATIONS = {"none": 0, "relu": 1, "leaky_relu": 2, "silu": 3, "gelu": 4, "gelu_tanh": 5}


@pytest.fixture(scope="module")
def host():
    from torch.utils.cpp_extension import load_inline
    return load_inline("ndops_cuda_host_conv", cpp_sources=[SOURCE],
                       functions=["gather", "scatter", "unpack", "pack"],
                       extra_include_paths=[CSRC], extra_cflags=["-O1", "-std=c++20"],
                       extra_ldflags=["-fopenmp"])


def conv_cases():
    """(x, geometry...) with lead, first, count: N = 1..5, every padding mode, pairs of
    (before, after) paddings, groups, chunks, channels-last inputs."""
    rng = random.Random(7)
    cases = []
    while len(cases) < 16:
        n = rng.randint(1, 5)
        groups = rng.choice([1, 1, 2])
        c_in, c_out = groups * rng.randint(1, 2), groups * rng.randint(1, 2)
        size = [rng.randint(2, 5) for _ in range(n)]
        kernel = [rng.randint(1, 3) for _ in range(n)]
        stride = [rng.randint(1, 2) for _ in range(n)]
        dilation = [rng.randint(1, 2) for _ in range(n)]
        mode = rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"])
        pairs = rng.random() < 0.4
        padding = [rng.randint(0, 1) for _ in range(2 * n if pairs else n)]
        if any((s + 2 * max(padding) - d * (k - 1) - 1) < 0
               for s, k, d in zip(size, kernel, dilation)):
            continue
        lead = rng.randint(max(n - 3, 0), n - 1)
        x = torch.randn(rng.randint(1, 2), c_in, *size, dtype=torch.float64)
        if rng.random() < 0.4 and c_in > 1:
            x = x.movedim(1, -1).contiguous().movedim(-1, 1)
        weight = [c_out, c_in // groups] + kernel
        first, count = rng.choice([(0, 10**6), (1, 2), (0, 1)])
        try:
            torch.ops.ndops.conv_nd(x, torch.zeros(weight, dtype=torch.float64), None, stride,
                                    padding, dilation, groups, mode)
        except RuntimeError:
            continue
        cases.append((x, weight, stride, padding, dilation, groups, mode, lead, first, count))
    return cases


CASES = conv_cases()
IDS = [f"n{len(c[2])}-{c[6]}-lead{c[7]}-{i}" for i, c in enumerate(CASES)]


def lead_positions(case):
    x, weight, stride, padding, dilation, groups, mode, lead, *_ = case
    out = torch.ops.ndops.conv_nd(x, torch.zeros(weight, dtype=torch.float64), None, stride,
                                  padding, dilation, groups, mode)
    return out.shape[2:2 + lead].numel()


def chunked(case):
    """The case with its chunk clipped to the leading positions (first < positions)."""
    first = min(case[8], lead_positions(case) - 1)
    return (*case[:8], first, case[9])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gather(host, case):
    expected, actual = host.gather(*chunked(case))
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("accumulate,with_initial", [(False, False), (True, False),
                                                     (False, True)])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_scatter(host, case, accumulate, with_initial):
    torch.manual_seed(0)
    expected, actual = host.scatter(*chunked(case), accumulate, with_initial)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("case", CASES[:6], ids=IDS[:6])
def test_epilogue(host, case, activation):
    torch.manual_seed(1)
    slope = -0.3 if activation == "leaky_relu" else 0.2
    outs = host.unpack(*chunked(case), ACTIVATIONS[activation], slope, True)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outs[3], outs[2], rtol=0, atol=0)
    expected, actual, bias, actual_bias = host.pack(*chunked(case), ACTIVATIONS[activation],
                                                    slope)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(actual_bias, bias, rtol=1e-10, atol=1e-10)
