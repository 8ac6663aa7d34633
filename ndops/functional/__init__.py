"""``ndops.functional``: ``torch.nn.functional``'s ops for any number of spatial dims.

Every op normalizes and validates its arguments (``ndops._args``), picks a backend
(``ndops._backend``) and calls it. How N is determined is described in ``ndops._args``.
"""
from .pad import pad_nd
from .conv import conv_nd, conv_transpose_nd
from .conv_bias_act import conv_bias_act_nd
from .pool import (max_pool_nd, max_unpool_nd, avg_pool_nd, adaptive_avg_pool_nd,
                   adaptive_max_pool_nd)
from .interpolate import interpolate_nd
from .norm import batch_norm_nd, batch_norm_act_nd
from .fold import unfold_nd, fold_nd

__all__ = ["pad_nd", "conv_nd", "conv_transpose_nd", "conv_bias_act_nd", "max_pool_nd",
           "max_unpool_nd", "avg_pool_nd", "adaptive_avg_pool_nd", "adaptive_max_pool_nd",
           "interpolate_nd", "batch_norm_nd", "batch_norm_act_nd", "unfold_nd", "fold_nd"]
