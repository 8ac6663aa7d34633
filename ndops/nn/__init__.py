"""``ndops.nn``: drop-in modules for torch's conv, pooling, batch norm, upsample, pad and
fold/unfold layers at any number of spatial dims N.

Each takes the arguments of torch's 2-D module (same names, order and defaults) plus a
keyword-only ``spatial_dims``. N comes from ``spatial_dims`` or the length of a tuple argument;
modules whose parameters depend on N (ConvNd, ConvTransposeNd) or whose input does not carry it
(FoldNd) require one of them, the others can take N from the input at forward time. Parameter
and buffer names are torch's, so state dicts move both ways between ``nn.Conv2d`` and
``ConvNd(..., spatial_dims=2)`` and the like.
"""
from .conv import ConvNd, ConvTransposeNd
from .pool import MaxPoolNd, AvgPoolNd, AdaptiveAvgPoolNd, AdaptiveMaxPoolNd, MaxUnpoolNd
from .norm import BatchNormNd
from .upsample import UpsampleNd
from .pad import PadNd
from .fold import UnfoldNd, FoldNd

__all__ = ["ConvNd", "ConvTransposeNd", "MaxPoolNd", "AvgPoolNd", "AdaptiveAvgPoolNd",
           "AdaptiveMaxPoolNd", "MaxUnpoolNd", "BatchNormNd", "UpsampleNd", "PadNd", "UnfoldNd",
           "FoldNd"]
