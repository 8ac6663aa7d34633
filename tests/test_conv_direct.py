"""The AVX2 kernels of conv_nd: the direct kernel for few input channels
(csrc/cpu/conv_direct.cpp) and its rule, and the gathered conv's own weight gradient
(csrc/cpu/conv_weight_grad.cpp), forced with NDOPS_CONV_DIRECT, against float64 references:
every padding mode, stride, dilation, group count and activation, N = 1..5."""
import random

import pytest
import torch
import torch.nn.functional as F

from ndops import _ext
from test_conv_ext import ACTIVATIONS, assert_results_close, padded_reference, ran_passes, run

pytestmark = pytest.mark.skipif(not _ext.has_ext_op("conv_nd"),
                                reason="conv_nd extension not built")

needs_avx2 = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
    reason="the direct conv kernel needs AVX2 and FMA")


def direct_case(rng, n):
    """A random float32 conv with few input channels: any padding pairs and mode, stride,
    dilation, groups; widths, channel counts and last-dim kernels that reach every register
    tile and tail of the row kernels."""
    groups = rng.choice([1, 1, 2])
    kernel = [rng.randint(1, 3) for _ in range(n - 1)] + [rng.choice([1, 2, 3, 5])]
    dilation = [rng.randint(1, 2) for _ in range(n)]
    stride = [rng.choice([1, 1, 2]) for _ in range(n)]
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    size = [s + rng.randint(0, 3) for s in span[:-1]] + [span[-1] + rng.randint(0, 30)]
    mode = rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"])
    pairs = [rng.randint(0, min(2, s - 1)) for s in size for _ in range(2)]
    x = torch.randn(rng.randint(1, 2), groups * rng.randint(1, 4), *size)
    w = torch.randn(groups * rng.randint(1, 9), x.shape[1] // groups, *kernel)
    b = torch.randn(w.shape[0]) if rng.random() < 0.7 else None
    return x, w, b, stride, pairs, dilation, groups, mode


@needs_avx2
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_direct_kernel_matches_the_fallback(n, monkeypatch):
    rng = random.Random(f"direct {n}")
    for _ in range(6 if n < 5 else 3):
        x, w, b, stride, pairs, dilation, groups, mode = direct_case(rng, n)
        activation = rng.choice(list(ACTIVATIONS))
        op_activation, slope = activation.replace("_negative", ""), ACTIVATIONS[activation][1]

        def fused(x, w, b):
            return torch.ops.ndops.conv_bias_act_nd(x, w, b, stride, pairs, dilation, groups,
                                                    op_activation, slope, mode)[0]

        def reference(x, w, b):
            z = padded_reference(x, w, b, stride, pairs, dilation, groups, mode)
            return ACTIVATIONS[activation][0](z, slope)

        expected, grad_output = run(None, *[None if t is None else t.double() for t in (x, w, b)],
                                    {}, fn=reference)
        monkeypatch.setenv("NDOPS_CONV_DIRECT", "1")
        results = {}
        passes = ran_passes(lambda: results.update(
            actual=run(None, x, w, b, {}, grad_output.float(), fn=fused)[0]))
        assert "ndops::conv_nd::direct_forward" in passes
        assert_results_close(results["actual"], [e.float() for e in expected], torch.float32,
                             f"{tuple(x.shape)} {tuple(w.shape)} {stride} {pairs} {dilation} "
                             f"{groups} {mode} {activation}")


@needs_avx2
def test_direct_kernel_chunks_rows_and_reads_strided_inputs(monkeypatch):
    monkeypatch.setenv("NDOPS_CONV_DIRECT", "1")
    x = torch.randn(1, 3, 70, 40)[:, :, ::1, ::2]  # 70 rows (two chunks), width stride 2
    w = torch.randn(5, 3, 3, 2)
    expected, grad_output = run("native", x.double(), w.double(), None, dict(padding=1))
    actual, _ = run("ext", x, w, None, dict(padding=1), grad_output.float())
    assert_results_close(actual, [e.float() for e in expected], torch.float32)


@needs_avx2
@pytest.mark.parametrize("x_shape,w_shape,dilation,pairs", [
    ((1, 2, 5, 45), (6, 2, 3, 5), (1, 2), (1, 1, 3, 1)),  # 4 + 2 channels, 5 taps, 24 + 21
    ((2, 1, 4, 6, 17), (5, 1, 3, 3, 3), (1, 1, 1), (1, 1, 0, 2, 1, 1)),  # a tail vector
])
def test_direct_kernel_on_raw_rows(x_shape, w_shape, dilation, pairs, monkeypatch):
    """Stride 1 and zero padding: the forward, and the input gradient's conv (fewer output
    than input channels), read the input's own rows with the shifted-taps kernel (no staging):
    4-channel tiles and single channels, taps in groups, several tiles per row and tails."""
    monkeypatch.setenv("NDOPS_CONV_DIRECT", "1")
    n = len(x_shape) - 2
    x, w, b = torch.randn(x_shape), torch.randn(w_shape), torch.randn(w_shape[0])

    def fused(x, w, b):
        return torch.ops.ndops.conv_bias_act_nd(x, w, b, [1] * n, list(pairs), list(dilation),
                                                1, "none", 0.0, "zeros")[0]

    def reference(x, w, b):
        return padded_reference(x, w, b, [1] * n, pairs, dilation, 1, "zeros")

    expected, grad_output = run(None, x.double(), w.double(), b.double(), {}, fn=reference)
    actual, _ = run(None, x, w, b, {}, grad_output.float(), fn=fused)
    assert_results_close(actual, [e.float() for e in expected], torch.float32)
    passes = ran_passes(lambda: fused(x, w, b))
    assert "ndops::conv_nd::direct_forward" in passes
    assert "ndops::conv_nd::direct_stage" not in passes


@needs_avx2
def test_direct_kernel_rule(monkeypatch):
    """In float32, the forward of a conv with at most 2 input channels per group, the backward
    of one with 1, and both of one with at most 4 input and fewer than 16 output channels take
    the direct kernel; the rest, the gathered conv; NDOPS_CONV_DIRECT=0 turns it off."""
    one, two, four = (torch.randn(2, c, 6, 6, 6, 6) for c in (1, 2, 4))
    wide = (torch.randn(1, 8, 5, 5, 5, 5), torch.randn(4, 8, 3, 3, 3, 3))

    def conv(x, w):
        def call():
            leaves = [x.clone().requires_grad_(), w.clone().requires_grad_()]
            torch.ops.ndops.conv_nd(*leaves, None, [1] * 4, [1] * 4, [1] * 4, 1).sum().backward()
        return call

    both = {"direct_forward", "direct_backward"}
    for x, out_channels, direct in [(one, 16, both), (two, 4, both), (two, 16, {"direct_forward"}),
                                    (four, 4, both), (four, 16, set())]:
        w = torch.randn(out_channels, x.shape[1], 3, 3, 3, 3)
        ran = ran_passes(conv(x, w))
        for name in ("direct_forward", "direct_backward"):
            assert (f"ndops::conv_nd::{name}" in ran) == (name in direct), (w.shape, name)
    wide_forward = ran_passes(lambda: torch.ops.ndops.conv_nd(*wide, None, [1] * 4, [1] * 4,
                                                              [1] * 4, 1))
    assert "ndops::conv_nd::direct_forward" not in wide_forward
    # Its input gradient is the adjoint conv's forward, C4 -> 8 (stride 1): the direct kernel's.
    assert "ndops::conv_nd::direct_forward" in ran_passes(conv(*wide))
    assert "ndops::conv_nd::direct_forward" not in ran_passes(conv(one.double(),
                                                                    w[:, :1].double()))
    monkeypatch.setenv("NDOPS_CONV_DIRECT", "0")
    assert "ndops::conv_nd::direct_forward" not in ran_passes(conv(one, w[:, :1]))


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX2",
                    reason="the own weight gradient is the default on AVX2 CPUs only")
