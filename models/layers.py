"""Layer factories keyed on a name and the number of spatial dims N.

Each factory returns torch's own module for N <= 3 (``nn.Conv2d``, ``nn.BatchNorm3d``, ...) and
the ``ndops.nn`` module that computes the same thing above (``ConvNd``, ``BatchNormNd``, ...), so a
network written once against these factories runs at any N. Norms and activations are given as
*specs*: ``None``, ``"name"`` or ``("name", {kwargs})`` (MONAI-style); the kwargs go to the
module's constructor.

Example::

    >>> conv = get_conv(4, 8, 16)                   # ndops.nn.ConvNd, 3x3x3x3, "same" padding
    >>> norm = get_norm(("group", {"num_groups": 4}), 4, 16)
    >>> act = get_act(("leaky_relu", {"negative_slope": 0.1}))
"""
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm

from ndops import nn as ndnn
from ndops.functional import interpolate_nd

__all__ = ["parse_spec", "get_conv", "get_conv_transpose", "get_norm", "get_act", "get_pool",
           "get_norm_act", "get_adaptive_pool", "get_dropout", "get_upsample", "interpolate", "InstanceNormNd",
           "ChannelDropoutNd", "default_num_groups", "NORMS", "ACTIVATIONS"]

_TORCH_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}

ACTIVATIONS = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "prelu": nn.PReLU, "elu": nn.ELU,
    "selu": nn.SELU, "silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU, "mish": nn.Mish,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "none": nn.Identity,
}
NORMS = ("batch", "group", "instance", "layer", "none")


def parse_spec(spec, what="layer"):
    """Splits a layer spec into ``(name, kwargs)``.

    ``spec`` is ``None`` (-> ``("none", {})``), a name ``"relu"`` or a pair
    ``("leaky_relu", {"negative_slope": 0.1})``. Names are case-insensitive. Anything else raises
    a ValueError naming ``what`` (e.g. "norm"). The name is not checked against a registry here:
    the factories do that and list the valid names.
    """
    if spec is None:
        return "none", {}
    if isinstance(spec, str):
        return spec.lower(), {}
    if (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)
            and isinstance(spec[1], dict)):
        return spec[0].lower(), dict(spec[1])
    raise ValueError(f"ndops.models: {what} must be None, a name or a (name, {{kwargs}}) pair, "
                     f"got {spec!r}")


def _check_spatial_dims(spatial_dims):
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int) or spatial_dims < 1:
        raise ValueError(f"ndops.models: spatial_dims must be an int >= 1, got {spatial_dims!r}")
    return spatial_dims


