"""The CUDA kernels' element functions (csrc/cuda/*_elements.h, pool_window.h, per_dim.h),
compiled for the host and run in plain loops, equal the CPU kernels: the index math of every
CUDA kernel of pad_nd, interpolate_nd and the box-window pools (the windows, the walk over a
window, the corners of multilinear interpolation, the inverted tables the backward kernels
gather through) runs in this test on any machine, GPU or not. What stays untested without a
GPU is the launch plumbing: grids, dtype dispatch, the batch-norm reductions, atomics.

The harness compiles with torch.utils.cpp_extension.load_inline (about a minute on 2 cores;
cached afterwards), float64 only.
"""
import os
import random

import pytest
import torch

import ndops

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")

SOURCE = r"""
#include <torch/extension.h>

#include "cuda/fold_elements.h"
#include "cuda/interp_elements.h"
#include "cuda/pad_elements.h"
#include "cuda/pool_window.h"

using namespace ndops;
using namespace ndops::cuda;
using Sizes = std::vector<int64_t>;

torch::Tensor pad_forward(torch::Tensor x, Sizes pad, std::string mode, double value) {
  const PadMode m = parse_pad_mode(mode);
  const PadGeometry g = pad_geometry(x.sizes(), pad, m);
  torch::Tensor out = torch::empty(padded_sizes(x.sizes(), g), x.options());
  x = x.contiguous();
  const PadArgs a = pad_args(g, m);
  for (int64_t i = 0; i < out.numel(); ++i) {
    out.data_ptr<double>()[i] = pad_forward_element(x.data_ptr<double>(), i, a, value);
  }
  return out;
}

torch::Tensor pad_backward(torch::Tensor grad, Sizes input_size, Sizes pad, std::string mode) {
  const PadMode m = parse_pad_mode(mode);
  const PadGeometry g = pad_geometry(input_size, pad, m);
  torch::Tensor result = torch::empty(input_size, grad.options());
  grad = grad.contiguous();
  const ReaderTables t = pad_readers(g, m);
  const ReaderArgs r = reader_args(t, g.in_sizes);
  const PadArgs a = pad_args(g, m);
  for (int64_t i = 0; i < result.numel(); ++i) {
    result.data_ptr<double>()[i] =
        pad_backward_element<double, double>(grad.data_ptr<double>(), i, a, r, t.index.data());
  }
  return result;
}

InterpGeometry geometry(Sizes in, Sizes out, std::vector<double> scales, std::string mode,
                        bool align_corners) {
  return interp_geometry(in, out, scales, parse_interp_mode(mode), align_corners);
}

torch::Tensor interp_forward(torch::Tensor x, Sizes size, std::vector<double> scales,
                             std::string mode, bool align_corners) {
  const InterpGeometry g = geometry(x.sizes().vec(), size, scales, mode, align_corners);
  torch::Tensor out = torch::empty(interp_output_sizes(x.sizes(), g), x.options());
  x = x.contiguous();
  const InterpArgs a = interp_args<double>(g);
  for (int64_t i = 0; i < out.numel(); ++i) {
    out.data_ptr<double>()[i] =
        g.mode == InterpMode::kLinear
            ? interp_forward_element<double, double, double, true>(x.data_ptr<double>(), i, a)
            : interp_forward_element<double, double, double, false>(x.data_ptr<double>(), i, a);
  }
  return out;
}

torch::Tensor interp_backward(torch::Tensor grad, Sizes size, Sizes input_size,
                              std::vector<double> scales, std::string mode, bool align_corners) {
  const InterpGeometry g = geometry(input_size, size, scales, mode, align_corners);
  torch::Tensor result = torch::empty(input_size, grad.options());
  grad = grad.contiguous();
  const ReaderTables t = interp_readers<double>(g);
  const ReaderArgs r = reader_args(t, g.in_sizes);
  const InterpArgs a = interp_args<double>(g);
  for (int64_t i = 0; i < result.numel(); ++i) {
    result.data_ptr<double>()[i] = interp_backward_element<double, double>(
        grad.data_ptr<double>(), i, a, r, t.index.data(), t.weights.data());
  }
  return result;
}

WindowArgs window(torch::IntArrayRef sizes, Sizes k, Sizes s, Sizes p, Sizes d, bool ceil,
                  bool count_include_pad, int64_t divisor_override) {
  if (k.empty()) return adaptive_args(sizes.slice(2), s);  // s: the adaptive output size
  const SlidingWindow w = sliding_window("pool", sizes, k, s, p, d, ceil);
  check_sliding_windows("pool", w, false);
  return sliding_args(w, count_include_pad, divisor_override);
}

std::vector<torch::Tensor> pool_forward(torch::Tensor x, Sizes k, Sizes s, Sizes p, Sizes d,
                                        bool ceil, bool count_include_pad,
                                        int64_t divisor_override) {
  const WindowArgs a = window(x.sizes(), k, s, p, d, ceil, count_include_pad, divisor_override);
  Sizes out_sizes{x.size(0), x.size(1)};
  for (int i = 0; i < a.ndim; ++i) out_sizes.push_back(a.out_sizes.v[i]);
  torch::Tensor values = torch::empty(out_sizes, x.options());
  torch::Tensor indices = torch::empty(out_sizes, x.options().dtype(torch::kLong));
  torch::Tensor averages = torch::empty(out_sizes, x.options());
  x = x.contiguous();
  for (int64_t i = 0; i < values.numel(); ++i) {
    values.data_ptr<double>()[i] =
        max_pool_element(x.data_ptr<double>(), i, a, indices.data_ptr<int64_t>() + i);
    averages.data_ptr<double>()[i] = avg_pool_element<double, double>(x.data_ptr<double>(), i, a);
  }
  return {values, indices, averages};
}

torch::Tensor avg_pool_backward(torch::Tensor grad, Sizes input_size, Sizes k, Sizes s,
                                Sizes p, bool ceil, bool count_include_pad,
                                int64_t divisor_override) {
  const Sizes ones(k.size(), 1);
  const WindowArgs a =
      window(input_size, k, s, p, ones, ceil, count_include_pad, divisor_override);
  torch::Tensor result = torch::empty(input_size, grad.options());
  grad = grad.contiguous();
  const ReaderTables t = window_readers(a);
  const ReaderArgs r = reader_args(t, Sizes(a.in_sizes.v, a.in_sizes.v + a.ndim));
  for (int64_t i = 0; i < result.numel(); ++i) {
    result.data_ptr<double>()[i] = avg_pool_backward_element<double, double>(
        grad.data_ptr<double>(), i, a, r, t.index.data());
  }
  return result;
}

torch::Tensor unfold_forward(torch::Tensor x, Sizes k, Sizes d, Sizes p, Sizes s) {
  const FoldGeometry g = unfold_geometry(x.sizes(), k, d, p, s);
  torch::Tensor out = torch::empty(unfold_output_sizes(x.sizes(), g), x.options());
  x = x.contiguous();
  const FoldArgs a = fold_args(g);
  for (int64_t i = 0; i < out.numel(); ++i) {
    out.data_ptr<double>()[i] = unfold_element(x.data_ptr<double>(), i, a);
  }
  return out;
}

torch::Tensor fold_forward(torch::Tensor columns, Sizes size, Sizes k, Sizes d, Sizes p,
                           Sizes s) {
  const FoldGeometry g = fold_nd_geometry(columns.sizes(), size, k, d, p, s);
  torch::Tensor out = torch::empty(fold_output_sizes(columns.sizes(), g), columns.options());
  columns = columns.contiguous();
  const FoldArgs a = fold_args(g);
  const ReaderTables t = fold_readers(g);
  const ReaderArgs r = reader_args(t, g.size);
  for (int64_t i = 0; i < out.numel(); ++i) {
    out.data_ptr<double>()[i] =
        fold_element<double, double>(columns.data_ptr<double>(), i, a, r, t.index.data());
  }
  return out;
}
"""

