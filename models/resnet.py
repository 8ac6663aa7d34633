"""ResNet classifiers/backbones and a time-conditioned ResNet-style denoiser, at any number of
spatial dims N.

``ResNet`` follows torchvision's layout (He et al. 2015, with the stride on the 3x3 conv of
bottleneck blocks, "ResNet v1.5"): in 2-D with 3 input channels and 1000 classes its parameter
counts equal torchvision's resnet18/34/50/101/152 (11,689,512 / 21,797,672 / 25,557,032 /
44,549,160 / 60,192,808). ``ResNetDenoiser`` keeps the resolution and predicts noise (or x0, v)
for ``ndops.models.diffusion``.

Example::

    >>> net = ResNet(3, in_channels=1, num_classes=4, preset="resnet10", stem="small")
    >>> net(torch.randn(2, 1, 16, 16, 16)).shape          # logits
    torch.Size([2, 4])
    >>> [f.shape[1] for f in net.features(torch.randn(2, 1, 16, 16, 16))]
    [64, 128, 256, 512]
"""
import enum
import numbers

import torch
from torch import nn

from ndops.models.attention import build_attention
from ndops.models.blocks import ConvBlock
from ndops.models.config import ConfigurableModel
from ndops.models.embeddings import TimestepEmbedding
from ndops.models.layers import (get_act, get_adaptive_pool, get_conv, get_dropout, get_norm,
                                 get_norm_act, get_pool, parse_spec)

__all__ = ["ResNet", "ResNetPresets", "ResNetDenoiser", "BasicBlock", "BottleneckBlock",
           "PRESETS"]


class ResNetPresets(str, enum.Enum):
    """The standard depths; each member equals its name string (``ResNetPresets.RESNET18 ==
    "resnet18"``), so either form can be passed as ``preset``."""
    RESNET10 = "resnet10"
    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"
    RESNET101 = "resnet101"
    RESNET152 = "resnet152"


