"""ndops.models.attention: channel / spatial / CBAM gates, the Attention U-Net gate and
multi-head self-attention, at N = 1..4 and down to spatial size 1."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ndops.models.attention import (CBAM, AttentionGate, ChannelAttention, SelfAttention,
                                    SpatialAttention, build_attention)
from ndops.models.embeddings import sinusoidal_position_embedding
from ndops.models.layers import interpolate

DIMS = (1, 2, 3, 4)
ODD_SIZES = {1: (11,), 2: (7, 5), 3: (5, 3, 4), 4: (3, 5, 2, 3)}
SPECS = ["channel", "se", "spatial", "cbam", ("channel", {"reduction": 2, "act": "gelu"}),
         "self", ("self", {"num_heads": 4}), ("self", {"num_heads": 2, "head_dim": 3}),
         ("self", {"pos_embedding": "sinusoidal"}),
         ("self", {"pos_embedding": "learned", "grid_size": 2}),
         ("self", {"downsample": 2}), ("self", {"max_tokens": 4, "downsample": "auto"})]


def _check_grads(module):
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("n", DIMS)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_every_attention_keeps_shape_and_passes_grads(n, spec):
    module = build_attention(spec, n, 8)
    for shape in [(2, 8) + ODD_SIZES[n], (1, 8) + (1,) * n, (2, 8) + (1,) * n]:
        x = torch.randn(shape, requires_grad=True)
        y = module(x)
        assert y.shape == x.shape
        y.square().mean().backward()
        assert torch.isfinite(x.grad).all()
    _check_grads(module)


@pytest.mark.parametrize("n", DIMS)
def test_attention_gate_shapes_and_grads(n):
    gate = AttentionGate(n, 4, 6)
    for x_size, g_size in [(ODD_SIZES[n], (2,) * n), ((1,) * n, (1,) * n), ((4,) * n, (1,) * n),
                           (ODD_SIZES[n], ODD_SIZES[n])]:
        x = torch.randn(2, 4, *x_size, requires_grad=True)
        g = torch.randn(2, 6, *g_size, requires_grad=True)
        y = gate(x, g)
        assert y.shape == x.shape
        y.sum().backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(g.grad).all()
    _check_grads(gate)


# ---------------------------------------------------------------------------- channel / spatial

@pytest.mark.parametrize("n", (2, 4))
def test_channel_attention_formula(n):
    module = ChannelAttention(n, 8, reduction=4)
    assert isinstance(module.mlp[1], nn.ReLU)  # the seed's CBAM MLP had no nonlinearity
    x = torch.randn(2, 8, *ODD_SIZES[n])
    axes = tuple(range(2, n + 2))
    mlp = lambda d: module.mlp[2](torch.relu(module.mlp[0](d)))  # noqa: E731
    gate = torch.sigmoid(mlp(x.mean(axes)) + mlp(x.amax(axes)))
    torch.testing.assert_close(module(x), x * gate.reshape(2, 8, *([1] * n)))
    se = build_attention("se", n, 8)
    assert se.pooling == ("avg",)
    torch.testing.assert_close(se(x), x * torch.sigmoid(
        se.mlp(x.mean(axes))).reshape(2, 8, *([1] * n)))


def test_spatial_attention_formula():
    module = SpatialAttention(2, kernel_size=3)
    x = torch.randn(2, 5, 6, 4)
    maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    expected = x * torch.sigmoid(F.conv2d(maps, module.conv.weight, module.conv.bias, padding=1))
    torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize("n", DIMS)
def test_spatial_attention_at_size_one(n):
    """The seed's SPATIAL attention crashed at length 1; a size-1 map keeps only the centre tap."""
    module = SpatialAttention(n)
    x = torch.randn(3, 4, *([1] * n))
    center = module.conv.weight[(0, slice(None)) + (3,) * n]
    maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    gate = torch.sigmoid((maps * center.reshape(1, 2, *([1] * n))).sum(1, keepdim=True)
                         + module.conv.bias)
    torch.testing.assert_close(module(x), x * gate)