def test_own_weight_gradient_only_where_it_pays(monkeypatch):
    """By default the own weight gradient runs where a chunk has at least half as many output
    voxels as the weight has elements per output channel (B1 C8 8^4: 4096 >= 324), oneDNN's
    where the weight dominates (B1 C16 3^4: 81 < 648)."""
    monkeypatch.delenv("NDOPS_CONV_DIRECT", raising=False)
    for size, channels, own in [(8, 8, True), (3, 16, False)]:
        leaves = [torch.randn(1, channels, *[size] * 4, requires_grad=True),
                  torch.randn(channels, channels, 3, 3, 3, 3, requires_grad=True)]
        ran = ran_passes(lambda: torch.ops.ndops.conv_nd(
            *leaves, None, [1] * 4, [1] * 4, [1] * 4, 1).sum().backward())
        assert ("ndops::conv_nd::channels_last_weight_grad" in ran) == own, (size, channels)


@needs_avx2
@pytest.mark.parametrize("n", [2, 4, 5])
def test_own_weight_gradient_on_the_gathered_path(n, monkeypatch):
    """The native conv's weight gradient on conv_weight_grad.cpp's kernel (by default on CPUs
    without AVX-512) where the gathered channels per group are a multiple of 8."""
    monkeypatch.setenv("NDOPS_CONV_DIRECT", "weight_grad")
    monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", str(max(n - 3, 1)))
    rng = random.Random(f"own weight grad {n}")
    for _ in range(3 if n < 5 else 2):
        x, w, b, stride, pairs, dilation, groups, mode = direct_case(rng, n)
        x = torch.randn(x.shape[0], 8 * groups, *x.shape[2:])
        w = torch.randn(w.shape[0], 8, *w.shape[2:])

        def conv(x, w, b):
            return torch.ops.ndops.conv_bias_act_nd(x, w, b, stride, pairs, dilation, groups,
                                                    "silu", 0.01, mode)[0]

        def reference(x, w, b):
            return F.silu(padded_reference(x, w, b, stride, pairs, dilation, groups, mode))

        expected, grad_output = run(None, *[None if t is None else t.double() for t in (x, w, b)],
                                    {}, fn=reference)
        results = {}
        passes = ran_passes(lambda: results.update(
            actual=run(None, x, w, b, {}, grad_output.float(), fn=conv)[0]))
        assert "ndops::conv_nd::channels_last_weight_grad" in passes
        assert "ndops::conv_nd::direct_forward" not in passes
        assert_results_close(results["actual"], [e.float() for e in expected], torch.float32,
                             f"{tuple(x.shape)} {tuple(w.shape)} {stride} {pairs} {mode}")


