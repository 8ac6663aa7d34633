"""Loading the compiled extension ``ndops._C`` (which registers ``torch.ops.ndops.*``).

Importing ``ndops._C`` runs the C++ static initializers that declare every op schema
(``TORCH_LIBRARY(ndops, ...)``) and register the CPU/CUDA kernels. When the extension was not
built, or cannot be loaded against this torch, ndops still works through its pure-PyTorch
fallback; ``load_error()`` says why the extension is missing.
"""
import ctypes
import warnings

import torch

_LOAD_ERROR = None
try:
    from . import _C  # noqa: F401  (import for its side effect: op registration)
except ImportError as exc:  # not built, or built against another torch
    _LOAD_ERROR = exc


def _read_cuda_build_version():
    """"major.minor" of the CUDA toolkit the extension was compiled with, or None for a build
    without CUDA kernels (read from the symbol ndops_cuda_build_version, csrc/cuda/launch.cu)."""
    if _LOAD_ERROR is not None:
        return None
    try:
        version = ctypes.CDLL(_C.__file__).ndops_cuda_build_version()
    except (OSError, AttributeError):
        return None
    return f"{version // 1000}.{version % 1000 // 10}"


_CUDA_BUILD_VERSION = _read_cuda_build_version()
if _CUDA_BUILD_VERSION is not None and torch.version.cuda is not None and \
        _CUDA_BUILD_VERSION != ".".join(torch.version.cuda.split(".")[:2]):
    warnings.warn(
        f"ndops: the extension's CUDA kernels were built with CUDA {_CUDA_BUILD_VERSION} but "
        f"this torch uses CUDA {torch.version.cuda}; they may fail to load or run. Rebuild "
        "ndops against this torch (`pip install --no-build-isolation -e .`) with a matching "
        "CUDA toolkit (CUDA_HOME).", RuntimeWarning, stacklevel=2)


def has_extension() -> bool:
    """True when the compiled kernels (``torch.ops.ndops``) are available."""
    return _LOAD_ERROR is None


def cuda_build_version():
    """"major.minor" of the CUDA toolkit the extension's CUDA kernels were built with, or None
    when the extension is missing or was built without CUDA."""
    return _CUDA_BUILD_VERSION


def load_error():
    """The ImportError raised while loading ``ndops._C``, or None when it loaded."""
    return _LOAD_ERROR


def has_ext_op(name: str) -> bool:
    """True when ``torch.ops.ndops.<name>`` exists (the extension is loaded and defines it)."""
    if _LOAD_ERROR is not None:
        return False
    try:
        getattr(torch.ops.ndops, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def op_names():
    """Names (without the ``ndops::`` namespace) of every op the extension registered; empty
    when it is not loaded."""
    if _LOAD_ERROR is not None:
        return []
    return sorted(name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("ndops::"))


def has_kernel(op: str, dispatch_key: str) -> bool:
    """True when ``torch.ops.ndops.<op>`` has a kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"ndops::{op}", dispatch_key)


def ops_without_kernel(dispatch_key: str = "CUDA"):
    """Sorted names of the ``torch.ops.ndops`` ops that have no kernel registered for
    ``dispatch_key`` ("CPU", "CUDA"); empty when every op has one. Raises RuntimeError when the
    extension is not loaded (there is nothing to check)."""
    if _LOAD_ERROR is not None:
        raise RuntimeError(f"ndops: the extension ndops._C is not loaded ({_LOAD_ERROR})")
    return [op for op in op_names() if not has_kernel(op, dispatch_key)]