def test_cbam_is_channel_then_spatial():
    module = CBAM(3, 8, reduction=2, kernel_size=3)
    x = torch.randn(2, 8, 3, 4, 5)
    torch.testing.assert_close(module(x), module.spatial(module.channel(x)))


# ---------------------------------------------------------------------------- attention gate

def test_attention_gate_formula_2d():
    gate = AttentionGate(2, 4, 6, inter_channels=3)
    x, g = torch.randn(2, 4, 9, 8), torch.randn(2, 6, 4, 3)
    gating = F.interpolate(gate.w_g(g), size=(9, 8), mode="bilinear", align_corners=False)
    alpha = torch.sigmoid(gate.psi(torch.relu(gate.w_x(x) + gating)))
    torch.testing.assert_close(gate(x, g), x * alpha)


@pytest.mark.parametrize("n", (3, 4))
def test_attention_gate_gates_and_never_replaces(n):
    """Output = x * alpha with one alpha in (0, 1) per position, shared by all channels; the
    1x1 conv W_g commutes with the multilinear resampling of g."""
    gate = AttentionGate(n, 4, 6)
    x, g = torch.randn(2, 4, *([4] * n)), torch.randn(2, 6, *([2] * n))
    alpha = gate.attention_map(x, g)
    assert alpha.shape == (2, 1) + (4,) * n
    assert ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(gate(x, g), x * alpha)
    resampled = interpolate(g, size=(4,) * n, mode="linear", align_corners=False)
    expected = torch.sigmoid(gate.psi(torch.relu(gate.w_x(x) + gate.w_g(resampled))))
    torch.testing.assert_close(alpha, expected)


def test_attention_gate_rejects():
    with pytest.raises(ValueError, match="same batch size"):
        AttentionGate(2, 4, 6)(torch.randn(2, 4, 4, 4), torch.randn(1, 6, 2, 2))
    with pytest.raises(ValueError, match="mode"):
        AttentionGate(2, 4, 6, mode="cubic")
    with pytest.raises(ValueError, match="gating_channels"):
        AttentionGate(2, 4, 0)


# ---------------------------------------------------------------------------- self-attention

def _reference_attention_core(module, tokens):
    """proj(multi-head softmax(q k^T / sqrt(d)) v) for (B, L, C) tokens, head by head."""
    q, k, v = module.qkv(tokens).chunk(3, dim=-1)
    d = module.head_dim
    heads = []
    for h in range(module.num_heads):
        part = slice(h * d, (h + 1) * d)
        weights = torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(d), -1)
        heads.append(weights @ v[..., part])
    return module.proj(torch.cat(heads, -1))


@pytest.mark.parametrize("n, heads, head_dim",
                         [(1, 1, None), (2, 2, None), (3, 4, 3), (4, 2, None)])
def test_self_attention_formula(n, heads, head_dim):
    module = SelfAttention(n, 8, num_heads=heads, head_dim=head_dim)
    x = torch.randn(2, 8, *ODD_SIZES[n])
    tokens = module.norm(x).flatten(2).transpose(1, 2)
    out = _reference_attention_core(module, tokens).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(module(x), x + out)


def test_self_attention_without_positions_is_permutation_equivariant():
    module = SelfAttention(3, 8, num_heads=2)
    x = torch.randn(2, 8, 3, 4, 5)
    torch.testing.assert_close(module(x.flip(2, 4)), module(x).flip(2, 4))
    positioned = SelfAttention(3, 8, num_heads=2, pos_embedding="sinusoidal")
    positioned.load_state_dict(module.state_dict())
    assert not torch.allclose(positioned(x.flip(2, 4)), positioned(x).flip(2, 4), atol=1e-4)


@pytest.mark.parametrize("n", (2, 4))
def test_self_attention_positions_are_added_to_tokens(n):
    module = SelfAttention(n, 8, pos_embedding="sinusoidal")
    x = torch.randn(1, 8, *ODD_SIZES[n])
    tokens = module.norm(x).flatten(2).transpose(1, 2)
    tokens = tokens + sinusoidal_position_embedding(ODD_SIZES[n], 8)
    out = _reference_attention_core(module, tokens).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(module(x), x + out)


