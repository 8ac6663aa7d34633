"""One representative call per op and N, shared by ``python -m ndops`` and the benchmarks.

Each case builder takes N, a dtype and a scale ("check": tiny, quick for any N; "bench": large
enough to time) and returns a ``Case``: the functional op, its positional tensors and keyword
arguments. Calling ``case.run()`` evaluates it under whatever backend is forced around it.
"""
from dataclasses import dataclass, field

import torch

from . import functional as F

# Spatial edge length per N: "check" keeps every op under a few ms even at N = 5; "bench"
# gives inputs of roughly 1-4 M elements.
_EDGE = {
    "check": {1: 64, 2: 24, 3: 10, 4: 6, 5: 5},
    "bench": {1: 65536, 2: 384, 3: 64, 4: 20, 5: 10},
}


@dataclass
class Case:
    op: str
    n: int
    fn: object
    tensors: tuple
    kwargs: dict = field(default_factory=dict)

    def run(self, tensors=None):
        return self.fn(*(self.tensors if tensors is None else tensors), **self.kwargs)

    def describe(self):
        shapes = " ".join("x".join(map(str, t.shape)) for t in self.tensors)
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{shapes} {args}".strip()


def _input(n, scale, dtype, channels=4, batch=2):
    edge = _EDGE[scale][n]
    return torch.randn(batch, channels, *([edge] * n), dtype=dtype)


def _conv(n, scale, dtype):
    x = _input(n, scale, dtype)
    w = torch.randn(8, 4, *([3] * n), dtype=dtype) * 0.1
    b = torch.randn(8, dtype=dtype)
    return Case("conv_nd", n, F.conv_nd, (x, w, b), {"padding": 1})


def _conv_transpose(n, scale, dtype):
    x = _input(n, scale, dtype)
    w = torch.randn(4, 8, *([3] * n), dtype=dtype) * 0.1
    return Case("conv_transpose_nd", n, F.conv_transpose_nd, (x, w),
                {"stride": 2, "padding": 1, "output_padding": 1})


def _max_unpool(n, scale, dtype):
    x = _input(n, scale, dtype)
    pooled, indices = F.max_pool_nd(x, 2, return_indices=True)
    return Case("max_unpool_nd", n, F.max_unpool_nd, (pooled, indices),
                {"kernel_size": 2, "output_size": tuple(x.shape[2:])})


def _fold(n, scale, dtype):
    edge = _EDGE[scale][n]
    blocks = F.unfold_nd(_input(n, scale, dtype), 2, stride=2)
    return Case("fold_nd", n, F.fold_nd, (blocks,),
                {"output_size": (edge,) * n, "kernel_size": (2,) * n, "stride": 2})


def _batch_norm(n, scale, dtype):
    x = _input(n, scale, dtype)
    c = x.shape[1]
    return Case("batch_norm_nd", n, F.batch_norm_nd,
                (x, torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype),
                 torch.rand(c, dtype=dtype) + 0.5, torch.randn(c, dtype=dtype)),
                {"training": True})


def _pad(n, scale, dtype):
    return Case("pad_nd", n, F.pad_nd, (_input(n, scale, dtype),),
                {"pad": (1, 2) * n, "mode": "reflect"})


def _simple(op, **kwargs):
    fn = getattr(F, op)
    return lambda n, scale, dtype: Case(op, n, fn, (_input(n, scale, dtype),), dict(kwargs))


BUILDERS = {
    "pad_nd": _pad,
    "conv_nd": _conv,
    "conv_transpose_nd": _conv_transpose,
    "max_pool_nd": _simple("max_pool_nd", kernel_size=2),
    "max_unpool_nd": _max_unpool,
    "avg_pool_nd": _simple("avg_pool_nd", kernel_size=3, stride=2, padding=1),
    "adaptive_avg_pool_nd": _simple("adaptive_avg_pool_nd", output_size=3),
    "adaptive_max_pool_nd": _simple("adaptive_max_pool_nd", output_size=3),
    "interpolate_nd": _simple("interpolate_nd", scale_factor=2, mode="linear"),
    "batch_norm_nd": _batch_norm,
    "unfold_nd": _simple("unfold_nd", kernel_size=2, stride=2),
    "fold_nd": _fold,
}


def make_case(op, n, dtype=torch.float32, scale="check"):
    """The representative call of ``op`` at N = ``n``."""
    return BUILDERS[op](n, scale, dtype)
