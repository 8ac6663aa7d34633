"""Every other case of ``ndops.bench.cases.CASES`` (the rows of ``ndops-bench --full`` that are
not issue 3's targets): every op family at N = 1..5, the models, every method.

    pytest benchmarks/bench_ops.py --benchmark-only --benchmark-group-by=param:case
    pytest benchmarks/bench_ops.py --benchmark-only -k "unfold and 4-D" --benchmark-json=out.json
"""
import pytest

from ndops.bench.cases import CASES as ALL_CASES
from ndops.bench.runner import case_methods

CASES = [case for case in ALL_CASES if "target" not in case.tags]


PARAMS = case_methods(CASES)


@pytest.mark.parametrize("case,method", PARAMS, ids=[f"{c.id}-{m}" for c, m in PARAMS])
def test_case(time_case, case, method):
    time_case(case, method)
