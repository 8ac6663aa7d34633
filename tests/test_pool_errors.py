"""Every bad argument of the pooling ops raises the documented error, on every backend."""
import pytest
import torch

import ndops

from conftest import backends_for


def x_(n, *, c=2, size=6, dtype=torch.float32):
    return torch.randn(2, c, *(size,) * n).to(dtype)


def pooled(n):
    return ndops.max_pool_nd(x_(n), 2, return_indices=True)


# (name, op, call(n) -> None, exception, match)
CASES = [
    # max_pool_nd
    ("max rank", "max_pool_nd", lambda n: ndops.max_pool_nd(torch.randn(2, 3), 2),
     ValueError, "input must have shape"),
    ("max rank vs tuple", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n), (2,) * (n + 2)),
     ValueError, "input must have shape"),
    ("max tuple length", "max_pool_nd",
     lambda n: ndops.max_pool_nd(x_(n), (2,) * n, stride=(1,) * (n - 1)), ValueError, "stride"),
    ("max spatial_dims vs tuple", "max_pool_nd",
     lambda n: ndops.max_pool_nd(x_(n), (2,) * (n + 1), spatial_dims=n), ValueError,
     "kernel_size"),
    ("max kernel type", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n), 2.5), ValueError,
     "kernel_size must be an int"),
    ("max kernel 0", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n), 0), ValueError,
     "kernel_size must be > 0"),
    ("max stride 0", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n), 2, 0), ValueError,
     "stride must be > 0"),
    ("max dilation 0", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n), 2, dilation=0),
     ValueError, "dilation must be > 0"),
    ("max padding < 0", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n), 2, padding=-1),
     ValueError, "padding must be >= 0"),
    ("max padding > k/2", "max_pool_nd",
     lambda n: ndops.max_pool_nd(x_(n), 3, padding=2, dilation=2), ValueError,
     "padding must be at most half of kernel_size"),
    ("max empty output", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n), 7), ValueError,
     "output would be empty"),
    ("max window in padding only", "max_pool_nd",
     lambda n: ndops.max_pool_nd(x_(n, size=2), 2, padding=1, dilation=3), ValueError,
     "dilation=.*pools no input element"),
    ("max bool", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n, dtype=torch.bool), 2),
     RuntimeError, "input must be a floating-point or integer tensor"),
    ("max complex", "max_pool_nd",
     lambda n: ndops.max_pool_nd(x_(n, dtype=torch.complex64), 2), RuntimeError,
     "input must be a floating-point or integer tensor"),
    ("max zero channels", "max_pool_nd", lambda n: ndops.max_pool_nd(x_(n, c=0), 2),
     ValueError, "input must have non-zero channel and spatial sizes"),
    # avg_pool_nd
    ("avg rank", "avg_pool_nd", lambda n: ndops.avg_pool_nd(torch.randn(2, 3), 2),
     ValueError, "input must have shape"),
    ("avg tuple length", "avg_pool_nd",
     lambda n: ndops.avg_pool_nd(x_(n), 2, padding=(0,) * (n + 1), spatial_dims=n),
     ValueError, "padding"),
    ("avg kernel 0", "avg_pool_nd", lambda n: ndops.avg_pool_nd(x_(n), 0), ValueError,
     "kernel_size must be > 0"),
    ("avg stride < 0", "avg_pool_nd", lambda n: ndops.avg_pool_nd(x_(n), 2, -1), ValueError,
     "stride must be > 0"),
    ("avg padding < 0", "avg_pool_nd", lambda n: ndops.avg_pool_nd(x_(n), 2, padding=-1),
     ValueError, "padding must be >= 0"),
    ("avg padding > k/2", "avg_pool_nd", lambda n: ndops.avg_pool_nd(x_(n), 1, padding=1),
     ValueError, "padding must be at most half of kernel_size"),
    ("avg empty output", "avg_pool_nd",
     lambda n: ndops.avg_pool_nd(x_(n, size=2), 5, padding=1), ValueError,
     "output would be empty"),
    ("avg divisor 0", "avg_pool_nd", lambda n: ndops.avg_pool_nd(x_(n), 2, divisor_override=0),
     ValueError, "divisor_override must be None or a non-zero int"),
    ("avg int dtype", "avg_pool_nd", lambda n: ndops.avg_pool_nd(x_(n, dtype=torch.int64), 2),
     RuntimeError, "input must be a floating-point tensor"),
    ("avg zero spatial", "avg_pool_nd", lambda n: ndops.avg_pool_nd(x_(n, size=0), 1),
     ValueError, "input must have non-zero channel and spatial sizes"),
    # max_unpool_nd
    ("unpool indices shape", "max_unpool_nd",
     lambda n: ndops.max_unpool_nd(pooled(n)[0], pooled(n)[1][:1], 2), ValueError,
     "indices must have the shape of input"),
    ("unpool indices dtype", "max_unpool_nd",
     lambda n: ndops.max_unpool_nd(pooled(n)[0], pooled(n)[1].int(), 2), RuntimeError,
     "indices must be an int64 tensor"),
    ("unpool indices range", "max_unpool_nd",
     lambda n: ndops.max_unpool_nd(pooled(n)[0], pooled(n)[1] + 6 ** n, 2), ValueError,
     "indices must lie in"),
    ("unpool output_size length", "max_unpool_nd",
     lambda n: ndops.max_unpool_nd(*pooled(n), 2, output_size=(6,) * (n + 1)), ValueError,
     "output_size must be a sequence of"),
    ("unpool output_size range", "max_unpool_nd",
     lambda n: ndops.max_unpool_nd(*pooled(n), 2, output_size=(8,) * n), ValueError,
     "output_size .* is out of range"),
    ("unpool negative default", "max_unpool_nd",
     lambda n: ndops.max_unpool_nd(*pooled(n), 1, padding=3), ValueError,
     "output size .* is negative"),
    ("unpool kernel 0", "max_unpool_nd", lambda n: ndops.max_unpool_nd(*pooled(n), 0),
     ValueError, "kernel_size must be > 0"),
    ("unpool stride 0", "max_unpool_nd", lambda n: ndops.max_unpool_nd(*pooled(n), 2, 0),
     ValueError, "stride must be > 0"),
    ("unpool int input", "max_unpool_nd",
     lambda n: ndops.max_unpool_nd(pooled(n)[0].long(), pooled(n)[1], 2), RuntimeError,
     "input must be a floating-point tensor"),
    # adaptive pools
    ("adaptive avg length", "adaptive_avg_pool_nd",
     lambda n: ndops.adaptive_avg_pool_nd(x_(n), (2,) * (n - 1), spatial_dims=n), ValueError,
     "output_size"),
    ("adaptive avg negative", "adaptive_avg_pool_nd",
     lambda n: ndops.adaptive_avg_pool_nd(x_(n), -1), ValueError, "output_size must be >= 0"),
    ("adaptive avg type", "adaptive_avg_pool_nd",
     lambda n: ndops.adaptive_avg_pool_nd(x_(n), (2.5,) * n), ValueError,
     "output_size must be an int or a tuple"),
    ("adaptive avg int dtype", "adaptive_avg_pool_nd",
     lambda n: ndops.adaptive_avg_pool_nd(x_(n, dtype=torch.int32), 2), RuntimeError,
     "input must be a floating-point tensor"),
    ("adaptive max length", "adaptive_max_pool_nd",
     lambda n: ndops.adaptive_max_pool_nd(x_(n), (2,) * (n + 1), spatial_dims=n), ValueError,
     "output_size"),
    ("adaptive max negative", "adaptive_max_pool_nd",
     lambda n: ndops.adaptive_max_pool_nd(x_(n), (2,) * (n - 1) + (-3,)), ValueError,
     "output_size must be >= 0"),
    ("adaptive max int dtype", "adaptive_max_pool_nd",
     lambda n: ndops.adaptive_max_pool_nd(x_(n, dtype=torch.int64), 2), RuntimeError,
     "input must be a floating-point tensor"),
    ("adaptive max zero spatial", "adaptive_max_pool_nd",
     lambda n: ndops.adaptive_max_pool_nd(x_(n, size=0), 1), ValueError,
     "input must have non-zero channel and spatial sizes"),
]


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("name,op,call,error,match", CASES, ids=[c[0] for c in CASES])
def test_bad_argument_raises_on_every_backend(name, op, call, error, match, n):
    for backend in backends_for(op, n):
        with ndops.backend(backend), pytest.raises(error, match=f"ndops.{op}: .*{match}"):
            call(n)
