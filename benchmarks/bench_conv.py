"""Issue 3's convolution rows (4-D, 3^4 kernel, padding 1; the shapes of ../shared/bench-anchors):
ndops ext and fallback against the loop-of-conv3d approach, fwd and fwd+bwd.

    pytest benchmarks/bench_conv.py --benchmark-only --benchmark-group-by=param:case

extra_info: GFLOP/s (2 B C_out C_in k^4 outputs per forward, 3x for fwd+bwd) and % of the GEMM
peak measured in the same session. The other convolution cases are in bench_ops.py.
"""
import pytest

from ndops.bench.cases import select
from ndops.bench.runner import case_methods

CASES = select(families=("conv",), tags=("target",))
PARAMS = case_methods(CASES)


@pytest.mark.parametrize("case,method", PARAMS, ids=[f"{c.id}-{m}" for c, m in PARAMS])
def test_conv(time_case, case, method):
    time_case(case, method)
