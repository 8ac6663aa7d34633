"""``ConvNd`` and ``ConvTransposeNd``: ``nn.Conv{1,2,3}d`` / ``nn.ConvTranspose{1,2,3}d`` at any N.

Both subclass torch's own ``_ConvNd`` / ``_ConvTransposeNd``, whose construction logic does not
depend on N: argument checks, the weight/bias shapes, ``reset_parameters`` (same RNG draws, so
the same seed gives the same weights bit for bit), ``extra_repr``, pickling and
``_output_padding``. Only ``forward`` changes: it calls ``ndops.functional`` with
``spatial_dims=N`` (``conv_bias_act_nd`` for a non-zeros ``padding_mode`` or an activation).
Being subclasses, the modules are also recognized by code that looks for
``isinstance(m, torch.nn.modules.conv._ConvNd)`` (weight init loops).
"""
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from .. import functional
from .._args import as_tuple, check_nonnegative, check_positive, tuple_lengths
from ..fallback.norm import ACTIVATIONS
from ._spatial import resolve_spatial_dims


def _conv_geometry(module, kernel_size, stride, padding, dilation, spatial_dims, **extra):
    """N and the per-dim tuples of a conv module (``padding`` may stay a string)."""
    lengths = tuple_lengths(kernel_size=kernel_size, stride=stride, dilation=dilation,
                            padding=padding, **extra)
    n = resolve_spatial_dims(module, spatial_dims, lengths, required=True)
    kernel_size = as_tuple(f"nn.{module}", "kernel_size", kernel_size, n)
    stride = as_tuple(f"nn.{module}", "stride", stride, n)
    dilation = as_tuple(f"nn.{module}", "dilation", dilation, n)
    check_positive(f"nn.{module}", "kernel_size", kernel_size)
    check_positive(f"nn.{module}", "stride", stride)
    check_positive(f"nn.{module}", "dilation", dilation)
    if not isinstance(padding, str):
        padding = as_tuple(f"nn.{module}", "padding", padding, n)
        check_nonnegative(f"nn.{module}", "padding", padding)
    return n, kernel_size, stride, padding, dilation


class ConvNd(_ConvNd):
    """``nn.Conv2d`` for N spatial dims: input (B, C_in, *spatial) or (C_in, *spatial).

    Arguments, defaults, parameters (``weight`` of shape (C_out, C_in/groups, *kernel_size),
    ``bias``) and initialization are torch's. N is ``spatial_dims`` or the length of a tuple
    argument (``ndops.nn._spatial``); ints alone raise a ValueError asking for it. Every
    ``padding_mode`` works at any N (torch: reflect/circular stop at 3 dims); the compiled
    kernel applies it while gathering, without a padded copy of the input. ``activation``
    (None or "none", "relu", "leaky_relu" with ``negative_slope``, "silu", "gelu",
    "gelu_tanh") follows the conv, fused into it (``ndops.functional.conv_bias_act_nd``);
    parameters and state_dict are those of torch's Conv whatever the activation.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *,
                 spatial_dims=None, activation=None, negative_slope=0.01):
        n, kernel_size, stride, padding, dilation = _conv_geometry(
            "ConvNd", kernel_size, stride, padding, dilation, spatial_dims)
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"ndops.nn.ConvNd: activation must be None or one of "
                             f"{ACTIVATIONS}, got {activation!r}")
        super().__init__(in_channels=in_channels, out_channels=out_channels,
                         kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, transposed=False, output_padding=(0,) * n,
                         groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self.spatial_dims = n
        self.activation = None if activation == "none" else activation
        self.negative_slope = float(negative_slope)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("activation", None)  # modules pickled before activation=
        self.__dict__.setdefault("negative_slope", 0.01)

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode == "zeros" and self.activation is None:
            return functional.conv_nd(input, weight, bias, self.stride, self.padding,
                                      self.dilation, self.groups, spatial_dims=self.spatial_dims)
        # The padding mode as torch applies it (F.pad, then an unpadded conv), in one op.
        return functional.conv_bias_act_nd(
            input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
            self.activation or "none", self.negative_slope, self.padding_mode,
            spatial_dims=self.spatial_dims)

    def forward(self, input):
        return self._conv_forward(input, self.weight, self.bias)

    def extra_repr(self):
        text = super().extra_repr()
        if self.activation is not None:
            text += f", activation={self.activation!r}"
        if self.activation == "leaky_relu":
            text += f", negative_slope={self.negative_slope}"
        return text


class ConvTransposeNd(_ConvTransposeNd):
    """``nn.ConvTranspose2d`` for N spatial dims: input (B, C_in, *spatial) or (C_in, *spatial).

    Arguments, defaults, parameters (``weight`` of shape (C_in, C_out/groups, *kernel_size),
    ``bias``) and initialization are torch's; ``forward(input, output_size=None)`` picks the
    output padding from ``output_size`` as torch does. Only ``padding_mode='zeros'``, as in
    torch. N is ``spatial_dims`` or the length of a tuple argument (``ndops.nn._spatial``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None, *, spatial_dims=None):
        if isinstance(padding, str):
            raise ValueError(f"ndops.nn.ConvTransposeNd: padding must be an int or a tuple of "
                             f"ints, got {padding!r} (string paddings exist only for ConvNd)")
        n, kernel_size, stride, padding, dilation = _conv_geometry(
            "ConvTransposeNd", kernel_size, stride, padding, dilation, spatial_dims,
            output_padding=output_padding)
        output_padding = as_tuple("nn.ConvTransposeNd", "output_padding", output_padding, n)
        check_nonnegative("nn.ConvTransposeNd", "output_padding", output_padding)
        super().__init__(in_channels=in_channels, out_channels=out_channels,
                         kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, transposed=True, output_padding=output_padding,
                         groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self.spatial_dims = n

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTransposeNd")
        n = self.spatial_dims
        if output_size is not None and input.dim() not in (n + 1, n + 2):
            raise ValueError(f"ndops.nn.ConvTransposeNd: input must have shape (B, C, *spatial) "
                             f"or (C, *spatial) with N={n} spatial dims, got shape "
                             f"{tuple(input.shape)}")
        output_padding = self._output_padding(input, output_size, list(self.stride),
                                              list(self.padding), list(self.kernel_size), n,
                                              list(self.dilation))
        return functional.conv_transpose_nd(input, self.weight, self.bias, self.stride,
                                            self.padding, tuple(output_padding), self.groups,
                                            self.dilation, spatial_dims=n)