def _check_channels(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ndops.models: {name} must be an int >= 1, got {value!r}")
    return value


def _per_dim(name, value, n):
    """``value`` (an int or N ints) as a tuple of N ints."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(values) != n:
        raise ValueError(f"ndops.models: {name} must be an int or a tuple of {n} ints (one per "
                         f"spatial dim), got {value!r}")
    return values


def get_conv(spatial_dims, in_channels, out_channels, kernel_size=3, stride=1, padding=None,
             dilation=1, groups=1, bias=True, padding_mode="zeros"):
    """An N-d convolution: ``nn.Conv{N}d`` for N <= 3, ``ndops.nn.ConvNd`` above.

    ``padding=None`` pads ``(kernel_size // 2) * dilation`` per dim, which keeps the size for odd
    kernels at stride 1 ("same"-like, and allowed with any stride, unlike torch's "same").
    Other values (ints, tuples, "same", "valid") are torch's.
    """
    n = _check_spatial_dims(spatial_dims)
    _check_channels("in_channels", in_channels)
    _check_channels("out_channels", out_channels)
    kernel = _per_dim("kernel_size", kernel_size, n)
    stride, dilation = _per_dim("stride", stride, n), _per_dim("dilation", dilation, n)
    if padding is None:
        padding = tuple(k // 2 * d for k, d in zip(kernel, dilation))
    elif not isinstance(padding, str):
        padding = _per_dim("padding", padding, n)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                  padding_mode=padding_mode)
    if n <= 3:
        return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[n - 1](in_channels, out_channels, kernel,
                                                         **kwargs)
    return ndnn.ConvNd(in_channels, out_channels, kernel, spatial_dims=n, **kwargs)


def get_conv_transpose(spatial_dims, in_channels, out_channels, kernel_size, stride=1,
                       padding=0, output_padding=0, bias=True):
    """An N-d transposed convolution: ``nn.ConvTranspose{N}d`` for N <= 3,
    ``ndops.nn.ConvTransposeNd`` above. Arguments are torch's."""
    n = _check_spatial_dims(spatial_dims)
    _check_channels("in_channels", in_channels)
    _check_channels("out_channels", out_channels)
    kwargs = dict(stride=_per_dim("stride", stride, n), padding=_per_dim("padding", padding, n),
                  output_padding=_per_dim("output_padding", output_padding, n), bias=bias)
    kernel = _per_dim("kernel_size", kernel_size, n)
    if n <= 3:
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[n - 1]
        return cls(in_channels, out_channels, kernel, **kwargs)
    return ndnn.ConvTransposeNd(in_channels, out_channels, kernel, spatial_dims=n, **kwargs)


class InstanceNormNd(_InstanceNorm):
    """``nn.InstanceNorm{1,2,3}d`` for inputs with N spatial dims (any N): each (sample, channel)
    plane is normalized over its N spatial dims. Arguments and defaults are torch's (``affine``
    and ``track_running_stats`` False); input (B, C, *spatial) or unbatched (C, *spatial)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, device=None, dtype=None, *, spatial_dims):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.spatial_dims = _check_spatial_dims(spatial_dims)

    def _get_no_batch_dim(self):
        return self.spatial_dims + 1

    def _check_input_dim(self, input):
        n = self.spatial_dims
        if input.dim() not in (n + 1, n + 2):
            raise ValueError(f"ndops.models.InstanceNormNd: input must have shape "
                             f"(B, C, *spatial) or (C, *spatial) with N={n} spatial dims, got "
                             f"shape {tuple(input.shape)}")


def default_num_groups(channels):
    """The largest divisor of ``channels`` that is <= 32 (GroupNorm's usual 32 groups when
    ``channels`` is a multiple of 32, and a valid grouping for any other count)."""
    return max(g for g in range(1, min(32, channels) + 1) if channels % g == 0)


def get_norm(spec, spatial_dims, channels):
    """A normalization layer for (B, ``channels``, *spatial) inputs with N spatial dims.

    ``spec`` names: "batch" (``nn.BatchNorm{N}d``, ``ndops.nn.BatchNormNd`` for N > 3), "group"
    (``nn.GroupNorm``; kwarg ``num_groups``, default the largest divisor of ``channels`` that is
    <= 32), "instance" (``nn.InstanceNorm{N}d``, ``InstanceNormNd`` for N > 3; torch's defaults,
    no affine), "layer" (``nn.GroupNorm(1, channels)``: normalizes over channels and space, with
    per-channel affine), "none"/None (``nn.Identity``). Other kwargs go to the constructor.
    """
    n = _check_spatial_dims(spatial_dims)
    _check_channels("channels", channels)
    name, kwargs = parse_spec(spec, "norm")
    if name == "batch":
        if n <= 3:
            return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[n - 1](channels, **kwargs)
        return ndnn.BatchNormNd(channels, spatial_dims=n, **kwargs)
    if name == "group":
        groups = kwargs.pop("num_groups", None) or default_num_groups(channels)
        if channels % groups:
            raise ValueError(f"ndops.models: norm=('group', {{'num_groups': {groups}}}) must "
                             f"divide channels={channels}")
        return nn.GroupNorm(groups, channels, **kwargs)
    if name == "instance":
        if n <= 3:
            cls = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[n - 1]
            return cls(channels, **kwargs)
        return InstanceNormNd(channels, spatial_dims=n, **kwargs)
    if name == "layer":
        return nn.GroupNorm(1, channels, **kwargs)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"ndops.models: unknown norm {name!r}; valid names: {', '.join(NORMS)}")


def _fused_activation(act_spec):
    """(activation, negative_slope) of ``ndops.nn.BatchNormNd`` equal to the act spec, or None
    when the fused kernel has no such activation (or the spec has options it lacks)."""
    name, kwargs = parse_spec(act_spec, "act")
    kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}
    if name == "leaky_relu" and set(kwargs) <= {"negative_slope"}:
        return "leaky_relu", float(kwargs.get("negative_slope", 0.01))
    if name == "gelu" and set(kwargs) <= {"approximate"}:
        return {"none": "gelu", "tanh": "gelu_tanh"}[kwargs.get("approximate", "none")], 0.01
    if name in ("relu", "silu", "swish", "none") and not kwargs:
        return {"swish": "silu"}.get(name, name), 0.01
    return None


def get_norm_act(norm_spec, act_spec, spatial_dims, channels):
    """``(norm, act)`` modules for norm followed by act. A batch norm with an activation the
    fused kernel has (relu, leaky_relu, silu, gelu) becomes ONE ``ndops.nn.BatchNormNd(...,
    activation=...)`` (one pass over memory forward and backward, ``batch_norm_act_nd``) and
    ``act`` is ``nn.Identity``; parameter and buffer names are those of ``get_norm``'s module,
    so state dicts are unchanged. Anything else: ``(get_norm(...), get_act(...))``."""
    name, kwargs = parse_spec(norm_spec, "norm")
    fused = _fused_activation(act_spec) if name == "batch" else None
    if fused is None or fused[0] == "none":
        return get_norm(norm_spec, spatial_dims, channels), get_act(act_spec)
    n = _check_spatial_dims(spatial_dims)
    _check_channels("channels", channels)
    norm = ndnn.BatchNormNd(channels, spatial_dims=n, activation=fused[0],
                            negative_slope=fused[1], **kwargs)
    return norm, nn.Identity()


def get_act(spec):
    """An activation module from a spec: one of ``ACTIVATIONS`` ("relu", "leaky_relu", "prelu",
    "elu", "selu", "silu" (alias "swish"), "gelu", "mish", "tanh", "sigmoid", "softplus",
    "none"/None -> ``nn.Identity``); kwargs go to torch's constructor, e.g.
    ``("leaky_relu", {"negative_slope": 0.2})``."""
    name, kwargs = parse_spec(spec, "act")
    if name not in ACTIVATIONS:
        raise ValueError(f"ndops.models: unknown act {name!r}; valid names: "
                         f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](**kwargs)


def _check_pool_kind(kind):
    if kind not in ("max", "avg"):
        raise ValueError(f"ndops.models: pool kind must be 'max' or 'avg', got {kind!r}")


def get_pool(kind, spatial_dims, kernel_size, stride=None, padding=0):
    """``nn.MaxPool{N}d``/``nn.AvgPool{N}d`` for N <= 3, ``ndops.nn.MaxPoolNd``/``AvgPoolNd``
    above; ``kind`` is "max" or "avg", ``stride`` defaults to ``kernel_size`` as in torch."""
    n = _check_spatial_dims(spatial_dims)
    _check_pool_kind(kind)
    if n <= 3:
        table = ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d) if kind == "max"
                 else (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))
        return table[n - 1](kernel_size, stride, padding)
    cls = ndnn.MaxPoolNd if kind == "max" else ndnn.AvgPoolNd
    return cls(kernel_size, stride, padding, spatial_dims=n)


def get_adaptive_pool(kind, spatial_dims, output_size):
    """``nn.AdaptiveMaxPool{N}d``/``nn.AdaptiveAvgPool{N}d`` for N <= 3, the ``ndops.nn``
    modules above; ``kind`` is "max" or "avg"."""
    n = _check_spatial_dims(spatial_dims)
    _check_pool_kind(kind)
    if n <= 3:
        table = ((nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
                 if kind == "max"
                 else (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d))
        return table[n - 1](output_size)
    cls = ndnn.AdaptiveMaxPoolNd if kind == "max" else ndnn.AdaptiveAvgPoolNd
    return cls(output_size, spatial_dims=n)


class ChannelDropoutNd(nn.Module):
    """``nn.Dropout{1,2,3}d`` at any N: zeroes whole channels of a (B, C, *spatial) input with
    probability ``p`` (one draw per sample and channel) and scales the rest by 1 / (1 - p)."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ndops.models: dropout probability must be in [0, 1], got {p!r}")
        self.p = p

    def forward(self, input):
        if not self.training or self.p == 0.0:
            return input
        # Dropout of a (B, C) tensor draws one keep/drop per (sample, channel); broadcast it.
        mask = nn.functional.dropout(input.new_ones(input.shape[:2]), self.p, True)
        return input * mask.reshape(mask.shape + (1,) * (input.dim() - 2))

    def extra_repr(self):
        return f"p={self.p}"


def get_dropout(spatial_dims, p, channelwise=False):
    """Dropout with probability ``p`` (``nn.Identity`` when ``p == 0``).

    Element-wise (``nn.Dropout``, the same at every N) by default; ``channelwise=True`` drops
    whole channels: ``nn.Dropout{N}d`` for N <= 3 (``nn.Dropout1d`` at N = 1) and
    ``ChannelDropoutNd`` above.
    """
    n = _check_spatial_dims(spatial_dims)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"ndops.models: dropout must be a probability in [0, 1], got {p!r}")
    if p == 0:
        return nn.Identity()
    if not channelwise:
        return nn.Dropout(p)
    if n <= 3:
        return (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)[n - 1](p)
    return ChannelDropoutNd(p)


def get_upsample(spatial_dims, scale_factor=None, size=None, mode="nearest",
                 align_corners=None):
    """``nn.Upsample`` for N <= 3, ``ndops.nn.UpsampleNd`` above. ``mode="linear"`` means
    multilinear at every N (it becomes torch's "bilinear"/"trilinear" at N = 2/3)."""
    n = _check_spatial_dims(spatial_dims)
    if n <= 3:
        if mode == "linear":
            mode = _TORCH_LINEAR_MODES[n]
        return nn.Upsample(size=size, scale_factor=scale_factor, mode=mode,
                           align_corners=align_corners)
    return ndnn.UpsampleNd(size=size, scale_factor=scale_factor, mode=mode,
                           align_corners=align_corners, spatial_dims=n)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """``F.interpolate`` at any N (N = input.dim() - 2): torch's for N <= 3, with "linear"
    meaning multilinear, ``ndops.functional.interpolate_nd`` above."""
    n = input.dim() - 2
    if n <= 3:
        if mode == "linear":
            mode = _TORCH_LINEAR_MODES[n]
        return nn.functional.interpolate(input, size=size, scale_factor=scale_factor, mode=mode,
                                         align_corners=align_corners)
    return interpolate_nd(input, size=size, scale_factor=scale_factor, mode=mode,
                          align_corners=align_corners, spatial_dims=n)
