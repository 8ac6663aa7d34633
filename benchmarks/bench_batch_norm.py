"""Batch norm + relu, training: ndops' fused kernel against F.batch_norm + F.relu and the
pure-PyTorch fallback, on the anchor shape (../shared/bench-anchors: B2 C32 24^4, fp32).

    pytest benchmarks/bench_batch_norm.py --benchmark-only --benchmark-group-by=param:passes

GB/s in ``extra_info`` counts the bytes the op must move, 4 per element for each of: fwd read
x, write y; bwd read x, read dy, write dx (2 x 4 bytes fwd, 5 x 4 bytes fwd+bwd), as the anchors
do. Outputs are freshly allocated on every call (as in training), so the allocator's page
faults are part of the cost for every implementation; state THP_MEM_ALLOC_ENABLE with results.
fwd+bwd takes the gradients of input, weight and bias with torch.autograd.grad (no
accumulation into .grad).
"""
import pytest
import torch
import torch.nn.functional as F

import ndops

SHAPES = {"B2 C32 24^4": (2, 32, 24, 24, 24, 24)}


def fused(backend):
    def run(x, weight, bias):
        with ndops.backend(backend):
            return ndops.batch_norm_act_nd(x, None, None, weight, bias, True,
                                           activation="relu")
    return run


IMPLS = {
    "ndops ext": fused("ext"),
    "F.batch_norm + F.relu": lambda x, weight, bias: F.relu(
        F.batch_norm(x, None, None, weight, bias, True)),
    "ndops fallback": fused("fallback"),
}


@pytest.mark.parametrize("passes", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_batch_norm_relu(benchmark, shape, impl, passes):
    if impl == "ndops ext" and "ext" not in ndops.available_backends("batch_norm_act_nd", 4):
        pytest.skip("extension not built")
    sizes = SHAPES[shape]
    grad = passes != "fwd"
    x = torch.randn(sizes, requires_grad=grad)
    weight = torch.randn(sizes[1], requires_grad=grad)
    bias = torch.randn(sizes[1], requires_grad=grad)
    grad_output = torch.randn(sizes)
    fn = IMPLS[impl]

    def run():
        y = fn(x, weight, bias)
        if grad:
            torch.autograd.grad(y, (x, weight, bias), grad_output)
        return y

    if grad:
        benchmark(run)
    else:
        with torch.no_grad():
            benchmark(run)
    moved = x.numel() * 4 * (2 if passes == "fwd" else 5)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info.update(gb_per_s=moved / benchmark.stats["median"] / 1e9)


def test_implementations_agree():
    x = torch.randn(2, 3, 4, 3, 2, 3, dtype=torch.float64)
    weight, bias = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    expected = IMPLS["F.batch_norm + F.relu"](x, weight, bias)
    for name in ("ndops ext", "ndops fallback"):
        if name == "ndops ext" and not ndops.has_extension():
            continue
        torch.testing.assert_close(IMPLS[name](x, weight, bias), expected)
