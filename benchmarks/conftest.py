"""pytest-benchmark setup shared by the files in benchmarks/.

Every file parametrizes over case objects of ``ndops.bench.cases.CASES`` (the list
``ndops-bench`` runs) and times them with the same callables (``Plan.runs``). The machine's
limits (``ndops.bench.limits``) are measured once per session, so each row's ``extra_info`` has
its GFLOP/s or GB/s and % of the limit of the same run.

Environment: NDOPS_BENCH_THREADS (default 2) pins torch's threads; NDOPS_BENCH_SCALE=tiny
shrinks every case (a smoke run of the suite in seconds; the numbers mean nothing);
NDOPS_BENCH_DEVICE=cuda runs the cases on the GPU (limits measured there too).
"""
import os

import pytest
import torch

from ndops.bench.families import FAMILIES
from ndops.bench.limits import measure_limits
from ndops.bench.plan import Unavailable
from ndops.bench.runner import METHODS
from ndops.bench.timing import synchronizer

torch.set_num_threads(int(os.environ.get("NDOPS_BENCH_THREADS", "2")))
SCALE = os.environ.get("NDOPS_BENCH_SCALE", "normal")
DEVICE = os.environ.get("NDOPS_BENCH_DEVICE", "cpu")


@pytest.fixture(scope="session")
def limits():
    return measure_limits(DEVICE, SCALE)


@pytest.fixture
def time_case(benchmark, limits):
    """time_case(case, method): benchmark one method on one case and record its rate."""
    def run(case, method):
        case = case.at_scale(SCALE)
        plan = FAMILIES[case.family].plan(case, DEVICE, [method])
        call = plan.runs.get(method)
        if call is None:
            pytest.skip(f"{METHODS[method]} does not apply to {case.name}")
        if isinstance(call, Unavailable):
            pytest.skip(str(call))
        sync = synchronizer(DEVICE)  # CUDA launches are asynchronous: time until they finish
        benchmark(lambda: (call(), sync()))
        info = {"case": case.name, "method": METHODS[method], "device": DEVICE,
                "targets": [t.describe(METHODS) for t in case.targets],
                "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")}
        if benchmark.stats is not None and plan.work:  # stats is None under --benchmark-disable
            rate = plan.work / benchmark.stats["median"] / 1e9
            limit = (limits["gemm"]["gflops"] if plan.unit == "GFLOP/s"
                     else limits["copy"]["gbps"])
            info.update(unit=plan.unit, rate=rate, pct_of_limit=100 * rate / limit)
        benchmark.extra_info.update(info)
    return run
