"""``UpsampleNd``: ``nn.Upsample`` for inputs with any number of spatial dims."""
from torch import nn

from .. import functional
from .._args import tuple_lengths
from ._spatial import resolve_spatial_dims


class UpsampleNd(nn.Module):
    """Resizes (B, C, *spatial) or (C, *spatial) inputs by ``size`` or ``scale_factor``.

    Arguments and defaults are torch's ``nn.Upsample``; the modes are those of
    ``ndops.functional.interpolate_nd``. N is ``spatial_dims``, else the length of a tuple
    ``size``/``scale_factor``, else the functional op takes it from the input
    (N = input.dim() - 2).
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None, *, spatial_dims=None):
        super().__init__()
        self.spatial_dims = resolve_spatial_dims(
            "UpsampleNd", spatial_dims, tuple_lengths(size=size, scale_factor=scale_factor),
            required=False)
        self.size = size
        # Stored as floats, like torch (a falsy scale_factor means "not given").
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(factor) for factor in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        return functional.interpolate_nd(input, self.size, self.scale_factor, self.mode,
                                         self.align_corners,
                                         recompute_scale_factor=self.recompute_scale_factor,
                                         spatial_dims=self.spatial_dims)

    def extra_repr(self):
        if self.scale_factor is not None:
            text = f"scale_factor={self.scale_factor!r}"
        else:
            text = f"size={self.size!r}"
        text += f", mode={self.mode!r}"
        if self.spatial_dims is not None:
            text += f", spatial_dims={self.spatial_dims}"
        return text
