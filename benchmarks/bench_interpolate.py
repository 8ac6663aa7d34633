"""Multilinear upsampling: the compiled kernels against the fallback (4-D) and torch (3-D).

    pytest benchmarks/bench_interpolate.py --benchmark-only --benchmark-group-by=param:case

Cases: the issue's target, x2 upsampling of B2 C32 16^4 -> 32^4 fp32 (ext vs the fallback,
which runs torch's trilinear + linear kernels over the dims), and x2 trilinear of B2 C32 32^3
(ext vs torch's F.interpolate, contiguous and channels-last). ``extra_info["gb_per_s"]`` counts
the bytes of the input read and the output written (for forward + backward also grad_output
read and grad_input written); the issue's target is 50 % of the large-copy bandwidth (~39 GB/s
on the project machine). Outputs are fresh allocations every call, as in a network: state
THP_MEM_ALLOC_ENABLE (recorded in extra_info) with the numbers, it changes torch's page faults
(ndops' kernels ask for huge pages on their own results).
"""
import os

import pytest
import torch
import torch.nn.functional as F

import ndops

CASES = {  # name: (input shape, scale factor, memory format, backends)
    "4d B2 C32 16^4 x2": ((2, 32, 16, 16, 16, 16), 2.0, None, ("ext", "fallback")),
    "3d B2 C32 32^3 x2": ((2, 32, 32, 32, 32), 2.0, None, ("ext", "native")),
    "3d B2 C32 32^3 x2 channels-last": ((2, 32, 32, 32, 32), 2.0, torch.channels_last_3d,
                                        ("ext", "native")),
}
PARAMS = [(case, backend) for case, spec in CASES.items() for backend in spec[3]]


@pytest.mark.parametrize("passes", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case,backend", PARAMS)
def test_upsample_linear(benchmark, case, backend, passes):
    shape, scale, memory_format, _ = CASES[case]
    x = torch.randn(shape)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    x.requires_grad_(passes != "fwd")
    out_shape = (*shape[:2], *(int(s * scale) for s in shape[2:]))
    grad = torch.randn(out_shape)

    def run():
        with ndops.backend(backend):
            y = ndops.interpolate_nd(x, scale_factor=scale, mode="linear")
        if passes != "fwd":
            y.backward(grad)
            x.grad = None
        return y

    with torch.set_grad_enabled(passes != "fwd"):
        benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    moved = (x.numel() + grad.numel()) * x.element_size() * (1 if passes == "fwd" else 2)
    benchmark.extra_info.update(gb_per_s=moved / benchmark.stats["median"] / 1e9,
                                thp_mem_alloc=os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"))


def test_kernels_agree():
    x = torch.randn(1, 2, 5, 4, 6, 3)
    with ndops.backend("ext"):
        out = ndops.interpolate_nd(x, scale_factor=2.0, mode="linear")
    with ndops.backend("fallback"):
        torch.testing.assert_close(out, ndops.interpolate_nd(x, scale_factor=2.0, mode="linear"))
    x3 = x[0]
    with ndops.backend("ext"):
        out3 = ndops.interpolate_nd(x3, scale_factor=2.0, mode="trilinear")
    torch.testing.assert_close(out3, F.interpolate(x3, scale_factor=2.0, mode="trilinear"))