@needs_avx2
@pytest.mark.parametrize("n", [1, 2, 4])
def test_unpadded_rows_clear_the_lanes_read_around_them(n, monkeypatch):
    """Unpadded rows (stride 1, zero padding: the forward with fewer output than input
    channels, and the input gradient of one input channel) are read with whole vectors where
    the memory around them is the tensor's, their lanes outside the row cleared, and with
    masked loads at the tensor's ends: NaNs around a view of a larger buffer never leak in."""
    monkeypatch.setenv("NDOPS_CONV_DIRECT", "1")
    rng = random.Random(f"unpadded rows {n}")
    for channels in [(3, 2), (4, 1), (1, 5), (1, 9)]:
        kernel = [rng.randint(1, 3) for _ in range(n - 1)] + [rng.choice([1, 2, 3, 5])]
        dilation = [rng.randint(1, 2) for _ in range(n)]
        span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        padding = [rng.randint(0, s - 1) for s in span]
        size = [s + rng.randint(0, 3) for s in span[:-1]] + [span[-1] + rng.randint(0, 30)]
        buffer = torch.full((rng.randint(1, 2), channels[0], *[s + 2 for s in size]), float("nan"))
        x = buffer[(slice(None), slice(None), *[slice(1, -1)] * n)]
        x.copy_(torch.randn(x.shape))
        w, b = torch.randn(channels[1], channels[0], *kernel), torch.randn(channels[1])
        args = ([1] * n, padding, dilation, 1)
        expected = [x.double().requires_grad_(), w.double().requires_grad_(),
                    b.double().requires_grad_()]
        out = padded_reference(*expected, args[0], [p for p in padding for _ in range(2)],
                               dilation, 1, "zeros")
        grad_output = torch.randn(out.shape, dtype=torch.float64)
        expected = [out, *torch.autograd.grad(out, expected, grad_output)]
        leaves = [x.requires_grad_(), w.requires_grad_(), b.requires_grad_()]
        out = torch.ops.ndops.conv_nd(*leaves, *args)
        actual = [out, *torch.autograd.grad(out, leaves, grad_output.float())]
        assert_results_close(actual, [e.float() for e in expected], torch.float32,
                             f"{channels} {size} {kernel} {padding} {dilation}")


@needs_avx2
def test_direct_weight_gradient_does_not_depend_on_the_thread_count():
    """The direct kernel's weight gradient sums fixed parts of its tasks in order: bit for bit
    the same on 1 and 2 threads."""
    x, w = torch.randn(3, 1, 9, 7, 8, 21), torch.randn(5, 1, 3, 3, 3, 3)
    grad_output = torch.randn(3, 5, 9, 7, 8, 21)
    args = ([1] * 4, [1] * 4, [1] * 4, 1, [False, True, False])
    threads = torch.get_num_threads()
    grads = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            passes = ran_passes(lambda: grads.append(
                torch.ops.ndops._conv_nd_backward(grad_output, x, w, *args)[1]))
            assert "ndops::conv_nd::direct_backward" in passes
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1])