FUNCTIONS = ["pad_forward", "pad_backward", "interp_forward", "interp_backward", "pool_forward",
             "avg_pool_backward", "unfold_forward", "fold_forward"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ndops.has_extension(), reason="compares with the CPU kernels"),
]
ops = torch.ops.ndops


@pytest.fixture(scope="module")
def host():
    from torch.utils.cpp_extension import load_inline
    return load_inline("ndops_cuda_host_elements", cpp_sources=[SOURCE], functions=FUNCTIONS,
                       extra_include_paths=[CSRC], extra_cflags=["-O1", "-std=c++20"])


def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


PAD_CASES = [
    ((2, 3, 5, 6, 4), [1, 2, -1, 1, 2, 0], "constant"),
    ((2, 3, 6, 7), [2, 1, 3, 2], "reflect"),
    ((1, 2, 3, 4, 3, 5), [1, 1, 2, 0, 0, 1, 2, 1], "replicate"),
    ((1, 2, 4, 5, 6), [-1, 2, 3, 0, 1, 1], "circular"),
    ((3, 7), [4, 5], "circular"),
    ((2, 2, 3, 4, 3, 4, 3), [1, 1, 2, 0, 0, 1, 2, 1, 1, 2], "reflect"),
]


@pytest.mark.parametrize("shape,pad,mode", PAD_CASES)
def test_pad(host, shape, pad, mode):
    x = rand(*shape)
    out = ops.pad_nd(x, pad, mode, 0.5)
    assert torch.equal(host.pad_forward(x, pad, mode, 0.5), out)
    grad = torch.randn_like(out)
    close(host.pad_backward(grad, list(shape), pad, mode),
          ops._pad_nd_backward(grad, list(shape), pad, mode))