# preset -> (block, blocks per stage); widths are (64, 128, 256, 512) for all of them.
PRESETS = {
    "resnet10": ("basic", (1, 1, 1, 1)),
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
STEMS = {"standard": (7, 2, True), "small": (3, 1, False)}  # kernel, stride, max-pool


def _shortcut(spatial_dims, in_channels, out_channels, stride, norm):
    """Identity when the shapes match, else a strided 1x1 projection + norm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(get_conv(spatial_dims, in_channels, out_channels, 1, stride, bias=False),
                         get_norm(norm, spatial_dims, out_channels))


class _ResidualBlock(nn.Module):
    """What the blocks share: ``attention`` reweights the residual branch, which is added to
    the shortcut, then the final act."""

    def _add_shortcut(self, n, in_channels, out_channels, stride, norm, act, attention):
        self.attention = build_attention(attention, n, out_channels)
        self.shortcut = _shortcut(n, in_channels, out_channels, stride, norm)
        self.act = get_act(act)

    def _join(self, branch, x):
        return self.act(self.attention(branch) + self.shortcut(x))


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs (the first strided) with norm and act; ``attention`` (a
    ``build_attention`` spec) reweights the residual branch before the shortcut is added, as in
    CBAM. Output channels: ``width``."""
    expansion = 1

    def __init__(self, spatial_dims, in_channels, width, stride=1, norm="batch", act="relu",
                 attention=None):
        super().__init__()
        n = spatial_dims
        self.conv1 = get_conv(n, in_channels, width, 3, stride, bias=False)
        self.norm1, self.act1 = get_norm_act(norm, act, n, width)  # fused batch norm + act
        self.conv2 = get_conv(n, width, width, 3, bias=False)
        self.norm2 = get_norm(norm, n, width)
        self._add_shortcut(n, in_channels, width, stride, norm, act, attention)

    @property
    def last_norm(self):
        return self.norm2

    def forward(self, x):
        h = self.act1(self.norm1(self.conv1(x)))
        return self._join(self.norm2(self.conv2(h)), x)


class BottleneckBlock(_ResidualBlock):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand to ``4 * width`` channels, norm and act after
    each conv (the last act after the residual sum); ``attention`` as in ``BasicBlock``."""
    expansion = 4

    def __init__(self, spatial_dims, in_channels, width, stride=1, norm="batch", act="relu",
                 attention=None):
        super().__init__()
        n, out_channels = spatial_dims, width * self.expansion
        self.conv1 = get_conv(n, in_channels, width, 1, bias=False)
        self.norm1, self.act1 = get_norm_act(norm, act, n, width)  # fused batch norm + act
        self.conv2 = get_conv(n, width, width, 3, stride, bias=False)
        self.norm2, self.act2 = get_norm_act(norm, act, n, width)
        self.conv3 = get_conv(n, width, out_channels, 1, bias=False)
        self.norm3 = get_norm(norm, n, out_channels)
        self._add_shortcut(n, in_channels, out_channels, stride, norm, act, attention)

    @property
    def last_norm(self):
        return self.norm3

    def forward(self, x):
        h = self.act1(self.norm1(self.conv1(x)))
        h = self.act2(self.norm2(self.conv2(h)))
        return self._join(self.norm3(self.conv3(h)), x)


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


def _error(message):
    return ValueError(f"ndops.models.ResNet: {message}")


def _int_tuple(name, value, length=None, minimum=1):
    """``value`` (a list/tuple of ints >= minimum, of ``length`` items if given) as a tuple."""
    if not isinstance(value, (list, tuple)) or not value or any(
            isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value):
        raise _error(f"{name} must be a non-empty list of ints >= {minimum}, got {value!r}")
    if length is not None and len(value) != length:
        raise _error(f"{name} must have one entry per stage ({length}, the length of layers), "
                     f"got {value!r}")
    return tuple(value)


def _is_single_spec(spec):
    """True for None, "name" and ("name", {kwargs}); False for a per-stage list of specs."""
    return (spec is None or isinstance(spec, str)
            or (isinstance(spec, (list, tuple)) and len(spec) == 2 and isinstance(spec[0], str)
                and isinstance(spec[1], dict)))


def per_stage_attention(attention, num_stages, owner="ResNet"):
    """One attention spec per stage: a single spec is repeated, a list must have
    ``num_stages`` specs."""
    if _is_single_spec(attention):
        return [attention] * num_stages
    if not isinstance(attention, (list, tuple)) or len(attention) != num_stages:
        raise ValueError(f"ndops.models.{owner}: attention must be one spec (None, 'cbam', "
                         f"('self', {{'num_heads': 4}}), ...) or a list of {num_stages} specs "
                         f"(one per stage), got {attention!r}")
    for spec in attention:
        parse_spec(spec, "attention")
    return list(attention)


def _check_input(owner, x, spatial_dims, in_channels):
    if x.dim() != spatial_dims + 2 or x.shape[1] != in_channels:
        raise ValueError(f"ndops.models.{owner}: input must have shape (B, {in_channels}, "
                         f"*spatial) with {spatial_dims} spatial dims, got {tuple(x.shape)}")


class ResNet(ConfigurableModel):
    """A ResNet classifier (or backbone) for inputs with any number of spatial dims.

    Layout: stem (conv + norm + act [+ 3x3 stride-2 max-pool]) -> stages of residual blocks
    (stage ``i`` has ``layers[i]`` blocks of width ``widths[i]``; its first block applies
    ``strides[i]`` and a projection shortcut when shapes change) -> global average pool ->
    dropout -> linear head. ``forward`` returns LOGITS (no softmax: pair it with
    ``nn.CrossEntropyLoss``).

    Args:
        spatial_dims: N, the number of spatial dims of the input (any N >= 1).
        in_channels: input channels.
        num_classes: outputs of the linear head; None drops the head and ``forward`` returns
            the pooled features (B, ``out_features``).
        preset: "resnet10" | "resnet18" | "resnet34" | "resnet50" | "resnet101" | "resnet152"
            (or a ``ResNetPresets`` member); gives ``block`` and ``layers``. None: give both.
        layers: blocks per stage, e.g. (2, 2) — overrides the preset's.
        block: "basic" or "bottleneck" (4x expansion) — overrides the preset's.
        widths: base width per stage (default 64, 128, 256, ... doubling).
        strides: stride of each stage's first block (default 1, then 2 for every later stage).
        stem: "standard" (7x7 conv stride 2 + max-pool, as torchvision) or "small" (3x3 conv
            stride 1, no pool: for tiny inputs such as 8x8 digits or 16^4 volumes).
        stem_channels: output channels of the stem (default ``widths[0]``).
        norm, act: layer specs ("batch", ("group", {"num_groups": 8}), "relu", ...).
        attention: an ``ndops.models.attention.build_attention`` spec ("channel", "spatial",
            "cbam", ("self", {"num_heads": 2}), None) used in every block, or a list with one
            spec per stage.
        dropout: dropout probability before the head.
        zero_init_residual: zero the last norm's weight of every block, so each block starts
            as the identity (Goyal et al. 2017); needs an affine norm.

    Attributes: ``feature_channels`` (channels of each stage's output), ``out_features``.

    Shapes: (B, in_channels, *spatial) -> (B, num_classes). Any spatial size works: every
    stride-2 stage maps size ``s`` to ``ceil(s / 2)``.
    """

    def __init__(self, spatial_dims, in_channels, num_classes=1000, preset="resnet18",
                 layers=None, block=None, widths=None, strides=None, stem="standard",
                 stem_channels=None, norm="batch", act="relu", attention=None, dropout=0.0,
                 zero_init_residual=False):
        super().__init__()
        if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int) \
                or spatial_dims < 1:
            raise _error(f"spatial_dims must be an int >= 1, got {spatial_dims!r}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise _error(f"in_channels must be an int >= 1, got {in_channels!r}")
        if num_classes is not None and (isinstance(num_classes, bool)
                                        or not isinstance(num_classes, int) or num_classes < 1):
            raise _error(f"num_classes must be an int >= 1 or None, got {num_classes!r}")
        if preset is not None:
            key = preset.value if isinstance(preset, ResNetPresets) else preset
            if key not in PRESETS:
                raise _error(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)} "
                             "(or None with layers= and block=)")
            preset_block, preset_layers = PRESETS[key]
            block = preset_block if block is None else block
            layers = preset_layers if layers is None else layers
        if layers is None or block is None:
            raise _error("without a preset, give both layers= (blocks per stage) and block= "
                         "('basic' or 'bottleneck')")
        if block not in BLOCKS:
            raise _error(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if stem not in STEMS:
            raise _error(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
                or not 0 <= dropout < 1:
            raise _error(f"dropout must be a probability in [0, 1), got {dropout!r}")
        layers = _int_tuple("layers", layers)
        num_stages = len(layers)
        widths = tuple(64 * 2 ** i for i in range(num_stages)) if widths is None \
            else _int_tuple("widths", widths, num_stages)
        strides = (1,) + (2,) * (num_stages - 1) if strides is None \
            else _int_tuple("strides", strides, num_stages)
        stem_channels = widths[0] if stem_channels is None \
            else _int_tuple("stem_channels", [stem_channels])[0]
        attention = per_stage_attention(attention, num_stages)

        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, \
            num_classes
        n, block_cls = spatial_dims, BLOCKS[block]
        kernel, stride, pool = STEMS[stem]
        self.stem = nn.Sequential(
            get_conv(n, in_channels, stem_channels, kernel, stride, bias=False),
            *get_norm_act(norm, act, n, stem_channels),
            get_pool("max", n, 3, 2, 1) if pool else nn.Identity())

        stages, channels = [], stem_channels
        for depth, width, first_stride, spec in zip(layers, widths, strides, attention):
            blocks = []
            for i in range(depth):
                blocks.append(block_cls(n, channels, width, first_stride if i == 0 else 1, norm,
                                        act, spec))
                channels = width * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.feature_channels = [w * block_cls.expansion for w in widths]
        self.out_features = channels
        self.pool = get_adaptive_pool("avg", n, 1)
        self.dropout = get_dropout(n, dropout)
        self.head = nn.Linear(channels, num_classes) if num_classes is not None else None
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual):
        # He init for the convs of the stem and the blocks (attention modules keep their own).
        attention_params = {id(p) for m in self.modules() if hasattr(m, "last_norm")
                            for p in m.attention.parameters()}
        for m in self.modules():
            if isinstance(m, nn.modules.conv._ConvNd) and id(m.weight) not in attention_params:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                if hasattr(m, "last_norm"):
                    if getattr(m.last_norm, "weight", None) is None:
                        raise _error("zero_init_residual=True needs a norm with an affine "
                                     "weight (batch, group, layer, or instance with "
                                     "affine=True)")
                    nn.init.zeros_(m.last_norm.weight)

    def features(self, x):
        """The output of every stage, a list of ``len(layers)`` tensors (B, C_i, *spatial_i)
        with C_i = ``feature_channels[i]`` — the multi-scale maps a detection/segmentation
        head uses."""
        _check_input("ResNet", x, self.spatial_dims, self.in_channels)
        h, outputs = self.stem(x), []
        for stage in self.stages:
            h = stage(h)
            outputs.append(h)
        return outputs

    def forward(self, x):
        """(B, in_channels, *spatial) -> logits (B, num_classes) (pooled features
        (B, out_features) when num_classes is None)."""
        h = torch.flatten(self.pool(self.features(x)[-1]), 1)
        h = self.dropout(h)
        return h if self.head is None else self.head(h)


class ResNetDenoiser(ConfigurableModel):
    """A resolution-preserving, time-conditioned residual network for diffusion: input conv ->
    ``num_blocks`` residual ``ConvBlock``s (two convs each) whose first norm is modulated by the
    timestep (and class) embedding as ``h * (1 + scale) + shift`` -> norm, act, output conv.

    Called ``model(x, t)`` or ``model(x, t, y)``: x (B, in_channels, *spatial), t (B,) int or
    float timesteps (a number or 0-d tensor is broadcast over the batch), y (B,) int class
    labels or None. With ``num_classes`` set, a learned "null class" embedding stands for
    y=None and for entries of y equal to -1, so classifier-free guidance can train with
    dropped labels and sample unconditionally. Output (B, out_channels, *spatial).

    Lighter than a UNet (no down/up-sampling): the receptive field grows by 4 * (kernel_size //
    2) per block, so use it for small inputs or as a fast baseline at high N.

    Args:
        spatial_dims, in_channels, out_channels: N and the channel counts.
        channels: width of every block.
        num_blocks: number of residual blocks.
        time_embed_dim: size of the timestep embedding (default ``4 * channels``).
        num_classes: number of class labels for conditioning (None: unconditional).
        norm, act, dropout: as in ``ConvBlock`` (GroupNorm + SiLU by default).
        attention: a ``build_attention`` spec used in every block, or one per block.
        kernel_size: kernel of the block convs.

    Example::

        >>> net = ResNetDenoiser(4, in_channels=1, out_channels=1, channels=16, num_blocks=2)
        >>> net(torch.randn(2, 1, 6, 6, 6, 6), torch.tensor([3, 90])).shape
        torch.Size([2, 1, 6, 6, 6, 6])
    """

    def __init__(self, spatial_dims, in_channels, out_channels, channels=64, num_blocks=4,
                 time_embed_dim=None, num_classes=None, norm="group", act="silu", dropout=0.0,
                 attention=None, kernel_size=3):
        super().__init__()
        for name, value in (("spatial_dims", spatial_dims), ("in_channels", in_channels),
                            ("out_channels", out_channels), ("channels", channels),
                            ("num_blocks", num_blocks), ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ndops.models.ResNetDenoiser: {name} must be an int >= 1, "
                                 f"got {value!r}")
        time_embed_dim = 4 * channels if time_embed_dim is None else time_embed_dim
        if isinstance(time_embed_dim, bool) or not isinstance(time_embed_dim, int) \
                or time_embed_dim < 1:
            raise ValueError("ndops.models.ResNetDenoiser: time_embed_dim must be an int >= 1 "
                             f"or None, got {time_embed_dim!r}")
        if num_classes is not None and (isinstance(num_classes, bool)
                                        or not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError("ndops.models.ResNetDenoiser: num_classes must be an int >= 1 or "
                             f"None, got {num_classes!r}")
        attention = per_stage_attention(attention, num_blocks, "ResNetDenoiser")
        n = spatial_dims
        self.spatial_dims, self.in_channels, self.out_channels = n, in_channels, out_channels
        self.num_classes = num_classes
        self.time_embed = TimestepEmbedding(channels, time_embed_dim)
        # Row num_classes is the learned "null class" (unconditional) embedding.
        self.class_embed = None if num_classes is None \
            else nn.Embedding(num_classes + 1, time_embed_dim)
        self.input_conv = get_conv(n, in_channels, channels, kernel_size)
        self.blocks = nn.ModuleList(
            ConvBlock(n, channels, channels, num_convs=2, kernel_size=kernel_size, norm=norm,
                      act=act, dropout=dropout, residual=True, emb_channels=time_embed_dim,
                      attention=spec)
            for spec in attention)
        self.output = nn.Sequential(get_norm(norm, n, channels), get_act(act),
                                    get_conv(n, channels, out_channels, kernel_size))

    def _embedding(self, x, t, y):
        batch = x.shape[0]
        if not torch.is_tensor(t):
            t = torch.tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError("ndops.models.ResNetDenoiser: t must be a number or a (B,) tensor "
                             f"of timesteps with B={batch}, got shape {tuple(t.shape)}")
        emb = self.time_embed(t.to(x.device))
        if self.class_embed is None:
            if y is not None:
                raise ValueError("ndops.models.ResNetDenoiser: y was given but the model has "
                                 "num_classes=None (build it with num_classes=K)")
            return emb
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=x.device)
        elif y.shape != (batch,) or y.is_floating_point():
            raise ValueError("ndops.models.ResNetDenoiser: y must be a (B,) integer tensor of "
                             f"class labels with B={batch}, got {y.dtype} {tuple(y.shape)}")
        else:
            if not torch.compiler.is_compiling() and y.numel() and (
                    y.min() < -1 or y.max() >= self.num_classes):
                raise ValueError("ndops.models.ResNetDenoiser: labels y must lie in "
                                 f"[0, {self.num_classes}) or be -1 (the null class)")
            y = torch.where(y < 0, self.num_classes, y.long())
        return emb + self.class_embed(y)

    def forward(self, x, t, y=None):
        _check_input("ResNetDenoiser", x, self.spatial_dims, self.in_channels)
        emb = self._embedding(x, t, y)
        h = self.input_conv(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(h)
