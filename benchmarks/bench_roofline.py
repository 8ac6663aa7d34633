"""The machine's limits, measured in the same run as the op benchmarks: large-copy bandwidth
and a GEMM peak (oneDNN 1x1 convolution, channels-last), as in ../shared/bench-anchors.

    pytest benchmarks/bench_roofline.py benchmarks/bench_pool.py --benchmark-only

Each result's extra_info carries GB/s or GFLOP/s; a memory-bound op's "% of bandwidth" is its
GB/s over the copy row's GB/s of the same run. Set THP_MEM_ALLOC_ENABLE=1 (torch's huge-page
allocator) to keep first-touch page faults of fresh outputs out of bandwidth numbers; the
setting is recorded in extra_info.
"""
import os

import torch
import torch.nn.functional as F

THP = os.environ.get("THP_MEM_ALLOC_ENABLE", "0")


def test_copy_bandwidth(benchmark):
    src = torch.randn(128 * 2**20)  # 512 MiB
    dst = torch.empty_like(src)
    benchmark(dst.copy_, src)
    moved = 2 * src.numel() * src.element_size()  # read + write
    benchmark.extra_info.update(gbs=moved / benchmark.stats["median"] / 1e9, thp=THP)


def test_gemm_peak(benchmark):
    # (4096 x 1024) @ (1024 x 1024) as a 1x1 conv over a 64x64 image, NHWC: oneDNN's best case.
    x = torch.randn(1, 1024, 64, 64).to(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1).to(memory_format=torch.channels_last)
    with torch.no_grad():
        benchmark(F.conv2d, x, w)
    flops = 2 * 4096 * 1024 * 1024
    benchmark.extra_info.update(gflops=flops / benchmark.stats["median"] / 1e9, thp=THP)
