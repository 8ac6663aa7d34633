"""Convolution blocks for any number of spatial dims: ``ConvNormAct`` (one conv -> norm -> act
-> dropout unit) and ``ConvBlock`` (several of them, with optional residual shortcut, time /
condition embedding injected as scale-shift, and attention at the end)."""
from torch import nn

from .attention import build_attention
from .layers import get_act, get_conv, get_dropout, get_norm, get_norm_act, parse_spec

__all__ = ["ConvNormAct", "ConvBlock"]

# Norms that subtract a per-channel mean: a conv bias in front of them is cancelled exactly.
_BIAS_CANCELLING_NORMS = ("batch", "instance")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"ndops.models: {name} must be an int >= {minimum}, got {value!r}")


def _center_crop(x, spatial_shape):
    """The centered window of ``x``'s spatial dims with the given size (used by 'valid' blocks,
    whose output is smaller than their input, to align the residual shortcut)."""
    slices = [slice(None), slice(None)]
    for size, target in zip(x.shape[2:], spatial_shape):
        start = (size - target) // 2
        slices.append(slice(start, start + target))
    return x[tuple(slices)]


class ConvNormAct(nn.Module):
    """conv -> norm -> act -> dropout, for (B, C_in, *spatial) inputs with N spatial dims.

    Args:
        spatial_dims: N.
        in_channels, out_channels: channel counts.
        kernel_size, stride, dilation, groups: the convolution's (int or N ints).
        padding: None ("same"-like ``k // 2 * dilation``), an int/tuple, or "same"/"valid".
        norm, act: layer specs (``ndops.models.layers.get_norm`` / ``get_act``).
        dropout: element-wise dropout probability after the activation.
        bias: the conv's bias; None (default) drops it in front of "batch"/"instance" norms,
            which cancel it exactly, and keeps it otherwise.
        fuse: let a batch norm and the activation after it run as one fused op
            (``ndops.models.layers.get_norm_act``); ``act`` is then ``nn.Identity``. Same
            parameters and results; False keeps them apart (``ConvBlock`` does so where it adds
            something between the two).

    Attributes ``conv``, ``norm``, ``act``, ``dropout`` are the four layers.

    Example::

        >>> unit = ConvNormAct(4, 2, 8, stride=2, norm="instance", act="gelu")
        >>> unit(torch.randn(1, 2, 6, 6, 6, 6)).shape
        torch.Size([1, 8, 3, 3, 3, 3])
    """

    def __init__(self, spatial_dims, in_channels, out_channels, kernel_size=3, stride=1,
                 padding=None, dilation=1, groups=1, norm="batch", act="relu", dropout=0.0,
                 bias=None, fuse=True):
        super().__init__()
        if bias is None:
            bias = parse_spec(norm, "norm")[0] not in _BIAS_CANCELLING_NORMS
        self.conv = get_conv(spatial_dims, in_channels, out_channels, kernel_size, stride,
                             padding, dilation, groups, bias)
        if fuse:
            self.norm, self.act = get_norm_act(norm, act, spatial_dims, out_channels)
        else:
            self.norm, self.act = get_norm(norm, spatial_dims, out_channels), get_act(act)
        self.dropout = get_dropout(spatial_dims, dropout)

    def forward(self, x):
        return self.dropout(self.act(self.norm(self.conv(x))))


