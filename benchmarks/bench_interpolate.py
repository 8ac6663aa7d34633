"""Issue 3's up-sampling rows: multilinear x2, B2 C32 16^4 -> 32^4, fwd and fwd+bwd.

    THP_MEM_ALLOC_ENABLE=1 pytest benchmarks/bench_interpolate.py --benchmark-only \
        --benchmark-group-by=param:case

extra_info: GB/s (input + output, twice for fwd+bwd) and % of the copy bandwidth of the same
session. Target: >= 50 %.
"""
import pytest

from ndops.bench.cases import select
from ndops.bench.runner import case_methods

CASES = select(families=("interpolate",), tags=("target",))
PARAMS = case_methods(CASES)


@pytest.mark.parametrize("case,method", PARAMS, ids=[f"{c.id}-{m}" for c, m in PARAMS])
def test_interpolate(time_case, case, method):
    time_case(case, method)
