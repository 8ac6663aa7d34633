"""Seed-compatible names: a migration path from the "UNETPyTorch" V2 package to ndops.models.

``GeneralUNETModel``, ``DiffusionUNETModel``, ``GeneralResNetModel``, ``DiffusionResNetModel``,
``ResNetPresets``, ``ResNetArgs``, ``AttentionOptions`` and ``AttentionArgs`` take the seed's
argument names and build ndops' own networks: ``UNet``, ``ResNet``, ``ResNetDenoiser`` and
``GaussianDiffusion``. Each adapter IS the network (an ``nn.Module`` you call directly, with
``save``/``load``); the seed's wrapper objects held it in ``.model``, which still works.

Argument map (seed -> ndops):

* ``data_dims`` -> ``spatial_dims`` (any N: 1, 2, 3, 4, 5, ...).
* ``channel_list`` -> ``UNet(channels=...)``: one level per entry, the last is the bottleneck.
  Any list works (the seed needed >= 3 ascending, doubling channels and sizes divisible by
  2^levels); any input size works.
* ``conv_act_fn`` -> ``act``: an activation module (``nn.LeakyReLU(0.2)``) is translated to
  its spec (``("leaky_relu", {"negative_slope": 0.2})``, ``inplace`` dropped); pass the spec
  itself to keep the model savable. None -> ReLU.
* ``conv_residual`` -> ``UNet(residual=...)``. ResNets always keep their shortcuts (with
  ``conv_residual=False``, the seed's default, it built a plain CNN), so the flag is accepted
  and ignored there.
* ``up_drop_perc`` -> ``UNet(dropout=...)``, now inside every block (the seed dropped only
  after each upsampling).
* ``conv_attn_args`` -> attention at the end of every block: ``[CHANNEL]`` -> "channel",
  ``[SPATIAL]`` -> "spatial", ``[CHANNEL, SPATIAL]`` -> "cbam" (CBAM, whose channel MLP now has
  its ReLU), ``[QKV]`` -> multi-head "self" attention (``qkv_heads`` heads, sinusoidal
  positions when ``use_pos``; over an average-pooled grid when there are more than 4096
  tokens, instead of the seed's O(L^2) blow-up). ``channel_ratio`` -> ``reduction``;
  ``enc_channels``, ``skip_channels``, ``spatial_inter_channels`` and ``pos_max_len`` are
  derived from the network and ignored. An ndops spec ("cbam", ("self", {...})) also works.
* ``up_attn_args`` (UNet) -> an additive ``AttentionGate`` on every skip connection, gated by
  the decoder's coarser features (the seed's up-attention reweighted the skip from both
  tensors; its QKV variant replaced the skip with a sigmoid map), plus the translated
  attention at the bottleneck, which the seed also attended.
* ``in_layer`` / ``out_layer``: modules run before / after the UNet (``UNet`` then outputs
  ``channel_list[0]`` channels, or ``out_channels`` when given). In a ResNet, ``in_layer``
  replaces the stem, as in the seed (it must output 64 channels, or ``channel_list[0][0]``).
* ``preset`` (``ResNetPresets`` member or name) -> ``ResNet(preset=...)``;
  ``preset_out_classes`` -> ``num_classes``. The head returns LOGITS: the seed's Softmax head
  fed a second softmax inside ``nn.CrossEntropyLoss``.
* ``custom_resnet_args=ResNetArgs(channel_list, kernel_list, padding_list, set_list)`` ->
  ``ResNet(layers=set_list, block=..., widths=...)``: kernels (3, 3) make basic blocks,
  (1, 3, 1) bottleneck blocks; each stage's channels are [in, width, width] or [in, width,
  width, 4 * width]; paddings are always "same" (the seed could not use custom args at all).
* ``time_steps`` -> ``GaussianDiffusion(timesteps=...)`` with the seed's epsilon prediction
  and L1 loss and DDPM's linear schedule rescaled to T steps (the seed's unscaled
  ``linspace(1e-4, 0.02, T)`` left 22% of the signal in x_T at its T = 300, so sampling started
  from the wrong distribution; the rescaled betas need T > 20). ``time_embed_count`` ->
  ``time_embed_dim`` (the timestep embedding is now sin/cos of t * frequency: the seed's was
  linear in t).
* ``DiffusionResNetModel`` uses ``ResNetDenoiser`` (resolution-preserving residual blocks):
  the seed's diffusion ResNet downsampled to a vector and could not output an image. A preset
  sets the depth (total blocks: 8 for resnet18) at width 64; custom args set both.
* ``name`` -> ``model_name``; ``loss_rate`` -> ``learning_rate`` (build the optimizer
  yourself: ``torch.optim.Adam(model.parameters(), lr=model.learning_rate)``).

Gone: ``train_model`` / ``test_model`` (they deleted earlier runs and kept the "best" model by
one batch loss), ``sample_plot_image`` / ``show_tensor_image`` (3-channel 2-D only). Use a
training loop of your own and ``model.sample(shape, sampler="ddpm" | "ddim", steps=...)``,
which returns tensors of any channels and N. ``forward_diffusion_sample(x0, t)`` remains, as
``q_sample`` returning ``(x_t, noise)``.

Example (the seed's README example 3, now at 4-D)::

    cbam = AttentionArgs(attn_order=[AttentionOptions.CHANNEL, AttentionOptions.SPATIAL])
    unet = GeneralUNETModel("demo", 1, [8, 16, 32], data_dims=4, conv_attn_args=cbam,
                            up_attn_args={"attn_order": [AttentionOptions.QKV], "qkv_heads": 2},
                            conv_act_fn=("leaky_relu", {"negative_slope": 0.2}),
                            conv_residual=True)
    resnet = GeneralResNetModel("demo", 1, preset=ResNetPresets.RESNET18,
                                preset_out_classes=10, data_dims=4, conv_attn_args=cbam)
"""
import enum

