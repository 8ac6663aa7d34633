"""``UnfoldNd`` and ``FoldNd``: ``nn.Unfold`` / ``nn.Fold`` (sliding blocks <-> columns) for
any number of spatial dims."""
from torch import nn

from .. import functional
from .._args import tuple_lengths
from ._spatial import resolve_spatial_dims


class UnfoldNd(nn.Module):
    """Extracts sliding blocks: (B, C, *spatial) -> (B, C * prod(kernel_size), L).

    Arguments and defaults are torch's ``nn.Unfold``. N is ``spatial_dims``, else the length of
    a tuple argument, else taken from the input (N = input.dim() - 2).
    """

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1, *, spatial_dims=None):
        super().__init__()
        lengths = tuple_lengths(kernel_size=kernel_size, dilation=dilation, padding=padding,
                                stride=stride)
        self.spatial_dims = resolve_spatial_dims("UnfoldNd", spatial_dims, lengths,
                                                 required=False)
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input):
        return functional.unfold_nd(input, self.kernel_size, self.dilation, self.padding,
                                    self.stride, spatial_dims=self.spatial_dims)

    def extra_repr(self):
        text = (f"kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")
        return text if self.spatial_dims is None else f"{text}, spatial_dims={self.spatial_dims}"


class FoldNd(nn.Module):
    """Sums columns back into blocks: (B, C * prod(kernel_size), L) -> (B, C, *output_size).

    Arguments and defaults are torch's ``nn.Fold``. The input does not carry N, so it must come
    from ``spatial_dims`` or a tuple argument; ints alone raise a ValueError asking for it
    (torch's ``nn.Fold`` is 2-D only).
    """

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1, *,
                 spatial_dims=None):
        super().__init__()
        lengths = tuple_lengths(output_size=output_size, kernel_size=kernel_size,
                                dilation=dilation, padding=padding, stride=stride)
        self.spatial_dims = resolve_spatial_dims("FoldNd", spatial_dims, lengths, required=True)
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input):
        return functional.fold_nd(input, self.output_size, self.kernel_size, self.dilation,
                                  self.padding, self.stride, spatial_dims=self.spatial_dims)

    def extra_repr(self):
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}, "
                f"spatial_dims={self.spatial_dims}")
