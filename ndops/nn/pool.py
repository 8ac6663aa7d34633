"""Pooling modules at any N: ``MaxPoolNd``, ``AvgPoolNd``, ``AdaptiveAvgPoolNd``,
``AdaptiveMaxPoolNd``, ``MaxUnpoolNd``.

Arguments and defaults are those of torch's 2-D modules plus keyword-only ``spatial_dims``.
Pools hold no parameters, so N may stay unknown (``spatial_dims=None`` and int arguments): the
functional op then takes it from the input, N = input.dim() - 2 (``ndops._args``). A tuple
argument or ``spatial_dims`` fixes N at construction; disagreeing ones raise a ValueError.
"""
from torch import nn

from .. import functional
from .._args import as_tuple
from .._args import tuple_lengths
from ._spatial import resolve_spatial_dims


def _with_spatial_dims(text, spatial_dims):
    return text if spatial_dims is None else f"{text}, spatial_dims={spatial_dims}"


def _set_window(module, name, kernel_size, stride, padding, spatial_dims, **per_dim):
    """Sets ``module``'s spatial_dims (from ``spatial_dims`` and every per-dim argument given as
    a tuple), kernel_size, stride (default: kernel_size) and padding."""
    lengths = tuple_lengths(kernel_size=kernel_size, stride=stride, padding=padding, **per_dim)
    module.spatial_dims = resolve_spatial_dims(name, spatial_dims, lengths, required=False)
    module.kernel_size = kernel_size
    module.stride = stride if stride is not None else kernel_size
    module.padding = padding


class MaxPoolNd(nn.Module):
    """``nn.MaxPool2d`` for N spatial dims: input (B, C, *spatial) or (C, *spatial).

    ``stride`` defaults to ``kernel_size``; with ``return_indices=True`` the forward returns
    ``(output, indices)``, the indices flat over the N spatial dims of each (batch, channel)
    plane, as torch's (and ``MaxUnpoolNd`` takes them back).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False, *, spatial_dims=None):
        super().__init__()
        _set_window(self, "MaxPoolNd", kernel_size, stride, padding, spatial_dims,
                    dilation=dilation)
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        return functional.max_pool_nd(input, self.kernel_size, self.stride, self.padding,
                                      self.dilation, ceil_mode=self.ceil_mode,
                                      return_indices=self.return_indices,
                                      spatial_dims=self.spatial_dims)

    def extra_repr(self):
        return _with_spatial_dims(
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}", self.spatial_dims)


class AvgPoolNd(nn.Module):
    """``nn.AvgPool2d`` for N spatial dims: input (B, C, *spatial) or (C, *spatial).

    ``stride`` defaults to ``kernel_size``; ``count_include_pad`` and ``divisor_override`` as
    in torch.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, spatial_dims=None):
        super().__init__()
        _set_window(self, "AvgPoolNd", kernel_size, stride, padding, spatial_dims)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        return functional.avg_pool_nd(input, self.kernel_size, self.stride, self.padding,
                                      self.ceil_mode, self.count_include_pad,
                                      self.divisor_override, spatial_dims=self.spatial_dims)

    def extra_repr(self):
        return _with_spatial_dims(
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}",
            self.spatial_dims)


class AdaptiveAvgPoolNd(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for N spatial dims; ``output_size`` entries may be None (keep
    that input size)."""

    def __init__(self, output_size, *, spatial_dims=None):
        super().__init__()
        self.spatial_dims = resolve_spatial_dims(
            "AdaptiveAvgPoolNd", spatial_dims, tuple_lengths(output_size=output_size),
            required=False)
        self.output_size = output_size

    def forward(self, input):
        return functional.adaptive_avg_pool_nd(input, self.output_size,
                                               spatial_dims=self.spatial_dims)

    def extra_repr(self):
        return _with_spatial_dims(f"output_size={self.output_size}", self.spatial_dims)


class AdaptiveMaxPoolNd(nn.Module):
    """``nn.AdaptiveMaxPool2d`` for N spatial dims; ``output_size`` entries may be None (keep
    that input size); ``return_indices=True`` also returns the flat spatial indices."""

    def __init__(self, output_size, return_indices=False, *, spatial_dims=None):
        super().__init__()
        self.spatial_dims = resolve_spatial_dims(
            "AdaptiveMaxPoolNd", spatial_dims, tuple_lengths(output_size=output_size),
            required=False)
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input):
        return functional.adaptive_max_pool_nd(input, self.output_size, self.return_indices,
                                               spatial_dims=self.spatial_dims)

    def extra_repr(self):
        return _with_spatial_dims(f"output_size={self.output_size}", self.spatial_dims)


class MaxUnpoolNd(nn.Module):
    """``nn.MaxUnpool2d`` for N spatial dims: scatters ``input`` to the positions ``indices``
    (from ``MaxPoolNd(return_indices=True)``); ``forward(input, indices, output_size=None)``.

    ``stride`` defaults to ``kernel_size``. With N known at construction the arguments are
    stored as N-tuples, as torch does.
    """

    def __init__(self, kernel_size, stride=None, padding=0, *, spatial_dims=None):
        super().__init__()
        _set_window(self, "MaxUnpoolNd", kernel_size, stride, padding, spatial_dims)
        if self.spatial_dims is not None:
            for name in ("kernel_size", "stride", "padding"):
                setattr(self, name, as_tuple("nn.MaxUnpoolNd", name, getattr(self, name),
                                             self.spatial_dims))

    def forward(self, input, indices, output_size=None):
        return functional.max_unpool_nd(input, indices, self.kernel_size, self.stride,
                                        self.padding, output_size,
                                        spatial_dims=self.spatial_dims)

    def extra_repr(self):
        return _with_spatial_dims(
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}",
            self.spatial_dims)