import torch
from torch import nn

from ndops.models.attention import AttentionGate
from ndops.models.config import ConfigurableModel
from ndops.models.diffusion import GaussianDiffusion
from ndops.models.layers import ACTIVATIONS
from ndops.models.resnet import PRESETS, ResNet, ResNetDenoiser, ResNetPresets
from ndops.models.unet import UNet

__all__ = ["GeneralUNETModel", "DiffusionUNETModel", "GeneralResNetModel",
           "DiffusionResNetModel", "ResNetPresets", "ResNetArgs", "AttentionOptions",
           "AttentionArgs", "attention_spec", "activation_spec"]


def _error(owner, message):
    return ValueError(f"ndops.models.{owner}: {message}")


class AttentionOptions(str, enum.Enum):
    """The seed's attention kinds; each member equals its lower-case name."""
    CHANNEL = "channel"
    SPATIAL = "spatial"
    QKV = "qkv"


class _ArgsDict(dict):
    """A dict with attribute access: the seed's dataclass fields, but JSON-serializable, so a
    model built from it can be saved and loaded."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class AttentionArgs(_ArgsDict):
    """The seed's attention settings (same fields and defaults); see the module docstring for
    what each becomes."""

    def __init__(self, attn_order, enc_channels=None, skip_channels=None, channel_ratio=8,
                 spatial_inter_channels=None, qkv_heads=1, use_pos=False, pos_max_len=0):
        try:
            order = [AttentionOptions(a.lower() if isinstance(a, str) else a)
                     for a in attn_order]
        except (TypeError, ValueError):
            raise _error("AttentionArgs", f"attn_order must list AttentionOptions (CHANNEL, "
                         f"SPATIAL, QKV), got {attn_order!r}") from None
        super().__init__(attn_order=[a.value for a in order], enc_channels=enc_channels,
                         skip_channels=skip_channels, channel_ratio=channel_ratio,
                         spatial_inter_channels=spatial_inter_channels, qkv_heads=qkv_heads,
                         use_pos=use_pos, pos_max_len=pos_max_len)


class ResNetArgs(_ArgsDict):
    """The seed's custom ResNet layout: per stage, the channel sequence of one block, its
    kernels and paddings, and the number of blocks (``set_list``)."""

    def __init__(self, channel_list, kernel_list, padding_list, set_list):
        super().__init__(channel_list=channel_list, kernel_list=kernel_list,
                         padding_list=padding_list, set_list=set_list)


def attention_spec(args, owner="AttentionArgs"):
    """An ``ndops.models.attention.build_attention`` spec from seed attention args
    (``AttentionArgs``, its dict form, None, or an ndops spec that passes through)."""
    if args is None or isinstance(args, str) or (isinstance(args, (list, tuple))
                                                 and len(args) == 2
                                                 and isinstance(args[1], dict)):
        return args
    if not isinstance(args, dict):
        raise _error(owner, f"attention args must be AttentionArgs, a dict of its fields, an "
                     f"ndops attention spec or None, got {type(args).__name__}")
    try:
        args = AttentionArgs(**args)
    except TypeError as err:
        raise _error(owner, f"bad attention args {dict(args)!r}: {err}") from None
    order = tuple(args.attn_order)
    if order == ():
        return None
    if order == ("channel",):
        return ("channel", {"reduction": args.channel_ratio})
    if order == ("spatial",):
        return "spatial"
    if order == ("channel", "spatial"):
        return ("cbam", {"reduction": args.channel_ratio})
    if order == ("qkv",):
        return ("self", {"num_heads": args.qkv_heads, "downsample": "auto",
                         "pos_embedding": "sinusoidal" if args.use_pos else None})
    raise _error(owner, f"attn_order {list(order)} has no ndops equivalent; use [CHANNEL], "
                 "[SPATIAL], [CHANNEL, SPATIAL] (CBAM) or [QKV]")


# activation class -> the constructor arguments that define it (inplace is dropped)
_ACT_FIELDS = {nn.LeakyReLU: ("negative_slope",), nn.ELU: ("alpha",), nn.GELU: ("approximate",),
               nn.Softplus: ("beta", "threshold"), nn.PReLU: ("num_parameters",)}


def activation_spec(act, owner="GeneralUNETModel"):
    """An activation spec from the seed's ``conv_act_fn`` (a module, a spec, or None)."""
    if act is None:
        return "relu"
    if not isinstance(act, nn.Module):
        return act
    names = [name for name, cls in ACTIVATIONS.items() if type(act) is cls]
    if not names:
        raise _error(owner, f"conv_act_fn {type(act).__name__} has no ndops equivalent; valid: "
                     f"{', '.join(ACTIVATIONS)} (as modules or names)")
    kwargs = {field: getattr(act, field) for field in _ACT_FIELDS.get(type(act), ())}
    return (names[0], kwargs) if kwargs else names[0]


