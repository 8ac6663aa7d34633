"""Issue 3's pooling rows: max / avg pool 2^4 stride 2 on B2 C32 32^4, fwd and fwd+bwd.

    THP_MEM_ALLOC_ENABLE=1 pytest benchmarks/bench_pool.py --benchmark-only \
        --benchmark-group-by=param:case

extra_info: GB/s (input read + output written; the backward adds grad_output read + grad_input
written; max pool 8-byte indices when a backward follows) and % of the copy bandwidth measured
in the same session. Target: >= 60 %, measured with THP_MEM_ALLOC_ENABLE=1 (recorded).
"""
import pytest

from ndops.bench.cases import select
from ndops.bench.runner import case_methods

CASES = select(families=("max_pool", "avg_pool"), tags=("target",))
PARAMS = case_methods(CASES)


@pytest.mark.parametrize("case,method", PARAMS, ids=[f"{c.id}-{m}" for c, m in PARAMS])
def test_pool(time_case, case, method):
    time_case(case, method)
