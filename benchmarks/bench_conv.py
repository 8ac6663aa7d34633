"""4-D convolution: ndops' compiled kernel (ext) and fallback against the loop-of-conv3d
approach, on the anchor shapes.

    pytest benchmarks/bench_conv.py --benchmark-only --benchmark-group-by=param:shape,param:passes

Shapes are those of ../shared/bench-anchors (fp32, 3^4 kernel, padding 1). Each group times
every implementation in the same run; ``extra_info`` carries GFLOP/s (2·B·Cout·Cin·k^4·outputs
per forward, 3x that for forward + backward). The ``conv_bias_act`` groups compare the fused
bias + SiLU epilogue with conv_nd followed by F.silu.
"""
import pytest
import torch
import torch.nn.functional as F

import ndops
from baselines import conv4d_loop_of_conv3d

SHAPES = {  # name: (batch, c_in, c_out, edge)
    "B2 C16->16 16^4": (2, 16, 16, 16),
    "B1 C32->32 12^4": (1, 32, 32, 12),
    "B4 C1->8 24^4": (4, 1, 8, 24),
}


def _on(backend, fn):
    def call(*args):
        with ndops.backend(backend):
            return fn(*args)
    return call


IMPLS = {
    "ext": _on("ext", lambda x, w, b: ndops.conv_nd(x, w, b, padding=1)),
    "fallback": _on("fallback", lambda x, w, b: ndops.conv_nd(x, w, b, padding=1)),
    "loop of conv3d": lambda x, w, b: conv4d_loop_of_conv3d(x, w, b, padding=1),
}
ACT_IMPLS = {
    "fused conv_bias_act_nd": lambda x, w, b: torch.ops.ndops.conv_bias_act_nd(
        x, w, b, [1] * 4, [1] * 4, [1] * 4, 1, "silu")[0],
    "conv_nd + F.silu": _on("ext", lambda x, w, b: F.silu(ndops.conv_nd(x, w, b, padding=1))),
}


def _time(benchmark, fn, shape, passes):
    batch, c_in, c_out, edge = SHAPES[shape]
    grad = passes != "fwd"
    x = torch.randn(batch, c_in, edge, edge, edge, edge, requires_grad=grad)
    w = torch.randn(c_out, c_in, 3, 3, 3, 3, requires_grad=grad)
    b = torch.randn(c_out, requires_grad=grad)

    def run():
        y = fn(x, w, b)
        if grad:
            y.sum().backward()
        return y

    flops = 2 * batch * c_out * c_in * 81 * edge ** 4 * (3 if grad else 1)
    with torch.set_grad_enabled(grad):
        benchmark(run)
    benchmark.extra_info.update(gflops=flops / benchmark.stats["median"] / 1e9)


@pytest.mark.parametrize("passes", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_conv4d(benchmark, shape, impl, passes):
    if impl == "ext" and not ndops.has_extension():
        pytest.skip(f"extension not built: {ndops.load_error()}")
    _time(benchmark, IMPLS[impl], shape, passes)


@pytest.mark.parametrize("passes", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", list(ACT_IMPLS))
def test_conv_bias_act(benchmark, impl, passes):
    if not ndops.has_extension():
        pytest.skip(f"extension not built: {ndops.load_error()}")
    _time(benchmark, ACT_IMPLS[impl], "B2 C16->16 16^4", passes)


def test_baseline_agrees_with_ndops():
    x = torch.randn(2, 3, 5, 6, 5, 4, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    expected = IMPLS["fallback"](x, w, b)
    torch.testing.assert_close(IMPLS["loop of conv3d"](x, w, b), expected)
    if ndops.has_extension():
        torch.testing.assert_close(IMPLS["ext"](x, w, b), expected)
