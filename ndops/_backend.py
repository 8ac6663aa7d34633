"""Which implementation runs an op: ``native`` (torch, N <= 3), ``ext`` (the compiled kernels in
``torch.ops.ndops``) or ``fallback`` (pure PyTorch, any N).

The default is the fastest available for the op, N and device (a small table, ``_PREFERENCE``,
kept in step with the benchmarks); ``with ndops.backend(name):`` forces one, which tests and
benchmarks use to run every backend on the same cases. Forcing a backend that cannot run a call
raises a RuntimeError naming the op, N and the backends that could.
"""
import contextlib
import contextvars

import torch

from ._ext import has_ext_op

BACKENDS = ("native", "ext", "fallback")

_forced = contextvars.ContextVar("ndops_backend", default=None)

# The highest N torch itself implements, per op (ops not listed: 3).
_NATIVE_MAX_DIMS = {"batch_norm_nd": 10**9}

# Default order of preference when nothing is forced: callable(n, device_type) -> names.
# Measured (BENCHMARKS.md): torch's own kernels win for N <= 3; above, the compiled kernel
# beats the fallback wherever one exists.
_DEFAULT_ORDER = ("native", "ext", "fallback")
_PREFERENCE = {}


@contextlib.contextmanager
def backend(name):
    """Force every ndops op inside the block onto one backend.

    ``name`` is one of ``"native"``, ``"ext"``, ``"fallback"``, or ``None``/``"auto"`` for the
    default choice. Nested blocks override outer ones; the setting is per thread/task.
    """
    if name == "auto":
        name = None
    if name is not None and name not in BACKENDS:
        raise ValueError(f"ndops.backend: name must be one of {BACKENDS} or 'auto', got {name!r}")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)


def forced_backend():
    """The backend forced by the innermost ``ndops.backend`` block, or None."""
    return _forced.get()


def _ext_can_run(op, device_type):
    if not has_ext_op(op):
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"ndops::{op}", key)


def available_backends(op, n, device="cpu"):
    """The backends able to run ``op`` with ``n`` spatial dims on ``device``, fastest first."""
    device_type = torch.device(device).type
    able = {
        "native": n <= _NATIVE_MAX_DIMS.get(op, 3),
        "ext": _ext_can_run(op, device_type),
        "fallback": True,
    }
    order = _PREFERENCE.get(op, lambda n, d: _DEFAULT_ORDER)(n, device_type)
    return [name for name in order if able[name]]


def choose(op, n, device, native_ok=True):
    """The backend to run ``op`` (N = ``n``) on ``device``: the forced one, else the fastest.

    ``native_ok=False`` tells that torch cannot run this particular call (an argument it does
    not support), so ``native`` is not offered.
    """
    able = [b for b in available_backends(op, n, device) if b != "native" or native_ok]
    forced = _forced.get()
    if forced is None:
        return able[0]
    if forced not in able:
        raise RuntimeError(
            f"ndops.{op}: backend {forced!r} cannot run this call (N={n}, device "
            f"{torch.device(device).type}); available here: {able}"
        )
    return forced
