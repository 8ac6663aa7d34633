"""Which implementation runs an op: ``native`` (torch, N <= 3), ``ext`` (the compiled kernels in
``torch.ops.ndops``) or ``fallback`` (pure PyTorch, any N).

The default is the fastest available for the op, N and device (a small table, ``_PREFERENCE``,
kept in step with the benchmarks); ``with ndops.backend(name):`` forces one, which tests and
benchmarks use to run every backend on the same cases. Forcing a backend that cannot run a call
raises a RuntimeError naming the op, N and the backends that could.
"""
import contextlib
import threading

import torch

from ._ext import has_kernel, op_names

BACKENDS = ("native", "ext", "fallback")

# The forced backend, per thread. A threading.local (unlike a ContextVar) is traceable by
# torch.compile, which guards on its value, so compiled code follows `ndops.backend(...)` too.
_forced = threading.local()


def _ext_kernels():
    """{(op, device_type)} for every compiled kernel, read once at import (compile-friendly)."""
    return frozenset((op, device_type) for op in op_names()
                     for device_type, key in (("cpu", "CPU"), ("cuda", "CUDA"))
                     if has_kernel(op, key))


_EXT_KERNELS = _ext_kernels()

# The N torch itself implements, per op (ops not listed: 1 <= N <= 3).
_NATIVE_DIMS = {
    "batch_norm_nd": lambda n: True,  # F.batch_norm takes any rank
    "batch_norm_act_nd": lambda n: True,  # F.batch_norm + torch's activation, any rank
    "unfold_nd": lambda n: n == 2,    # F.unfold / F.fold are 2-D only
    "fold_nd": lambda n: n == 2,
}

# Default order of preference when nothing is forced: torch's own kernels first for N <= 3;
# above, the compiled kernel beats the fallback wherever one exists (BENCHMARKS.md). An op whose
# measurements say otherwise registers its own order with ``set_preference``.
DEFAULT_ORDER = ("native", "ext", "fallback")
_PREFERENCE = {}


def set_preference(op, order):
    """Make ``order(n, device_type, numel, call) -> tuple of backend names`` the default order
    for ``op`` (called by the functional module of ``op``, with the benchmark that justifies
    it). ``numel`` is the input's element count and ``call`` a dict of the call's arguments the
    op's rule reads (e.g. conv_nd: input, weight, stride, dilation), each None when the caller
    does not say."""
    _PREFERENCE[op] = order


def compiled_first_on_cpu(min_numel=0):
    """An order for ``set_preference``: the compiled kernel first on the CPU for inputs of at
    least ``min_numel`` elements (or of unknown size), torch's own first otherwise (small inputs,
    where the kernel's fixed cost of a few tens of microseconds loses, and other devices)."""
    def order(n, device_type, numel, call=None):
        if device_type == "cpu" and (numel is None or numel >= min_numel):
            return ("ext", "native", "fallback")
        return DEFAULT_ORDER
    return order


@contextlib.contextmanager
def backend(name):
    """Force every ndops op inside the block onto one backend.

    ``name`` is one of ``"native"``, ``"ext"``, ``"fallback"``, or ``None``/``"auto"`` for the
    default choice. Nested blocks override outer ones; the setting is per thread.
    """
    if name == "auto":
        name = None
    if name is not None and name not in BACKENDS:
        raise ValueError(f"ndops.backend: name must be one of {BACKENDS} or 'auto', got {name!r}")
    outer = getattr(_forced, "name", None)
    _forced.name = name
    try:
        yield
    finally:
        _forced.name = outer


def forced_backend():
    """The backend forced by the innermost ``ndops.backend`` block, or None."""
    return getattr(_forced, "name", None)


def available_backends(op, n, device="cpu", numel=None, call=None):
    """The backends able to run ``op`` with ``n`` spatial dims on ``device``, fastest first
    (for an input of ``numel`` elements, or the call's arguments ``call``, where the order
    depends on them: see ``set_preference``)."""
    device_type = torch.device(device).type
    able = {
        "native": _NATIVE_DIMS.get(op, lambda n: n <= 3)(n),
        "ext": (op, device_type) in _EXT_KERNELS,
        "fallback": True,
    }
    order = _PREFERENCE.get(op, lambda *_: DEFAULT_ORDER)(n, device_type, numel, call)
    return [name for name in order if able[name]]


def choose(op, n, device, native_ok=True, numel=None, call=None):
    """The backend to run ``op`` (N = ``n``) on ``device``: the forced one, else the fastest.

    ``native_ok=False`` tells that torch cannot run this particular call (an argument it does
    not support), so ``native`` is not offered. ``numel``, ``call``: the input's element count
    and the call's arguments, for ops whose fastest backend depends on them.
    """
    able = [b for b in available_backends(op, n, device, numel, call)
            if b != "native" or native_ok]
    forced = forced_backend()
    if forced is None:
        return able[0]
    if forced not in able:
        raise RuntimeError(
            f"ndops.{op}: backend {forced!r} cannot run this call (N={n}, device "
            f"{torch.device(device).type}); available here: {able}"
        )
    return forced
