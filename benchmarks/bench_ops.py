"""Every op x N x backend on the shared benchmark cases (``ndops._cases``, scale "bench").

    pytest benchmarks/bench_ops.py --benchmark-only --benchmark-group-by=param:op,param:n
    pytest benchmarks/bench_ops.py --benchmark-only -k "conv_nd and 4" --benchmark-json=out.json

Within one group (op, N) the backends are timed in the same run, so their ratios are
meaningful; absolute numbers drift by ±15 % between runs on a shared machine.
"""
import pytest
import torch

import ndops
from ndops._cases import BUILDERS, make_case

DIMS = (2, 3, 4, 5)
PARAMS = [(op, n, backend) for op in BUILDERS for n in DIMS
          for backend in ndops.available_backends(op, n)]


@pytest.mark.parametrize("op,n,backend", PARAMS)
def test_forward(benchmark, op, n, backend):
    torch.manual_seed(0)
    case = make_case(op, n, scale="bench")
    benchmark.extra_info.update(case=case.describe())
    with ndops.backend(backend):
        benchmark(case.run)