class _SeedNaming:
    """The seed wrappers' attribute names on the ndops model itself."""

    @property
    def model_name(self):
        return self.config["name"]

    @property
    def learning_rate(self):
        return self.config["loss_rate"]

    @property
    def param_count(self):
        return sum(p.numel() for p in self.parameters())


class LayeredUNet(UNet):
    """``UNet`` between optional ``in_layer`` and ``out_layer`` modules, with an
    ``AttentionGate`` on every skip when ``gate_skips`` (also at levels that have block
    attention, which ``attention_levels`` alone cannot express)."""

    def __init__(self, in_layer=None, out_layer=None, gate_skips=False, **unet_kwargs):
        super().__init__(**unet_kwargs)
        self.in_layer = in_layer if in_layer is not None else nn.Identity()
        self.out_layer = out_layer if out_layer is not None else nn.Identity()
        if gate_skips:
            for level in range(len(self.channels) - 1):
                if str(level) not in self.gates:
                    self.gates[str(level)] = AttentionGate(
                        self.spatial_dims, self.channels[level], self.channels[level + 1])
        if out_layer is not None:
            self.out_channels = None  # decided by out_layer

    def forward(self, x, t=None, y=None):
        return self.out_layer(super().forward(self.in_layer(x), t, y))


def _unet_kwargs(owner, in_channels, channel_list, data_dims, up_drop_perc, up_attn_args,
                 conv_act_fn, conv_attn_args, conv_residual):
    if not isinstance(channel_list, (list, tuple)) or not channel_list:
        raise _error(owner, f"channel_list must be a non-empty list of ints, got "
                     f"{channel_list!r}")
    levels = len(channel_list)
    block = attention_spec(conv_attn_args, owner)
    attention = [block] * levels
    if up_attn_args is not None:
        attention[-1] = attention_spec(up_attn_args, owner)
    return dict(spatial_dims=data_dims, in_channels=in_channels, channels=list(channel_list),
                attention_levels=attention, act=activation_spec(conv_act_fn, owner),
                dropout=up_drop_perc, residual=conv_residual,
                gate_skips=up_attn_args is not None)


