"""Loading the compiled extension ``ndops._C`` (which registers ``torch.ops.ndops.*``).

Importing ``ndops._C`` runs the C++ static initializers that declare every op schema
(``TORCH_LIBRARY(ndops, ...)``) and register the CPU/CUDA kernels. When the extension was not
built, or cannot be loaded against this torch, ndops still works through its pure-PyTorch
fallback; ``load_error()`` says why the extension is missing.
"""
import torch

_LOAD_ERROR = None
try:
    from . import _C  # noqa: F401  (import for its side effect: op registration)
except ImportError as exc:  # not built, or built against another torch
    _LOAD_ERROR = exc


def has_extension() -> bool:
    """True when the compiled kernels (``torch.ops.ndops``) are available."""
    return _LOAD_ERROR is None


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
