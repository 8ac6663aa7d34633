"""Max / average pooling, kernel 2 stride 2 in every dim: the compiled kernels (ext) against
the fallback at N = 4 (the anchor shape of ../shared/bench-anchors, B2 C32 32^4 fp32) and
against torch's own kernels (native) at N = 3.

    pytest benchmarks/bench_pool.py --benchmark-only --benchmark-group-by=param:case

GB/s in ``extra_info`` counts the bytes the op must move, as the anchors do: fwd reads the
input and writes the output (+ 8-byte indices for max when a backward will need them, i.e.
in fwd+bwd); bwd reads grad_output (+ the indices for max) and writes grad_input. Outputs are
freshly allocated on every call (as in training), so the allocator's page faults are part of
the cost of every implementation (grad_input alone is as large as the input): state
THP_MEM_ALLOC_ENABLE with results. fwd+bwd takes the input gradient with torch.autograd.grad.
"""
import pytest
import torch

import ndops

CASES = {  # name: (op, input shape)
    "max 4-D B2 C32 32^4": ("max", (2, 32, 32, 32, 32, 32)),
    "avg 4-D B2 C32 32^4": ("avg", (2, 32, 32, 32, 32, 32)),
    "max 3-D B2 C32 64^3": ("max", (2, 32, 64, 64, 64)),
    "avg 3-D B2 C32 64^3": ("avg", (2, 32, 64, 64, 64)),
}
OPS = {
    "max": lambda x: ndops.max_pool_nd(x, 2),
    "avg": lambda x: ndops.avg_pool_nd(x, 2),
}


def traffic(op, shape, passes):
    """Bytes the op must read and write (see the module docstring)."""
    numel = 1
    for s in shape:
        numel *= s
    outputs = numel // 2 ** (len(shape) - 2)
    index = 8 * outputs if op == "max" and passes != "fwd" else 0
    forward = 4 * numel + 4 * outputs + index
    return forward if passes == "fwd" else forward + 4 * outputs + index + 4 * numel


@pytest.mark.parametrize("passes", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("backend", ["ext", "native", "fallback"])
@pytest.mark.parametrize("case", list(CASES))
def test_pool(benchmark, case, backend, passes):
    op, shape = CASES[case]
    n = len(shape) - 2
    if backend not in ndops.available_backends(f"{op}_pool_nd", n):
        pytest.skip(f"no {backend} backend at N = {n}")
    if n == 3 and backend == "fallback":
        pytest.skip("at N = 3 the fallback is torch's own kernel")
    grad = passes != "fwd"
    x = torch.randn(shape, requires_grad=grad)
    grad_output = torch.randn([*shape[:2], *(s // 2 for s in shape[2:])])
    fn = OPS[op]

    def run():
        with ndops.backend(backend):
            y = fn(x)
        if grad:
            torch.autograd.grad(y, x, grad_output)
        return y

    if grad:
        benchmark(run)
    else:
        with torch.no_grad():
            benchmark(run)
    gb_per_s = traffic(op, shape, passes) / benchmark.stats["median"] / 1e9
    benchmark.extra_info.update(gb_per_s=gb_per_s)


def test_backends_agree():
    x = torch.randn(2, 3, 6, 4, 6, 8)
    for op, fn in OPS.items():
        results = []
        for backend in ndops.available_backends(f"{op}_pool_nd", 4):
            with ndops.backend(backend):
                results.append(fn(x))
        for result in results[1:]:
            torch.testing.assert_close(result, results[0])
