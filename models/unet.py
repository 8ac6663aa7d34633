"""``UNet``: an encoder-decoder with skip connections for inputs with any number of spatial dims.

Built from ``ndops.models.blocks.ConvBlock`` and the layer factories in
``ndops.models.layers``, so the same class runs at N = 1, 2, 3 (torch's native layers) and at
N >= 4 (ndops' N-d layers).
"""
import math
import numbers

import torch
from torch import nn

from ndops.functional import pad_nd
from ndops.models.attention import AttentionGate, build_attention
from ndops.models.blocks import ConvBlock
from ndops.models.config import ConfigurableModel
from ndops.models.embeddings import TimestepEmbedding
from ndops.models.layers import (get_act, get_conv, get_conv_transpose, get_norm, get_pool,
                                 get_upsample, parse_spec)

_WHERE = "ndops.models.UNet"
UP_MODES = ("transpose", "interpolate")
MODES = ("same", "valid")
DOWN_MODES = ("maxpool", "avgpool", "conv")
PAD_MODES = ("constant", "reflect", "replicate", "circular")


class UNet(ConfigurableModel):
    """U-Net (Ronneberger et al. 2015) for (B, C, *spatial) inputs with any number N of spatial
    dims, any channel list, optional attention per level and optional time/class conditioning.

    Level ``i`` works at ``channels[i]`` channels. The encoder runs ``num_res_blocks[i]``
    ``ConvBlock``s (each ``num_convs`` convs + norm + act, residual if ``residual``) per level
    and downsamples by ``strides[i]`` between level ``i`` and ``i + 1`` (max/avg pooling or a
    strided conv, ``down_mode``). The last level is the bottleneck. The decoder upsamples by the
    same factor (a transposed conv, or nearest interpolation + 3-conv: ``up_mode``) to
    ``channels[i]`` channels, concatenates the level's skip and runs ``num_res_blocks[i]`` more
    blocks; a 1-conv head maps ``channels[0]`` to ``out_channels``.

    Input sizes (``mode``):
        * ``"same"`` (default): padded convs; ANY input size works. The input is padded (by
          ``pad_mode``, split evenly before/after) up to a multiple of ``size_multiple`` (the
          product of the strides, per dim), and the output is cropped back, so the output has
          the input's spatial size. Feed sizes that are already multiples to skip the padding.
        * ``"valid"``: the 2015 paper: unpadded convs, skips center-cropped to the decoder's
          size, output smaller than the input (2-D, channels (64, 128, 256, 512, 1024):
          572x572 -> 388x388). An input that does not fit raises a ValueError naming the
          nearest valid sizes; see ``valid_input_size`` and ``output_size``.

    Args:
        spatial_dims: N, the number of spatial dims (any int >= 1).
        in_channels, out_channels: channels of the input and of the output.
        channels: channels per level (any positive ints, any length >= 1; one level means no
            downsampling at all).
        strides: downsampling factor between consecutive levels: ``len(channels) - 1``
            entries, each an int or a per-dim tuple of N ints (>= 1). Default 2 everywhere.
        num_res_blocks: ConvBlocks per level on each side, an int or one int per level.
        attention_levels: one entry per level: None/False (none), True (= "self"), or an
            attention spec for ``ndops.models.attention.build_attention`` ("channel",
            "spatial", "cbam", "self", ("self", {"num_heads": 4}), ...) applied at the end of
            every block of that level (self-attention over more than its ``max_tokens``
            positions raises unless given ``"downsample"``), or "gate" /
            ("gate", {"inter_channels": c}) for an additive ``AttentionGate`` (Oktay et al.
            2018) on that level's skip, driven by the coarser decoder features coming up from
            level ``i + 1`` (not on the last level, which has no skip).
        norm, act: layer specs, ``"name"`` or ``("name", {kwargs})`` (see
            ``ndops.models.layers.get_norm`` / ``get_act``).
        dropout: dropout probability inside the blocks.
        residual: residual ConvBlocks (identity or 1-conv projection shortcut).
        up_mode: ``"transpose"`` or ``"interpolate"``.
        time_conditioning: add a sinusoidal timestep embedding (MLP of width
            ``time_embed_dim``) injected into every block as scale-shift; then ``t`` is
            required in ``forward``.
        time_embed_dim: width of the conditioning embedding, default ``4 * channels[0]``.
        num_classes: class conditioning: a learned embedding per class plus a learned null
            class (used for ``y=None`` or labels ``-1``), for classifier-free guidance.
        mode: ``"same"`` or ``"valid"`` (above).
        kernel_size: kernel size of the block convs, an int or N ints.
        num_convs: convs per ConvBlock.
        down_mode: ``"maxpool"``, ``"avgpool"`` or ``"conv"`` (a learned conv with kernel =
            stride = the level's stride).
        pad_mode: how "same" mode pads: ``"constant"`` (zeros, default), ``"replicate"``,
            ``"circular"`` or ``"reflect"`` (needs each pad smaller than its dim).

    Shapes: ``forward(x, t=None, y=None)`` with ``x`` (B, in_channels, *spatial), ``t`` (B,)
    timesteps (int or float; a scalar is broadcast), required iff ``time_conditioning``, and
    ``y`` (B,) int labels in [0, num_classes) or -1 (null class, e.g. for label dropout when
    training for classifier-free guidance), or None (all null); only with ``num_classes``. Returns (B, out_channels, *spatial) in "same"
    mode, (B, out_channels, *output_size(spatial)) in "valid" mode.

    Attributes: ``spatial_dims``, ``in_channels``, ``out_channels``, ``num_classes`` (None
    without class conditioning), ``channels``, ``strides`` (per-dim tuples), ``size_multiple``.

    Example::

        >>> net = UNet(3, 1, 2, channels=(8, 16, 24), attention_levels=(None, "cbam", "self"))
        >>> net(torch.randn(2, 1, 13, 20, 7)).shape
        torch.Size([2, 2, 13, 20, 7])
        >>> den = UNet(4, 1, 1, channels=(4, 8), time_conditioning=True, num_classes=10)
        >>> den(torch.randn(2, 1, 5, 6, 4, 3), torch.tensor([3, 999]), None).shape
        torch.Size([2, 1, 5, 6, 4, 3])
    """

    def __init__(self, spatial_dims, in_channels, out_channels, channels=(32, 64, 128, 256),
                 strides=None, num_res_blocks=1, attention_levels=None, norm="batch",
                 act="relu", dropout=0.0, residual=True, up_mode="transpose",
                 time_conditioning=False, time_embed_dim=None, num_classes=None, mode="same",
                 kernel_size=3, num_convs=2, down_mode="maxpool", pad_mode="constant"):
        super().__init__()
        n = _positive_int("spatial_dims", spatial_dims)
        self.spatial_dims = n
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.channels = _int_list("channels", channels, minimum=1)
        levels = len(self.channels)
        self.strides = _level_strides(strides, levels, n)
        # Per-dim product of the strides: "same" mode pads each input dim up to a multiple.
        self.size_multiple = tuple(math.prod([s[d] for s in self.strides]) for d in range(n))
        self.num_res_blocks = _per_level("num_res_blocks", num_res_blocks, levels)
        self.mode = _choice("mode", mode, MODES)
        self.up_mode = _choice("up_mode", up_mode, UP_MODES)
        self.down_mode = _choice("down_mode", down_mode, DOWN_MODES)
        self.pad_mode = _choice("pad_mode", pad_mode, PAD_MODES)
        self.kernel_size = _as_dims("kernel_size", kernel_size, n)
        self.num_convs = _positive_int("num_convs", num_convs)
        if not (isinstance(dropout, numbers.Real) and 0.0 <= dropout < 1.0):
            raise ValueError(f"{_WHERE}: dropout must be a float in [0, 1), got {dropout!r}")
        _check_layer_spec("norm", lambda: get_norm(norm, n, self.channels[0]))
        _check_layer_spec("act", lambda: get_act(act))
        block_attention, gated = _level_attention(attention_levels, levels)
        for level, spec in enumerate(block_attention):
            _check_layer_spec(f"attention_levels[{level}]",
                              lambda: build_attention(spec, n, self.channels[level]))
        for level, kwargs in gated.items():
            _check_layer_spec(f"attention_levels[{level}] ('gate')", lambda: AttentionGate(
                n, self.channels[level], self.channels[level + 1], **kwargs))

        self.time_conditioning = bool(time_conditioning)
        self.num_classes = None if num_classes is None else _positive_int("num_classes",
                                                                           num_classes)
        conditioned = self.time_conditioning or self.num_classes is not None
        if time_embed_dim is not None:
            _positive_int("time_embed_dim", time_embed_dim)
        emb_dim = (time_embed_dim or 4 * self.channels[0]) if conditioned else None
        if self.time_conditioning:
            # Sinusoid width channels[0], MLP width emb_dim (as in DDPM / diffusers).
            self.time_embed = TimestepEmbedding(self.channels[0], emb_dim)
        if self.num_classes is not None:
            # Row num_classes is the learned null class (y=None or label -1).
            self.class_embed = nn.Embedding(self.num_classes + 1, emb_dim)

        def blocks(level, first_in):
            out = self.channels[level]
            return nn.ModuleList(
                ConvBlock(n, first_in if i == 0 else out, out, num_convs=self.num_convs,
                          kernel_size=kernel_size, norm=norm, act=act, dropout=dropout,
                          residual=residual, emb_channels=emb_dim,
                          padding="same" if self.mode == "same" else "valid",
                          attention=block_attention[level])
                for i in range(self.num_res_blocks[level]))

        self.encoder = nn.ModuleList(
            blocks(level, self.in_channels if level == 0 else self.channels[level - 1])
            for level in range(levels))
        self.down = nn.ModuleList(self._down(level) for level in range(levels - 1))
        self.up = nn.ModuleList(self._up(level) for level in range(levels - 1))
        self.gates = nn.ModuleDict({
            str(level): AttentionGate(n, self.channels[level], self.channels[level + 1], **kwargs)
            for level, kwargs in gated.items()})
        self.decoder = nn.ModuleList(blocks(level, 2 * self.channels[level])
                                     for level in range(levels - 1))
        self.head = get_conv(n, self.channels[0], self.out_channels, kernel_size=1)

    def _down(self, level):
        """Downsampling from ``level`` to ``level + 1``: kernel = stride = the level's stride."""
        stride = self.strides[level]
        if self.down_mode == "conv":
            ch = self.channels[level]
            return get_conv(self.spatial_dims, ch, ch, kernel_size=stride, stride=stride,
                            padding=0)
        return get_pool(self.down_mode[:3], self.spatial_dims, stride, stride)

    def _up(self, level):
        """Upsampling from ``level + 1`` to ``level``, to ``channels[level]`` channels."""
        n, stride = self.spatial_dims, self.strides[level]
        c_in, c_out = self.channels[level + 1], self.channels[level]
        if self.up_mode == "transpose":
            return get_conv_transpose(n, c_in, c_out, kernel_size=stride, stride=stride)
        return nn.Sequential(get_upsample(n, scale_factor=tuple(float(s) for s in stride)),
                             get_conv(n, c_in, c_out, kernel_size=3))

    # ----------------------------------------------------------------------------- sizes
    def output_size(self, spatial_shape):
        """Spatial output size for an input of ``spatial_shape`` (ValueError if it does not
        fit in "valid" mode). In "same" mode this is ``spatial_shape`` itself."""
        shape = self._check_shape(spatial_shape)
        if self.mode == "same":
            return shape
        sizes = [self._valid_output(s, d) for d, s in enumerate(shape)]
        for d, (s, out) in enumerate(zip(shape, sizes)):
            if out is None:
                below, above = self._nearest_valid(s, d)
                near = (f"sizes are {below} and {above}" if below is not None
                        else f"size is {above}")
                raise ValueError(
                    f"{_WHERE}: input size {s} along spatial dim {d} does not fit mode='valid' "
                    f"(unpadded convs and strides {[st[d] for st in self.strides]} must divide "
                    f"evenly); the nearest valid {near}")
        return tuple(sizes)

    def valid_input_size(self, spatial_shape):
        """The smallest spatial shape >= ``spatial_shape`` (per dim) that the network takes
        without padding: the next multiple of ``size_multiple`` in "same" mode, the next
        size that fits the unpadded geometry in "valid" mode."""
        shape = self._check_shape(spatial_shape)
        if self.mode == "same":
            return tuple(-(-s // m) * m for s, m in zip(shape, self.size_multiple))
        return tuple(s if self._valid_output(s, d) else self._nearest_valid(s, d)[1]
                     for d, s in enumerate(shape))

    def _check_shape(self, spatial_shape):
        shape = tuple(int(s) for s in spatial_shape)
        if len(shape) != self.spatial_dims or min(shape) < 1:
            raise ValueError(f"{_WHERE}: expected {self.spatial_dims} positive spatial sizes, "
                             f"got {tuple(spatial_shape)}")
        return shape

    def _valid_output(self, size, d):
        """Output size along dim ``d`` in "valid" mode, or None when ``size`` does not fit."""
        shrink = [self.num_convs * (self.kernel_size[d] - 1) * b for b in self.num_res_blocks]
        levels = len(self.channels)
        for level in range(levels):  # encoder, then the bottleneck
            if level > 0:
                stride = self.strides[level - 1][d]
                if size % stride:
                    return None
                size //= stride
            size -= shrink[level]
            if size < 1:
                return None
        for level in reversed(range(levels - 1)):  # decoder (skips are cropped to its size)
            size = size * self.strides[level][d] - shrink[level]
            if size < 1:
                return None
        return size

    def _nearest_valid(self, size, d):
        """(largest valid size < ``size`` or None, smallest valid size > ``size``)."""
        below = next((s for s in range(size - 1, 0, -1) if self._valid_output(s, d)), None)
        above = size + 1
        while not self._valid_output(above, d):  # valid sizes are unbounded: this ends
            above += 1
        return below, above

    # ---------------------------------------------------------------------------- forward
    def forward(self, x, t=None, y=None):
        """Map ``x`` (B, in_channels, *spatial) to (B, out_channels, *out_spatial); see the
        class docstring for ``t`` (timesteps) and ``y`` (class labels)."""
        if not isinstance(x, torch.Tensor) or x.dim() != self.spatial_dims + 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{_WHERE}: x must have shape (B, C, *spatial) with "
                             f"{self.spatial_dims} spatial dims, got {got}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{_WHERE}: x has {x.shape[1]} channels, expected in_channels="
                             f"{self.in_channels}")
        emb = self._embedding(x, t, y)
        spatial = tuple(x.shape[2:])
        if self.mode == "same":
            x, crop = self._pad(x, spatial)
        else:
            self.output_size(spatial)  # raises, naming the nearest valid sizes

        skips = []
        h = x
        for level, level_blocks in enumerate(self.encoder):
            if level > 0:
                h = self.down[level - 1](h)
            for block in level_blocks:
                h = block(h, emb)
            skips.append(h)
        for level in reversed(range(len(self.decoder))):
            coarse, h = h, self.up[level](h)
            skip = skips[level]
            if self.mode == "valid":
                skip = _center_crop(skip, h.shape[2:])
            if str(level) in self.gates:  # gated by the coarser features, as in the paper
                skip = self.gates[str(level)](skip, coarse)
            h = torch.cat([skip, h], dim=1)
            for block in self.decoder[level]:
                h = block(h, emb)
        h = self.head(h)
        return h[crop] if self.mode == "same" else h

    def _pad(self, x, spatial):
        """Pad ``x`` up to ``size_multiple``; return it and the index that crops back."""
        padded = self.valid_input_size(spatial)
        before = [(p - s) // 2 for s, p in zip(spatial, padded)]
        crop = (slice(None), slice(None)) + tuple(
            slice(b, b + s) for b, s in zip(before, spatial))
        if padded == spatial:
            return x, crop
        pad = []
        for s, p, b in reversed(list(zip(spatial, padded, before))):  # last dim first
            pad += [b, p - s - b]
        return pad_nd(x, pad, mode=self.pad_mode), crop

    def _embedding(self, x, t, y):
        """The (B, emb_dim) conditioning vector, or None for an unconditioned network."""
        batch = x.shape[0]
        if self.time_conditioning:
            if t is None:
                raise ValueError(f"{_WHERE}: time_conditioning=True: call net(x, t) with "
                                 f"timesteps t of shape (B,)")
            t = torch.as_tensor(t, device=x.device)
            if t.dim() == 0:
                t = t.expand(batch)
            if t.shape != (batch,):
                raise ValueError(f"{_WHERE}: t must have shape (B,) = ({batch},), got "
                                 f"{tuple(t.shape)}")
            emb = self.time_embed(t)
        elif t is not None:
            raise ValueError(f"{_WHERE}: t given but the network was built with "
                             f"time_conditioning=False")
        else:
            emb = None
        if self.num_classes is None:
            if y is not None:
                raise ValueError(f"{_WHERE}: y given but the network was built with "
                                 f"num_classes=None")
            return emb
        if y is None:
            labels = torch.full((batch,), self.num_classes, device=x.device, dtype=torch.long)
        else:
            labels = self._labels(y, batch, x.device)
        class_emb = self.class_embed(labels)
        return class_emb if emb is None else emb + class_emb

    def _labels(self, y, batch, device):
        y = torch.as_tensor(y, device=device)
        if (y.shape != (batch,) or y.dtype.is_floating_point or y.dtype.is_complex
                or y.dtype == torch.bool):
            raise ValueError(f"{_WHERE}: y must be an int tensor of shape (B,) = ({batch},), "
                             f"got {y.dtype} of shape {tuple(y.shape)}")
        if not torch.compiler.is_compiling() and y.numel() and (
                y.min() < -1 or y.max() >= self.num_classes):
            raise ValueError(f"{_WHERE}: labels y must lie in [0, {self.num_classes}) or be "
                             f"-1 (the null class)")
        return torch.where(y < 0, self.num_classes, y).long()


# ------------------------------------------------------------------- argument normalization
def _positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{_WHERE}: {name} must be an int >= 1, got {value!r}")
    return int(value)


def _int_list(name, values, minimum):
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{_WHERE}: {name} must be a non-empty list of ints, got {values!r}")
    for v in values:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{_WHERE}: {name} must hold ints >= {minimum}, got {values!r}")
    return tuple(int(v) for v in values)


def _repeated_int(name, value, count, entries):
    """An int >= 1 (repeated) or a sequence of ``count`` ints >= 1 (``entries`` says what they
    are, for the message), as a ``count``-tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{_WHERE}: {name} must be an int or {entries}, got {value!r}")
        return _int_list(name, value, minimum=1)
    return (_positive_int(name, value),) * count


def _as_dims(name, value, n):
    """An int or a sequence of N ints >= 1, as an N-tuple."""
    return _repeated_int(name, value, n, f"{n} ints (one per spatial dim)")


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{_WHERE}: {name} must be one of {options}, got {value!r}")
    return value


def _per_level(name, value, levels):
    """An int for every level, or one int per level."""
    return _repeated_int(name, value, levels, f"one int per level (len(channels) = {levels})")


def _level_strides(strides, levels, n):
    """``len(channels) - 1`` per-dim stride tuples (default 2)."""
    if strides is None:
        return ((2,) * n,) * (levels - 1)
    if not isinstance(strides, (list, tuple)) or len(strides) != levels - 1:
        raise ValueError(f"{_WHERE}: strides must have len(channels) - 1 = {levels - 1} "
                         f"entries (one per downsampling), got {strides!r}")
    return tuple(_as_dims(f"strides[{i}]", s, n) for i, s in enumerate(strides))


def _check_layer_spec(name, build):
    """Run ``build`` once so that a bad spec fails here, naming the UNet argument."""
    try:
        build()
    except (ValueError, TypeError) as err:
        raise ValueError(f"{_WHERE}: invalid {name}: {_unprefixed(err)}") from err


def _parse(name, spec):
    try:
        return parse_spec(spec, name)
    except ValueError as err:
        raise ValueError(f"{_WHERE}: {_unprefixed(err)}") from err


def _unprefixed(err):
    """The message of a layer factory's error without its generic "ndops.models: " start."""
    return str(err).removeprefix("ndops.models: ")


def _level_attention(attention_levels, levels):
    """Split ``attention_levels`` into block attention specs per level and the gated levels
    ({level: AttentionGate kwargs})."""
    if attention_levels is None:
        return (None,) * levels, {}
    if not isinstance(attention_levels, (list, tuple)) or len(attention_levels) != levels:
        raise ValueError(f"{_WHERE}: attention_levels must be a list with one entry per level "
                         f"(len(channels) = {levels}), got {attention_levels!r}")
    block_specs, gated = [], {}
    for level, spec in enumerate(attention_levels):
        if spec is None or spec is False:
            block_specs.append(None)
            continue
        if spec is True:
            spec = "self"
        name, kwargs = _parse(f"attention_levels[{level}]", spec)
        if name == "gate":
            if level == levels - 1:
                raise ValueError(f"{_WHERE}: attention_levels[{level}]='gate': the last level "
                                 f"(the bottleneck) has no skip connection to gate")
            gated[level] = kwargs
            block_specs.append(None)
        else:
            block_specs.append(spec)
    return tuple(block_specs), gated


def _center_crop(x, size):
    """Crop the spatial dims of ``x`` to ``size``, centered (the 2015 U-Net's skip crop)."""
    index = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return x[tuple(index)]


class ResidualDenoiser(nn.Module):
    """``x + net(x)`` for a denoising ``net`` with a ``head`` conv (a ``UNet``), whose head is
    zero-initialized: training starts from the identity and learns the (negative) noise, as in
    DnCNN (Zhang et al. 2017). ``in_channels`` is the net's."""

    def __init__(self, net):
        super().__init__()
        self.net, self.in_channels = net, net.in_channels
        nn.init.zeros_(net.head.weight)
        nn.init.zeros_(net.head.bias)

    def forward(self, x):
        return x + self.net(x)