class GeneralUNETModel(_SeedNaming, LayeredUNet):
    """The seed's ``GeneralUNETModel`` arguments, building ndops' ``UNet`` (see the module
    docstring). ``out_channels`` (new, optional) sets the UNet's output channels, default
    ``channel_list[0]`` as in the seed."""

    def __init__(self, name, in_channels, channel_list, in_layer=None, out_layer=None,
                 data_dims=2, up_drop_perc=0.3, up_attn_args=None, conv_act_fn=None,
                 conv_attn_args=None, conv_residual=False, loss_rate=0.002, out_channels=None):
        kwargs = _unet_kwargs("GeneralUNETModel", in_channels, channel_list, data_dims,
                              up_drop_perc, up_attn_args, conv_act_fn, conv_attn_args,
                              conv_residual)
        super().__init__(in_layer=in_layer, out_layer=out_layer,
                         out_channels=out_channels or channel_list[0], **kwargs)

    @property
    def model(self):
        """The network itself (the seed's wrapper kept it here)."""
        return self


class _SeedDiffusion(_SeedNaming, ConfigurableModel, GaussianDiffusion):
    """GaussianDiffusion with the seed's schedule (linear), target (epsilon) and loss (L1)."""

    def _build_diffusion(self, model, time_steps):
        GaussianDiffusion.__init__(self, model, timesteps=time_steps, schedule="linear",
                                   prediction="epsilon", loss="l1")

    def forward_diffusion_sample(self, batch_imgs, batch_time_steps, device=None):
        """``(x_t, noise)``: ``batch_imgs`` noised to timesteps ``batch_time_steps``."""
        if device is not None:
            batch_imgs = batch_imgs.to(device)
        noise = torch.randn_like(batch_imgs)
        t = torch.as_tensor(batch_time_steps, device=batch_imgs.device)
        return self.q_sample(batch_imgs, t, noise), noise


class DiffusionUNETModel(_SeedDiffusion):
    """The seed's ``DiffusionUNETModel`` arguments: a time-conditioned ``UNet`` (mapping back
    to ``in_channels``, or to ``channel_list[0]`` followed by ``out_layer``) inside a
    ``GaussianDiffusion`` with ``time_steps`` steps. ``loss(x0)`` trains it, ``sample(shape,
    ...)`` generates; ``.model`` is the UNet."""

    def __init__(self, name, in_channels, channel_list, in_layer=None, out_layer=None,
                 data_dims=2, up_drop_perc=0.3, up_attn_args=None, conv_act_fn=None,
                 conv_attn_args=None, conv_residual=False, loss_rate=0.002, time_steps=300,
                 time_embed_count=32):
        kwargs = _unet_kwargs("DiffusionUNETModel", in_channels, channel_list, data_dims,
                              up_drop_perc, up_attn_args, conv_act_fn, conv_attn_args,
                              conv_residual)
        unet = LayeredUNet(in_layer=in_layer, out_layer=out_layer,
                           out_channels=in_channels if out_layer is None else channel_list[0],
                           time_conditioning=True, time_embed_dim=time_embed_count, **kwargs)
        self._build_diffusion(unet, time_steps)