class ConvBlock(nn.Module):
    """``num_convs`` conv -> norm -> act -> dropout units (``ConvNormAct``), at any N.

    Args:
        spatial_dims: N, the number of spatial dims.
        in_channels, out_channels: channels of the input and of every conv's output.
        num_convs: number of convolutions (>= 1).
        kernel_size: int or N ints (the same for every conv).
        stride: stride of the first conv (the block downsamples by it); the others use 1.
        norm, act: layer specs, e.g. "batch", ("group", {"num_groups": 8}), "relu",
            ("leaky_relu", {"negative_slope": 0.1}).
        dropout: element-wise dropout probability after each activation.
        residual: add a shortcut of the input: the identity when the shapes match, else a
            (strided) 1x1 conv projection; in 'valid' mode the shortcut is center-cropped to the
            output size. It is added before the last activation (ResNet-style).
        emb_channels: when given, ``forward`` takes ``emb`` of shape (B, emb_channels) (e.g. a
            timestep embedding); SiLU + Linear map it to 2 * out_channels numbers per sample,
            split into (scale, shift) and applied after the first norm as
            ``h * (1 + scale) + shift`` (FiLM / "scale-shift norm").
        padding: "same" keeps the spatial size at stride 1 (``ceil(size / stride)`` for odd
            kernels with a stride); "valid" pads nothing, each conv shrinks every dim by
            ``kernel_size - 1`` (the 2015 U-Net).
        attention: an attention spec for ``ndops.models.attention.build_attention`` ("channel",
            "spatial", "cbam", "self", ("self", {"num_heads": 4}), ...), applied to the block's
            output; None for none.

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *spatial_out).

    Example::

        >>> block = ConvBlock(3, 1, 16, residual=True, emb_channels=32, attention="cbam")
        >>> block(torch.randn(2, 1, 9, 10, 11), torch.randn(2, 32)).shape
        torch.Size([2, 16, 9, 10, 11])
    """

    def __init__(self, spatial_dims, in_channels, out_channels, num_convs=2, kernel_size=3,
                 stride=1, norm="batch", act="relu", dropout=0.0, residual=False,
                 emb_channels=None, padding="same", attention=None):
        super().__init__()
        _check_int("num_convs", num_convs, 1)
        if padding not in ("same", "valid"):
            raise ValueError(f"ndops.models: padding must be 'same' or 'valid', got {padding!r}")
        if emb_channels is not None:
            _check_int("emb_channels", emb_channels, 1)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.emb_channels = emb_channels
        self.units = nn.ModuleList(
            ConvNormAct(spatial_dims, in_channels if i == 0 else out_channels, out_channels,
                        kernel_size, stride if i == 0 else 1,
                        self._conv_padding(spatial_dims, kernel_size, stride if i == 0 else 1,
                                           padding),
                        norm=norm, act=act, dropout=dropout,
                        # no fused norm+act where forward adds scale-shift or the shortcut
                        fuse=not ((i == 0 and emb_channels is not None)
                                  or (i == num_convs - 1 and residual)))
            for i in range(num_convs))
        self.emb_proj = (None if emb_channels is None else
                         nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels)))
        self.shortcut = None
        if residual:
            strides = stride if isinstance(stride, (tuple, list)) else (stride,) * spatial_dims
            if in_channels == out_channels and all(s == 1 for s in strides):
                self.shortcut = nn.Identity()
            else:
                self.shortcut = get_conv(spatial_dims, in_channels, out_channels, 1, stride)
        self.attention = build_attention(attention, spatial_dims, out_channels)

    @staticmethod
    def _conv_padding(spatial_dims, kernel_size, stride, padding):
        if padding == "valid":
            return 0
        kernels = (kernel_size if isinstance(kernel_size, (tuple, list))
                   else (kernel_size,) * spatial_dims)
        strides = stride if isinstance(stride, (tuple, list)) else (stride,)
        if all(k % 2 for k in kernels):
            return None  # k // 2 per side: the size at stride 1, ceil(size / stride) otherwise
        if any(s != 1 for s in strides):
            raise ValueError(f"ndops.models.ConvBlock: padding='same' with an even kernel_size "
                             f"({kernel_size!r}) needs stride 1, got stride={stride!r}; use an "
                             f"odd kernel_size or padding='valid'")
        return "same"  # torch pads even kernels asymmetrically (one more on the right)

    def forward(self, x, emb=None):
        """x: (B, in_channels, *spatial); emb: (B, emb_channels) when the block was built with
        ``emb_channels``, else None."""
        if (emb is None) != (self.emb_proj is None):
            raise ValueError(
                "ndops.models.ConvBlock: emb must be given exactly when the block has "
                f"emb_channels (emb_channels={self.emb_channels}, emb "
                f"{'missing' if emb is None else 'given'})")
        h = x
        last = len(self.units) - 1
        for i, unit in enumerate(self.units):
            h = unit.norm(unit.conv(h))
            if i == 0 and emb is not None:
                scale_shift = self.emb_proj(emb).reshape(
                    emb.shape[0], -1, *([1] * (h.dim() - 2)))
                scale, shift = scale_shift.chunk(2, dim=1)
                h = h * (1 + scale) + shift
            if i == last and self.shortcut is not None:
                shortcut = self.shortcut(x)
                if shortcut.shape[2:] != h.shape[2:]:
                    shortcut = _center_crop(shortcut, h.shape[2:])
                h = h + shortcut
            h = unit.dropout(unit.act(h))
        return self.attention(h)
