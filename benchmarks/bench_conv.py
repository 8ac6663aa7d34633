"""4-D convolution: ndops against the loop-of-conv3d approach, on the anchor shapes.

    pytest benchmarks/bench_conv.py --benchmark-only --benchmark-group-by=param:shape

Shapes are those of ../shared/bench-anchors (fp32, 3^4 kernel, padding 1). Each group times
every implementation in the same run; ``extra_info`` carries GFLOP/s (2·B·Cout·Cin·k^4·outputs
per forward, 3x that for forward + backward).
"""
import pytest
import torch

import ndops
from baselines import conv4d_loop_of_conv3d

SHAPES = {  # name: (batch, c_in, c_out, edge)
    "B2 C16->16 16^4": (2, 16, 16, 16),
    "B1 C32->32 12^4": (1, 32, 32, 12),
    "B4 C1->8 24^4": (4, 1, 8, 24),
}
IMPLS = {
    "ndops": lambda x, w, b: ndops.conv_nd(x, w, b, padding=1),
    "loop of conv3d": lambda x, w, b: conv4d_loop_of_conv3d(x, w, b, padding=1),
}


@pytest.mark.parametrize("passes", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_conv4d(benchmark, shape, impl, passes):
    batch, c_in, c_out, edge = SHAPES[shape]
    x = torch.randn(batch, c_in, edge, edge, edge, edge, requires_grad=passes != "fwd")
    w = torch.randn(c_out, c_in, 3, 3, 3, 3, requires_grad=passes != "fwd")
    b = torch.randn(c_out, requires_grad=passes != "fwd")
    fn = IMPLS[impl]

    def run():
        y = fn(x, w, b)
        if passes != "fwd":
            y.sum().backward()
        return y

    flops = 2 * batch * c_out * c_in * 81 * edge ** 4 * (1 if passes == "fwd" else 3)
    if passes == "fwd":
        with torch.no_grad():
            benchmark(run)
    else:
        benchmark(run)
    benchmark.extra_info.update(gflops=flops / benchmark.stats["median"] / 1e9)


def test_baseline_agrees_with_ndops():
    x = torch.randn(2, 3, 5, 6, 5, 4, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(IMPLS["loop of conv3d"](x, w, b), IMPLS["ndops"](x, w, b))
