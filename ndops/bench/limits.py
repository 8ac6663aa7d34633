"""The machine's limits, measured in the same run as the op benchmarks.

Each limit is the rate of the fastest of several calls, and ``ndops-bench`` measures the limits
before and after its cases and keeps the higher (``best_limits``): a limit measured in a noisy
moment would flatter every row.

* GEMM peak (compute-bound rows' denominator): the best GFLOP/s of a large fp32
  ``torch.mm`` (MKL sgemm on the CPU) and of a 1x1 convolution over a channels-last image
  (oneDNN's GEMM, the library ``F.conv*`` and ndops' conv kernels run on; on the project
  machine it reaches ~420 GFLOP/s, ~90 % of the AVX-512 FMA peak, where MKL's sgemm stops at
  ~180). Both counted as 2*M*N*K.
* Copy bandwidth (memory-bound rows' denominator): ``dst.copy_(src)`` of a buffer far larger
  than the last-level cache into an EXISTING buffer, read + write counted.
* Fresh-write bandwidth (informative): ``torch.empty`` + ``fill_`` of the same size, a new
  allocation every call. Its first-touch page faults make it several times slower unless
  ``THP_MEM_ALLOC_ENABLE=1`` (torch's huge-page allocator); ops that return fresh outputs pay
  the same cost.

Sizes per scale: "normal" uses a 2048^3 matmul, a 4096x1024x1024 1x1 conv and 256 MiB buffers
(the CPU's L3 is 32 MiB); "tiny" (tests) uses small ones whose numbers mean nothing.
"""
import torch
import torch.nn.functional as F

from .timing import measure, synchronizer

_SIZES = {  # scale: (matmul n, 1x1 conv (pixels edge, channels), copy MiB)
    "normal": (2048, (64, 1024), 256),
    "tiny": (128, (8, 64), 4),
}
_CUDA_SIZES = {"normal": (8192, (128, 2048), 1024), "tiny": (256, (8, 64), 4)}


def _sizes(device, scale):
    return (_CUDA_SIZES if torch.device(device).type == "cuda" else _SIZES)[scale]


def gemm_calls(device="cpu", scale="normal", dtype=torch.float32):
    """[(name, call, FLOPs per call)]: the matmul and the 1x1 convolution."""
    n, (edge, channels), _ = _sizes(device, scale)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    x = torch.randn(1, channels, edge, edge, device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 1, 1, device=device, dtype=dtype)
    w = w.contiguous(memory_format=torch.channels_last)

    def conv1x1():
        with torch.no_grad():
            return F.conv2d(x, w)
    return [(f"torch.mm {n}^3", lambda: torch.mm(a, b, out=c), 2 * n ** 3),
            (f"1x1 conv channels-last {edge * edge}x{channels}x{channels}", conv1x1,
             2 * edge * edge * channels * channels)]


def copy_calls(device="cpu", scale="normal"):
    """[(name, call, bytes per call)]: copy into an existing buffer (read + write counted),
    and a write into a fresh allocation."""
    mib = _sizes(device, scale)[2]
    src = torch.empty(mib * 2 ** 20 // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    nbytes = src.numel() * src.element_size()
    return [(f"copy_ {mib} MiB", lambda: dst.copy_(src), 2 * nbytes),
            (f"fresh write {mib} MiB", lambda: torch.empty_like(src).fill_(1.0), nbytes)]


def _rate(call, amount, device, scale):
    """The rate of the fastest call: a limit is what the machine reaches, and on a shared
    machine interference only ever lowers it (the median of a noisy minute does not)."""
    quick = scale == "tiny"
    timing = measure(call, warmup=1 if quick else 2, repeats=3 if quick else 7, min_repeats=3,
                     budget_s=0.2 if quick else 2.0, sync=synchronizer(device))
    return amount / min(timing.samples) / 1e9


def _gemm_limit(rates):
    """{"gflops", "calls", "detail"} from the GFLOP/s of each GEMM call."""
    return {"gflops": max(rates.values()), "calls": rates,
            "detail": "best of " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())}


def measure_limits(device="cpu", scale="normal"):
    """{"gemm": {"gflops", "detail", per-call rates}, "copy": {"gbps", "fresh_write_gbps",
    "mib", "detail"}}."""
    gemm = {name: _rate(call, flops, device, scale)
            for name, call, flops in gemm_calls(device, scale)}
    (copy_name, copy, copy_bytes), (_, fresh, fresh_bytes) = copy_calls(device, scale)
    return {
        "gemm": _gemm_limit(gemm),
        "copy": {"gbps": _rate(copy, copy_bytes, device, scale),
                 "fresh_write_gbps": _rate(fresh, fresh_bytes, device, scale),
                 "mib": _sizes(device, scale)[2],
                 "detail": f"{copy_name} into an existing buffer, read + write counted"},
    }


def best_limits(first, second):
    """The higher of two measurements of each limit (``measure_limits`` results)."""
    gemm = {name: max(rate, second["gemm"]["calls"][name])
            for name, rate in first["gemm"]["calls"].items()}
    return {
        "gemm": _gemm_limit(gemm),
        "copy": dict(first["copy"],
                     gbps=max(first["copy"]["gbps"], second["copy"]["gbps"]),
                     fresh_write_gbps=max(first["copy"]["fresh_write_gbps"],
                                          second["copy"]["fresh_write_gbps"])),
    }