def test_learned_positions_resample_to_other_grids():
    module = SelfAttention(4, 8, pos_embedding="learned", grid_size=(2, 3, 2, 2))
    assert module.learned_positions.shape == (1, 8, 2, 3, 2, 2)
    for size in [(2, 3, 2, 2), (3, 3, 1, 4)]:
        module.zero_grad()
        module(torch.randn(2, 8, *size)).sum().backward()
        assert module.learned_positions.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs grid_size"):
        SelfAttention(2, 8, pos_embedding="learned")


def test_too_many_tokens_is_a_clear_error():
    module = SelfAttention(4, 4)
    x = torch.zeros(1, 4, 16, 16, 16, 16)  # L = 65536: 16 GiB of float32 attention weights
    with pytest.raises(ValueError, match=r"L=65536 tokens.*16\.0 GiB.*downsample"):
        module(x)
    with pytest.raises(ValueError, match=r"after downsample=\(2, 2, 2, 2\)"):
        SelfAttention(4, 4, max_tokens=1000, downsample=2)(x)


def test_downsampled_attention_formula():
    module = SelfAttention(4, 8, num_heads=2, downsample=2)
    x = torch.randn(2, 8, 4, 2, 4, 6)
    h = module.norm(x)
    # 2x average pooling in every dim, written out with reshape + mean.
    pooled = h.reshape(2, 8, 2, 2, 1, 2, 2, 2, 3, 2).mean((3, 5, 7, 9))
    tokens = pooled.flatten(2).transpose(1, 2)
    core = _reference_attention_core(module, tokens).transpose(1, 2).reshape(pooled.shape)
    expected = x + interpolate(core, size=(4, 2, 4, 6), mode="linear", align_corners=False)
    torch.testing.assert_close(module(x), expected)


def test_auto_downsample_picks_smallest_factor():
    module = SelfAttention(4, 4, max_tokens=300, downsample="auto")
    x = torch.randn(1, 4, 16, 16, 16, 16)
    assert module._token_grid(x) == (4, 4, 4, 4)  # 6^4 = 1296 > 300 >= 4^4
    assert module(x).shape == x.shape
    assert SelfAttention(2, 4, downsample="auto")._token_grid(torch.zeros(1, 4, 9, 7)) == (9, 7)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_heads=3), "num_heads=3 must divide channels=8"),
    (dict(num_heads=0), "num_heads"),
    (dict(pos_embedding="rotary"), "pos_embedding"),
    (dict(downsample=(2, 2)), "downsample"),
    (dict(downsample=0), "downsample"),
    (dict(dropout=1.0), "dropout"),
    (dict(norm="batchnorm"), "unknown norm"),
])
def test_self_attention_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelfAttention(3, 8, **kwargs)


def test_sinusoidal_positions_need_two_channels_per_axis():
    with pytest.raises(ValueError, match="channels >= 2 \\* spatial_dims = 8"):
        SelfAttention(4, 6, pos_embedding="sinusoidal")


def test_self_attention_rejects_wrong_input():
    with pytest.raises(ValueError, match="input must have shape"):
        SelfAttention(3, 8)(torch.randn(2, 8, 4, 4))


# ---------------------------------------------------------------------------- build_attention

@pytest.mark.parametrize("spec, cls", [(None, nn.Identity), ("none", nn.Identity),
                                       ("channel", ChannelAttention), ("SE", ChannelAttention),
                                       ("spatial", SpatialAttention), ("cbam", CBAM),
                                       (("self", {"num_heads": 2}), SelfAttention)])
def test_build_attention_classes(spec, cls):
    assert type(build_attention(spec, 3, 8)) is cls


@pytest.mark.parametrize("spec, match", [
    ("qkv", "unknown attention 'qkv'.*channel, se, spatial, cbam, self"),
    (("self", {"heads": 2}), r"unknown options \['heads'\].*num_heads"),
    (("channel", {"reduction": 0}), "reduction"),
    (("spatial", {"kernel_size": 4}), "odd"),
    (("self", 4), "attention must be None"),
])
def test_build_attention_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        build_attention(spec, 2, 8)
