"""Attention modules for (B, C, *spatial) feature maps with any number of spatial dims N.

- ``ChannelAttention``: squeeze-and-excitation / CBAM channel gate.
- ``SpatialAttention``: CBAM spatial gate (an N-d conv over the channel-mean and -max maps).
- ``CBAM``: channel then spatial gate.
- ``AttentionGate``: the additive gate of Attention U-Net on skip features, driven by a coarser
  gating signal.
- ``SelfAttention``: multi-head dot-product attention between all N-d positions.
- ``build_attention(spec, spatial_dims, channels)``: one of them from a spec.

Every module returns a tensor of its input's shape and works down to spatial size 1.
"""
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from ndops.functional import adaptive_avg_pool_nd

from .embeddings import sinusoidal_position_embedding
from .layers import get_act, get_conv, get_norm, interpolate, parse_spec

__all__ = ["ChannelAttention", "SpatialAttention", "CBAM", "AttentionGate", "SelfAttention",
           "build_attention", "ATTENTIONS"]


def _check_int(owner, name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"ndops.models.{owner}: {name} must be an int >= {minimum}, "
                         f"got {value!r}")


def _spatial_axes(x):
    return tuple(range(2, x.dim()))


class ChannelAttention(nn.Module):
    """Channel gate (SE / CBAM): ``x * sigmoid(sum_p MLP(pool_p(x)))``.

    Each pooling in ``pooling`` ("avg", "max") reduces x over its spatial dims to a (B, C)
    descriptor; one shared MLP Linear(C, C // reduction) -> act -> Linear(C // reduction, C)
    maps each, the results are summed and squashed by a sigmoid into per-channel weights.
    ``pooling=("avg",)`` is squeeze-and-excitation, ``("avg", "max")`` CBAM's channel module.

    Args:
        spatial_dims: N (kept for a uniform constructor; the module works at any N).
        channels: C.
        reduction: hidden width is ``max(1, channels // reduction)``.
        act: the MLP's activation spec (default "relu").
        pooling: a non-empty subset of ("avg", "max").

    Shapes: (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, spatial_dims, channels, reduction=16, act="relu", pooling=("avg", "max")):
        super().__init__()
        _check_int("ChannelAttention", "spatial_dims", spatial_dims)
        _check_int("ChannelAttention", "channels", channels)
        _check_int("ChannelAttention", "reduction", reduction)
        pooling = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        if not pooling or any(p not in ("avg", "max") for p in pooling):
            raise ValueError(f"ndops.models.ChannelAttention: pooling must be a non-empty "
                             f"subset of ('avg', 'max'), got {pooling!r}")
        self.pooling = pooling
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), get_act(act),
                                 nn.Linear(hidden, channels))

    def forward(self, x):
        axes = _spatial_axes(x)
        logits = 0
        for kind in self.pooling:
            descriptor = x.mean(dim=axes) if kind == "avg" else x.amax(dim=axes)
            logits = logits + self.mlp(descriptor)
        gate = torch.sigmoid(logits)
        return x * gate.reshape(gate.shape + (1,) * len(axes))


class SpatialAttention(nn.Module):
    """CBAM spatial gate: ``x * sigmoid(conv([mean_c(x), max_c(x)]))``.

    The channel-mean and channel-max maps (2 channels) go through one N-d conv with an odd
    ``kernel_size`` and zero "same" padding, so any spatial size works, including 1.

    Shapes: (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, spatial_dims, kernel_size=7):
        super().__init__()
        _check_int("SpatialAttention", "spatial_dims", spatial_dims)
        kernels = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size,)
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0
               for k in kernels):
            raise ValueError(f"ndops.models.SpatialAttention: kernel_size must be an odd int "
                             f">= 1 (or {spatial_dims} of them), got {kernel_size!r}")
        self.conv = get_conv(spatial_dims, 2, 1, kernel_size)

    def forward(self, x):
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(maps))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: ``ChannelAttention`` then ``SpatialAttention``.

    Args: ``spatial_dims``, ``channels``, ``reduction`` and ``act`` (channel MLP),
    ``kernel_size`` (spatial conv). Shapes: (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, spatial_dims, channels, reduction=16, kernel_size=7, act="relu"):
        super().__init__()
        self.channel = ChannelAttention(spatial_dims, channels, reduction, act)
        self.spatial = SpatialAttention(spatial_dims, kernel_size)

    def forward(self, x):
        return self.spatial(self.channel(x))


