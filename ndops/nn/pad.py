"""``PadNd``: torch's ``ConstantPad*d``, ``ReflectionPad*d``, ``ReplicationPad*d`` and
``CircularPad*d`` as one module, for any number of spatial dims."""
from torch import nn

from .. import functional
from .._args import _is_int, _is_sequence
from ._spatial import resolve_spatial_dims

PAD_MODES = ("constant", "reflect", "replicate", "circular")


class PadNd(nn.Module):
    """Pads the N spatial dims of (B, C, *spatial) or (C, *spatial) inputs.

    ``padding``: an int (every side of every spatial dim) or a tuple of 2N ints in ``F.pad``
    order, last dim first: (last_begin, last_end, second_to_last_begin, ...). ``mode``: one of
    'constant', 'reflect', 'replicate', 'circular'; ``value`` fills 'constant' padding. N is
    ``spatial_dims``, else half the tuple's length, else (int padding) taken from the input as
    N = input.dim() - 2. Differences from torch: one module for the four modes, any N.
    """

    def __init__(self, padding, mode="constant", value=0.0, *, spatial_dims=None):
        super().__init__()
        if mode not in PAD_MODES:
            raise ValueError(f"ndops.nn.PadNd: mode must be one of {PAD_MODES}, got {mode!r}")
        if _is_sequence(padding):
            if len(padding) == 0 or len(padding) % 2 or not all(_is_int(p) for p in padding):
                raise ValueError(f"ndops.nn.PadNd: padding must be an int or a tuple of 2N "
                                 f"ints (begin, end per spatial dim), got {padding!r}")
            lengths = {"padding": len(padding) // 2}
        elif _is_int(padding):
            lengths = {}
        else:
            raise ValueError(f"ndops.nn.PadNd: padding must be an int or a tuple of 2N ints, "
                             f"got {padding!r}")
        n = resolve_spatial_dims("PadNd", spatial_dims, lengths, required=False)
        self.spatial_dims = n
        if _is_int(padding) and n is not None:
            padding = (padding,) * (2 * n)
        self.padding = tuple(padding) if _is_sequence(padding) else int(padding)
        self.mode = mode
        self.value = value

    def forward(self, input):
        padding = self.padding
        if isinstance(padding, int):
            n = input.dim() - 2
            if n < 1:
                raise ValueError(f"ndops.nn.PadNd: input must have shape (B, C, *spatial), got "
                                 f"shape {tuple(input.shape)}; for an unbatched input pass "
                                 f"spatial_dims=")
            padding = (padding,) * (2 * n)
        value = self.value if self.mode == "constant" else None
        return functional.pad_nd(input, padding, mode=self.mode, value=value,
                                 spatial_dims=self.spatial_dims)

    def extra_repr(self):
        text = f"padding={self.padding}, mode={self.mode!r}"
        if self.mode == "constant":
            text += f", value={self.value}"
        if self.spatial_dims is not None:
            text += f", spatial_dims={self.spatial_dims}"
        return text
