"""Issue 3's batch norm row: batch norm + relu, training, B2 C32 24^4: ndops' fused kernel
against F.batch_norm + F.relu ("torch") and the fallback, fwd and fwd+bwd.

    THP_MEM_ALLOC_ENABLE=1 pytest benchmarks/bench_batch_norm.py --benchmark-only \
        --benchmark-group-by=param:case

extra_info: GB/s (2 passes over x forward, 5 for fwd+bwd, as the anchors count) and % of the
copy bandwidth of the same session. Target (fwd+bwd): >= 2x torch and >= 50 %.
"""
import pytest

from ndops.bench.cases import select
from ndops.bench.runner import case_methods

CASES = select(families=("batch_norm_act",), tags=("target",))
PARAMS = case_methods(CASES)


@pytest.mark.parametrize("case,method", PARAMS, ids=[f"{c.id}-{m}" for c, m in PARAMS])
def test_batch_norm_relu(time_case, case, method):
    time_case(case, method)