def _resnet_layout(owner, preset, custom_resnet_args):
    """(preset, layers, block, widths, stem_channels) from the seed's preset / custom args."""
    if (preset is None) == (custom_resnet_args is None):
        raise _error(owner, "give exactly one of preset= and custom_resnet_args=")
    if preset is not None:
        key = preset.value if isinstance(preset, enum.Enum) else str(preset).lower()
        if key not in PRESETS:
            raise _error(owner, f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        return key, None, None, None, None
    try:
        args = ResNetArgs(**custom_resnet_args)
    except TypeError as err:
        raise _error(owner, f"custom_resnet_args must be ResNetArgs(channel_list, kernel_list, "
                     f"padding_list, set_list): {err}") from None
    kernels = {tuple(k) for k in args.kernel_list}
    if kernels == {(3, 3)}:
        block, size = "basic", 3
    elif kernels == {(1, 3, 1)}:
        block, size = "bottleneck", 4
    else:
        raise _error(owner, f"custom_resnet_args.kernel_list must be all (3, 3) (basic blocks) "
                     f"or all (1, 3, 1) (bottleneck blocks), got {args.kernel_list!r}")
    stages = [list(c) for c in args.channel_list]
    if len(stages) != len(args.set_list) or any(len(c) != size for c in stages) or (
            block == "bottleneck" and any(c[3] != 4 * c[1] for c in stages)):
        raise _error(owner, f"custom_resnet_args.channel_list must hold one [in, width, width"
                     f"{', 4 * width' if block == 'bottleneck' else ''}] list per entry of "
                     f"set_list, got {args.channel_list!r}")
    return None, list(args.set_list), block, [c[1] for c in stages], stages[0][0]


class GeneralResNetModel(_SeedNaming, ResNet):
    """The seed's ``GeneralResNetModel`` arguments, building ndops' ``ResNet`` (see the module
    docstring); returns logits (or pooled features when there are no classes), then
    ``out_layer`` if given."""

    def __init__(self, name, in_channels, preset=None, preset_out_classes=0,
                 custom_resnet_args=None, in_layer=None, out_layer=None, data_dims=2,
                 conv_act_fn=None, conv_attn_args=None, conv_residual=False, loss_rate=0.002):
        owner = "GeneralResNetModel"
        key, layers, block, widths, stem_channels = _resnet_layout(owner, preset,
                                                                   custom_resnet_args)
        if key is not None and (not isinstance(preset_out_classes, int)
                                or preset_out_classes < 1):
            raise _error(owner, f"preset_out_classes must be an int >= 1 with a preset, got "
                         f"{preset_out_classes!r}")
        super().__init__(data_dims, in_channels, preset_out_classes or None, preset=key,
                         layers=layers, block=block, widths=widths, stem_channels=stem_channels,
                         act=activation_spec(conv_act_fn, owner),
                         attention=attention_spec(conv_attn_args, owner))
        if in_layer is not None:
            self.stem = in_layer
        self.out_layer = out_layer if out_layer is not None else nn.Identity()

    @property
    def model(self):
        """The network itself (the seed's wrapper kept it here)."""
        return self

    def forward(self, x):
        return self.out_layer(super().forward(x))


class DiffusionResNetModel(_SeedDiffusion):
    """The seed's ``DiffusionResNetModel`` arguments: a ``ResNetDenoiser`` (depth and width
    from the preset or custom args) inside a ``GaussianDiffusion`` with ``time_steps`` steps.
    ``in_layer`` / ``out_layer`` are not supported (the denoiser maps back to
    ``in_channels`` itself); ``preset_out_classes`` and ``conv_residual`` are ignored."""

    def __init__(self, name, in_channels, preset=None, preset_out_classes=0,
                 custom_resnet_args=None, in_layer=None, out_layer=None, data_dims=2,
                 conv_act_fn=None, conv_attn_args=None, conv_residual=False, loss_rate=0.002,
                 time_steps=300, time_embed_count=32):
        owner = "DiffusionResNetModel"
        if in_layer is not None or out_layer is not None:
            raise _error(owner, "in_layer / out_layer are not supported: the denoiser keeps "
                         "the resolution and maps back to in_channels itself")
        key, layers, _, widths, _ = _resnet_layout(owner, preset, custom_resnet_args)
        if key is not None:
            layers, widths = PRESETS[key][1], [64]
        denoiser = ResNetDenoiser(data_dims, in_channels, in_channels, channels=widths[0],
                                  num_blocks=sum(layers), time_embed_dim=time_embed_count,
                                  act=activation_spec(conv_act_fn, owner),
                                  attention=attention_spec(conv_attn_args, owner))
        self._build_diffusion(denoiser, time_steps)
