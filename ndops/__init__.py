"""ndops: convolution, pooling, interpolation, padding, batch norm and fold/unfold for PyTorch
at any number of spatial dimensions.

    import ndops
    y = ndops.conv_nd(x, w, padding="same")          # x: (B, C, D0, D1, D2, D3)
    with ndops.backend("fallback"):                  # force a backend (tests, benchmarks)
        y2 = ndops.conv_nd(x, w, padding="same")

``ndops.functional`` mirrors ``torch.nn.functional``; ``ndops.nn`` holds the modules;
``ndops.models`` the networks built on them.
"""
from ._ext import has_extension, load_error
from ._backend import backend, available_backends, BACKENDS
from . import _ops  # noqa: F401  (attaches autograd + fake kernels to torch.ops.ndops.*)
from . import functional
from .functional import *  # noqa: F401,F403
from .functional import __all__ as _functional_all
from . import nn

__version__ = "0.1.0"
__all__ = ["has_extension", "load_error", "backend", "available_backends", "BACKENDS",
           "functional", "nn"] + list(_functional_all)