class AttentionGate(nn.Module):
    """Additive attention gate of Attention U-Net (Oktay et al. 2018) for skip connections.

    ``alpha = sigmoid(psi(relu(W_x x + resample(W_g g))))`` and the output is ``x * alpha``:
    the skip features x, gated (never replaced). W_x, W_g and psi are 1x1 convs (psi to one
    channel); W_g runs at g's resolution and its output is resampled to x's spatial size with the
    N-d interpolation (1x1 convs commute with it), so g may be coarser than x.

    Args:
        spatial_dims: N.
        in_channels: channels of x (the skip features).
        gating_channels: channels of g (the coarser decoder features).
        inter_channels: width of the joint space; default ``max(1, in_channels // 2)``.
        norm: norm spec applied after W_x and W_g (default none).
        mode: interpolation of the gating signal, "linear" (multilinear) or "nearest".

    Shapes: ``forward(x, g)`` with x (B, in_channels, *spatial_x), g (B, gating_channels,
    *spatial_g) -> (B, in_channels, *spatial_x).
    """

    def __init__(self, spatial_dims, in_channels, gating_channels, inter_channels=None,
                 norm=None, mode="linear"):
        super().__init__()
        _check_int("AttentionGate", "in_channels", in_channels)
        _check_int("AttentionGate", "gating_channels", gating_channels)
        inter_channels = max(1, in_channels // 2) if inter_channels is None else inter_channels
        _check_int("AttentionGate", "inter_channels", inter_channels)
        if mode not in ("linear", "nearest"):
            raise ValueError(f"ndops.models.AttentionGate: mode must be 'linear' or 'nearest', "
                             f"got {mode!r}")
        self.mode = mode
        self.in_channels = in_channels
        self.gating_channels = gating_channels
        self.w_x = nn.Sequential(get_conv(spatial_dims, in_channels, inter_channels, 1),
                                 get_norm(norm, spatial_dims, inter_channels))
        self.w_g = nn.Sequential(get_conv(spatial_dims, gating_channels, inter_channels, 1),
                                 get_norm(norm, spatial_dims, inter_channels))
        self.psi = get_conv(spatial_dims, inter_channels, 1, 1)

    def attention_map(self, x, g):
        """The gate alpha, (B, 1, *spatial_x), values in (0, 1)."""
        if x.dim() != g.dim() or x.shape[0] != g.shape[0]:
            raise ValueError(f"ndops.models.AttentionGate: x and g must have the same batch "
                             f"size and number of dims, got x {tuple(x.shape)} and g "
                             f"{tuple(g.shape)}")
        gating = self.w_g(g)
        if gating.shape[2:] != x.shape[2:]:
            align = False if self.mode == "linear" else None
            gating = interpolate(gating, size=tuple(x.shape[2:]), mode=self.mode,
                                 align_corners=align)
        return torch.sigmoid(self.psi(F.relu(self.w_x(x) + gating)))

    def forward(self, x, g):
        return x * self.attention_map(x, g)


def _adaptive_avg_pool(x, size):
    n = x.dim() - 2
    if n <= 3:
        return (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[n - 1](x, size)
    return adaptive_avg_pool_nd(x, size, spatial_dims=n)


def _paired_num_groups(channels):
    """The largest divisor of ``channels`` that is <= 32 and leaves >= 2 channels per group
    (1 for a single channel): a lone token is still normalized over several values."""
    return max([g for g in range(1, min(32, channels // 2) + 1) if channels % g == 0] or [1])


def _format_bytes(count):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}"
        count /= 1024


class SelfAttention(nn.Module):
    """Multi-head self-attention between all positions of an N-d feature map, with residual.

    ``x + proj(attention(qkv(norm(x) tokens [+ positions])))``: the normalized map's
    L = prod(spatial) positions are tokens of C features; a linear layer makes
    ``num_heads`` queries, keys and values of ``head_dim`` features each, combined by
    ``torch.nn.functional.scaled_dot_product_attention``; a linear output projection maps them
    back to C and the result is added to x.

    Memory: attention weights take B * num_heads * L^2 numbers (the CPU and math kernels store
    them). When L exceeds ``max_tokens`` the forward raises a ValueError that says how much that
    would be, unless ``downsample`` is set: then attention runs over an average-pooled grid of
    ``ceil(size / factor)`` per dim and its output is upsampled (multilinear) back to x's size
    before the residual add.

    Args:
        spatial_dims: N.
        channels: C.
        num_heads: number of heads; must divide ``channels`` unless ``head_dim`` is given.
        head_dim: features per head (default ``channels // num_heads``).
        pos_embedding: None, "sinusoidal" (fixed, ``sinusoidal_position_embedding`` of the
            token grid; needs ``channels >= 2 * N``) or "learned" (a parameter over
            ``grid_size``, resampled multilinearly when the token grid differs).
        max_tokens: the largest L attended over without ``downsample``.
        downsample: None, an int or N ints (pooling factor per dim), or "auto" (the smallest
            uniform factor that brings L under ``max_tokens``).
        grid_size: the token grid (int or N ints) of the "learned" embedding.
        norm: norm spec before attention; the default "group" is a GroupNorm with the
            largest divisor of C <= 32 groups that leaves >= 2 channels per group (so that a
            single token, e.g. at a 1x1x1x1 bottleneck, is still normalized over several
            values; torch's GroupNorm rejects one-value groups).
        dropout: dropout probability on the attention weights (training only).

    Shapes: (B, C, *spatial) -> (B, C, *spatial).

    Example::

        >>> attn = SelfAttention(4, 16, num_heads=4, pos_embedding="sinusoidal")
        >>> attn(torch.randn(2, 16, 3, 4, 5, 2)).shape
        torch.Size([2, 16, 3, 4, 5, 2])
    """

    def __init__(self, spatial_dims, channels, num_heads=1, head_dim=None, pos_embedding=None,
                 max_tokens=4096, downsample=None, grid_size=None, norm="group", dropout=0.0):
        super().__init__()
        owner = "SelfAttention"
        _check_int(owner, "spatial_dims", spatial_dims)
        _check_int(owner, "channels", channels)
        _check_int(owner, "num_heads", num_heads)
        _check_int(owner, "max_tokens", max_tokens)
        if head_dim is None:
            if channels % num_heads:
                raise ValueError(f"ndops.models.SelfAttention: num_heads={num_heads} must divide "
                                 f"channels={channels} (or pass head_dim)")
            head_dim = channels // num_heads
        _check_int(owner, "head_dim", head_dim)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ndops.models.SelfAttention: dropout must be in [0, 1), "
                             f"got {dropout!r}")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_tokens = max_tokens
        self.dropout = dropout
        self.downsample = self._check_downsample(downsample)
        self.pos_embedding = pos_embedding
        if parse_spec(norm, "norm") == ("group", {}):
            norm = ("group", {"num_groups": _paired_num_groups(channels)})
        self.norm = get_norm(norm, spatial_dims, channels)
        self.qkv = nn.Linear(channels, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, channels)
        self.learned_positions = None
        if pos_embedding == "sinusoidal":
            if channels < 2 * spatial_dims:
                raise ValueError(f"ndops.models.SelfAttention: pos_embedding='sinusoidal' needs "
                                 f"channels >= 2 * spatial_dims = {2 * spatial_dims}, got "
                                 f"channels={channels}")
        elif pos_embedding == "learned":
            if grid_size is None:
                raise ValueError("ndops.models.SelfAttention: pos_embedding='learned' needs "
                                 "grid_size (the token grid, an int or N ints)")
            grid = self._per_dim("grid_size", grid_size)
            self.learned_positions = nn.Parameter(torch.zeros(1, channels, *grid))
            nn.init.trunc_normal_(self.learned_positions, std=0.02)
        elif pos_embedding is not None:
            raise ValueError(f"ndops.models.SelfAttention: pos_embedding must be None, "
                             f"'sinusoidal' or 'learned', got {pos_embedding!r}")

    def _per_dim(self, name, value):
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * self.spatial_dims
        if len(values) != self.spatial_dims or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"ndops.models.SelfAttention: {name} must be an int >= 1 or "
                             f"{self.spatial_dims} of them, got {value!r}")
        return values

    def _check_downsample(self, downsample):
        if downsample is None or downsample == "auto":
            return downsample
        return self._per_dim("downsample", downsample)

    def _token_grid(self, x):
        """The spatial size attention runs at; raises when it has more than max_tokens."""
        spatial = tuple(x.shape[2:])
        if self.downsample == "auto":
            factor = 1
            while math.prod(-(-s // factor) for s in spatial) > self.max_tokens:
                factor += 1
            factors = (factor,) * len(spatial)
        else:
            factors = self.downsample or (1,) * len(spatial)
        grid = tuple(-(-s // f) for s, f in zip(spatial, factors))
        tokens = math.prod(grid)
        if tokens > self.max_tokens:
            weights = x.shape[0] * self.num_heads * tokens ** 2 * x.element_size()
            where = ("" if grid == spatial else
                     f" (after downsample={self.downsample}: grid {grid})")
            raise ValueError(
                f"ndops.models.SelfAttention: input of spatial size {spatial} gives L={tokens} "
                f"tokens{where}, more than max_tokens={self.max_tokens}; its B x heads x L^2 "
                f"attention weights alone would take {_format_bytes(weights)} "
                f"({x.dtype}, batch {x.shape[0]}, {self.num_heads} heads; more for the "
                f"backward). Pass downsample=<factor> or downsample='auto' to attend over an "
                f"average-pooled grid, or raise max_tokens if that memory is fine.")
        return grid

    def _positions(self, grid, like):
        """(L, C) position embedding for the token grid."""
        if self.learned_positions is None:
            return sinusoidal_position_embedding(grid, self.channels, device=like.device,
                                                 dtype=like.dtype)
        positions = self.learned_positions
        if tuple(positions.shape[2:]) != grid:
            positions = interpolate(positions, size=grid, mode="linear", align_corners=False)
        return positions.flatten(2)[0].transpose(0, 1).to(like.dtype)

    def forward(self, x):
        n = self.spatial_dims
        if x.dim() != n + 2 or x.shape[1] != self.channels:
            raise ValueError(f"ndops.models.SelfAttention: input must have shape (B, "
                             f"{self.channels}, *spatial) with {n} spatial dims, got "
                             f"{tuple(x.shape)}")
        spatial = tuple(x.shape[2:])
        grid = self._token_grid(x)
        h = self.norm(x)
        if grid != spatial:
            h = _adaptive_avg_pool(h, grid)
        batch, tokens = x.shape[0], math.prod(grid)
        h = h.flatten(2).transpose(1, 2)  # (B, L, C)
        if self.pos_embedding is not None:
            h = h + self._positions(grid, h)
        # (B, L, 3 * heads * head_dim) -> 3 x (B, heads, L, head_dim)
        q, k, v = self.qkv(h).reshape(batch, tokens, 3, self.num_heads,
                                      self.head_dim).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v,
                                           dropout_p=self.dropout if self.training else 0.0)
        h = self.proj(h.transpose(1, 2).reshape(batch, tokens, -1))
        h = h.transpose(1, 2).reshape(batch, self.channels, *grid)
        if grid != spatial:
            h = interpolate(h, size=spatial, mode="linear", align_corners=False)
        return x + h


ATTENTIONS = {
    "channel": ChannelAttention, "se": ChannelAttention, "spatial": SpatialAttention,
    "cbam": CBAM, "self": SelfAttention, "none": None,
}


def build_attention(spec, spatial_dims, channels):
    """An attention module for (B, ``channels``, *spatial) maps from a spec.

    Names: "channel" (``ChannelAttention``, CBAM pooling), "se" (``ChannelAttention`` with
    average pooling only: squeeze-and-excitation), "spatial" (``SpatialAttention``), "cbam"
    (``CBAM``), "self" (``SelfAttention``), "none"/None (``nn.Identity``). Kwargs go to the
    class, e.g. ``("self", {"num_heads": 4, "downsample": "auto"})`` or
    ``("channel", {"reduction": 4})``. ``AttentionGate`` takes two inputs and is built directly.
    """
    name, kwargs = parse_spec(spec, "attention")
    if name not in ATTENTIONS:
        raise ValueError(f"ndops.models: unknown attention {name!r}; valid names: "
                         f"{', '.join(ATTENTIONS)}")
    cls = ATTENTIONS[name]
    if cls is None:
        return nn.Identity()
    if name == "se":
        kwargs.setdefault("pooling", ("avg",))
    accepted = [p for p in inspect.signature(cls).parameters
                if p not in ("spatial_dims", "channels")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"ndops.models: attention {name!r} got unknown options {unknown}; "
                         f"valid ones: {', '.join(accepted)}")
    if cls is SpatialAttention:
        return cls(spatial_dims, **kwargs)
    return cls(spatial_dims, channels, **kwargs)
