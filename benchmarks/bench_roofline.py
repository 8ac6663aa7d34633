"""The machine's limits, timed by pytest-benchmark with the calls ``ndops-bench`` uses
(``ndops.bench.limits``): a large fp32 matmul and a channels-last 1x1 convolution (GEMM peak),
a large copy into an existing buffer (bandwidth) and a write into a fresh allocation.

    THP_MEM_ALLOC_ENABLE=1 pytest benchmarks/bench_roofline.py benchmarks/bench_pool.py \
        --benchmark-only

A memory-bound op's "% of bandwidth" is its GB/s over the copy row's GB/s of the same run.
"""
import os

import pytest

from ndops.bench.limits import copy_calls, gemm_calls

THP = os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")
SCALE = os.environ.get("NDOPS_BENCH_SCALE", "normal")


def _record(benchmark, key, amount):
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info.update({key: amount / benchmark.stats["median"] / 1e9, "thp": THP})


@pytest.mark.parametrize("index", range(2), ids=["matmul", "conv1x1"])
def test_gemm_peak(benchmark, index):
    name, call, flops = gemm_calls("cpu", SCALE)[index]
    benchmark.extra_info["call"] = name
    benchmark(call)
    _record(benchmark, "gflops", flops)


@pytest.mark.parametrize("index", range(2), ids=["copy", "fresh_write"])
def test_bandwidth(benchmark, index):
    name, call, nbytes = copy_calls("cpu", SCALE)[index]
    benchmark.extra_info["call"] = name
    benchmark(call)
    _record(benchmark, "gbps", nbytes)