def interp_cases():
    rng = random.Random(4)
    cases = []
    for n in (1, 2, 3, 4, 1, 2, 3, 2):
        for mode in ("nearest", "nearest-exact", "linear"):
            shape = [rng.randint(1, 2), rng.randint(1, 3)] + [rng.randint(1, 6) for _ in range(n)]
            size = [rng.randint(1, 8) for _ in range(n)]
            scales = [rng.choice([0.6, 1.5, 2.0, 2.7]) for _ in range(n)] if rng.random() < 0.5 \
                else []
            cases.append((shape, size, scales, mode, mode == "linear" and rng.random() < 0.5))
    return cases


@pytest.mark.parametrize("shape,size,scales,mode,align_corners", interp_cases())
def test_interpolate(host, shape, size, scales, mode, align_corners):
    x = rand(*shape)
    out = ops.interpolate_nd(x, size, scales or None, mode, align_corners, False)
    close(host.interp_forward(x, size, scales, mode, align_corners), out)
    grad = torch.randn_like(out)
    close(host.interp_backward(grad, size, shape, scales, mode, align_corners),
          ops._interpolate_nd_backward(grad, size, shape, scales or None, mode, align_corners))


def pool_cases():
    rng = random.Random(5)
    cases = []
    while len(cases) < 24:
        n = rng.randint(1, 4)
        shape = [rng.randint(1, 2), rng.randint(1, 2)] + [rng.randint(2, 7) for _ in range(n)]
        k = [rng.randint(1, 3) for _ in range(n)]
        s = [rng.randint(1, 3) for _ in range(n)]
        p = [rng.randint(0, kk // 2) for kk in k]
        d = [rng.randint(1, 2) for _ in range(n)]
        ceil = rng.random() < 0.5
        try:  # keep the cases where every max window reads an input element
            ops.max_pool_nd(torch.zeros(shape), k, s, p, d, ceil, True)
        except RuntimeError:
            continue
        cases.append((shape, k, s, p, d, ceil, rng.random() < 0.5, rng.choice([0, 0, 5])))
    return cases


@pytest.mark.parametrize("shape,k,s,p,d,ceil,count_include_pad,divisor", pool_cases())
def test_sliding_pool(host, shape, k, s, p, d, ceil, count_include_pad, divisor):
    x = rand(*shape)
    values, indices, _ = host.pool_forward(x, k, s, p, d, ceil, count_include_pad, divisor)
    expected_values, expected_indices = ops.max_pool_nd(x, k, s, p, d, ceil, True)
    assert torch.equal(values, expected_values) and torch.equal(indices, expected_indices)
    ones = [1] * len(k)
    _, _, averages = host.pool_forward(x, k, s, p, ones, ceil, count_include_pad, divisor)
    override = divisor or None
    expected = ops.avg_pool_nd(x, k, s, p, ceil, count_include_pad, override)
    close(averages, expected)
    grad = torch.randn_like(expected)
    close(host.avg_pool_backward(grad, shape, k, s, p, ceil, count_include_pad, divisor),
          ops._avg_pool_nd_backward(grad, shape, k, s, p, ceil, count_include_pad, override))


def fold_cases():
    rng = random.Random(6)
    cases = []
    while len(cases) < 16:
        n = rng.randint(1, 5)
        size = [rng.randint(1, 6 if n < 4 else 4) for _ in range(n)]
        k = [rng.randint(1, 3) for _ in range(n)]
        d = [rng.randint(1, 2) for _ in range(n)]
        p = [rng.randint(0, 2) for _ in range(n)]
        s = [rng.randint(1, 3) for _ in range(n)]
        if all((sz + 2 * pp - dd * (kk - 1) - 1) >= 0 for sz, kk, dd, pp in zip(size, k, d, p)):
            cases.append(([rng.randint(1, 2), rng.randint(1, 3)] + size, k, d, p, s))
    return cases


@pytest.mark.parametrize("shape,k,d,p,s", fold_cases())
def test_unfold_fold(host, shape, k, d, p, s):
    x = rand(*shape)
    columns = ops.unfold_nd(x, k, d, p, s)
    assert torch.equal(host.unfold_forward(x, k, d, p, s), columns)
    grad = torch.randn_like(columns)
    close(host.fold_forward(grad, shape[2:], k, d, p, s), ops.fold_nd(grad, shape[2:], k, d, p, s))


@pytest.mark.parametrize("shape,output_size", [
    ((2, 3, 7), [3]), ((1, 2, 5, 6), [3, 4]), ((2, 1, 5, 6, 7), [2, 6, 3]),
    ((1, 2, 3, 5, 4, 6), [2, 3, 4, 1]), ((1, 1, 4, 4), [4, 4]), ((1, 2, 3, 2), [5, 4]),
])
def test_adaptive_pool(host, shape, output_size):
    x = rand(*shape)
    values, indices, averages = host.pool_forward(x, [], output_size, [], [], False, False, 0)
    expected_values, expected_indices = ops.adaptive_max_pool_nd(x, output_size, True)
    assert torch.equal(values, expected_values) and torch.equal(indices, expected_indices)
    close(averages, ops.adaptive_avg_pool_nd(x, output_size))
    grad = torch.randn_like(averages)
    close(host.avg_pool_backward(grad, list(shape), [], output_size, [], False, False, 0),
          ops._adaptive_avg_pool_nd_backward(grad, list(shape)))


def test_max_pool_ties_and_nan(host):
    x = torch.tensor([[[[1.0, 3.0, 3.0, float("nan")], [3.0, 2.0, float("nan"), 0.0],
                        [3.0, 3.0, 1.0, 1.0], [0.0, 3.0, 1.0, 1.0]]]], dtype=torch.float64)
    values, indices, _ = host.pool_forward(x, [3, 3], [1, 1], [1, 1], [1, 1], False, True, 0)
    expected_values, expected_indices = ops.max_pool_nd(x, [3, 3], [1, 1], [1, 1], [1, 1], False,
                                                        True)
    torch.testing.assert_close(values, expected_values, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(indices, expected_indices)
