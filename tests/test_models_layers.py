"""ndops.models.layers (layer factories) and ndops.models.embeddings."""
import math

import pytest
import torch
from torch import nn

from ndops import nn as ndnn
from ndops.models.embeddings import (TimestepEmbedding, sinusoidal_position_embedding,
                                     timestep_embedding)
from ndops.models import layers
from ndops.models.layers import (ACTIVATIONS, ChannelDropoutNd, InstanceNormNd,
                                 default_num_groups, get_act, get_adaptive_pool, get_conv,
                                 get_conv_transpose, get_dropout, get_norm, get_pool,
                                 get_upsample, interpolate, parse_spec)

DIMS = (1, 2, 3, 4)


def _input(n, channels=3, size=5, batch=2):
    return torch.randn(batch, channels, *([size] * n))


# ---------------------------------------------------------------------------- specs

@pytest.mark.parametrize("spec, expected", [
    (None, ("none", {})),
    ("ReLU", ("relu", {})),
    (("leaky_relu", {"negative_slope": 0.2}), ("leaky_relu", {"negative_slope": 0.2})),
    (["group", {"num_groups": 2}], ("group", {"num_groups": 2})),
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", [3, ("relu",), ("relu", {}, 1), ({"a": 1}, "relu"), ("relu", 1)])
def test_parse_spec_rejects(spec):
    with pytest.raises(ValueError, match="norm must be None, a name"):
        parse_spec(spec, "norm")


# ---------------------------------------------------------------------------- convs

@pytest.mark.parametrize("n", DIMS)
def test_conv_class_per_dim(n):
    conv = get_conv(n, 3, 4)
    expected = (nn.Conv1d, nn.Conv2d, nn.Conv3d, ndnn.ConvNd)[min(n, 4) - 1]
    assert type(conv) is expected
    transposed = get_conv_transpose(n, 3, 4, 2, 2)
    expected = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                ndnn.ConvTransposeNd)[n - 1]
    assert type(transposed) is expected


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("n", DIMS)
@pytest.mark.parametrize("kwargs, size, out_size", [
    ({}, 5, 5),                                  # default padding keeps odd kernels' size
    ({"kernel_size": 5, "dilation": 2}, 9, 9),
    ({"stride": 2}, 5, 3),
    ({"stride": 2}, 6, 3),
    ({"kernel_size": 1, "stride": 3}, 7, 3),
    ({"padding": 0}, 5, 3),
    ({"padding": "same", "kernel_size": 4}, 5, 5),
])
def test_conv_shapes(n, kwargs, size, out_size):
    conv = get_conv(n, 3, 4, **kwargs)
    assert conv(_input(n, size=size)).shape == (2, 4) + (out_size,) * n


@pytest.mark.parametrize("n", DIMS)
def test_conv_transpose_shapes(n):
    conv = get_conv_transpose(n, 3, 2, kernel_size=2, stride=2)
    assert conv(_input(n, size=3)).shape == (2, 2) + (6,) * n
    conv = get_conv_transpose(n, 3, 2, kernel_size=3, stride=2, padding=1, output_padding=1)
    assert conv(_input(n, size=3)).shape == (2, 2) + (6,) * n


def test_conv_factory_matches_torch_at_2d():
    """ConvNd at N = 4 and torch's conv at N = 2 come from the same factory; the 4-D one with
    trailing size-1 dims and 1-tap kernels there must reproduce the 2-D result."""
    conv2 = get_conv(2, 3, 4, kernel_size=3)
    conv4 = get_conv(4, 3, 4, kernel_size=(3, 3, 1, 1))
    conv4.weight.data = conv2.weight.data[..., None, None].clone()
    conv4.bias.data = conv2.bias.data.clone()
    x = torch.randn(2, 3, 6, 5)
    torch.testing.assert_close(conv4(x[..., None, None])[..., 0, 0], conv2(x))


@pytest.mark.parametrize("bad, match", [
    (dict(spatial_dims=0), "spatial_dims"), (dict(in_channels=0), "in_channels"),
    (dict(out_channels=2.0), "out_channels"), (dict(kernel_size=(3, 3)), "kernel_size"),
    (dict(stride=(1, 2)), "stride"), (dict(padding=(1, 1)), "padding"),
    (dict(dilation=(1, 1, 1, 1)), "dilation"),
])
def test_conv_rejects(bad, match):
    kwargs = dict(spatial_dims=3, in_channels=2, out_channels=2, kernel_size=3) | bad
    with pytest.raises(ValueError, match=match):
        get_conv(**kwargs)


# ---------------------------------------------------------------------------- norms

@pytest.mark.parametrize("n", DIMS)
@pytest.mark.parametrize("spec", ["batch", "group", ("group", {"num_groups": 2}), "instance",
                                  ("instance", {"affine": True}), "layer", "none", None])
def test_norm_shapes_and_grads(n, spec):
    norm = get_norm(spec, n, 4)
    x = _input(n, channels=4, size=3).requires_grad_()
    y = norm(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("n, expected", [(2, nn.BatchNorm2d), (3, nn.BatchNorm3d),
                                         (4, ndnn.BatchNormNd)])
def test_batch_norm_class(n, expected):
    assert type(get_norm("batch", n, 4)) is expected


@pytest.mark.parametrize("channels, groups", [(64, 32), (96, 32), (48, 24), (40, 20), (7, 7),
                                              (1, 1), (66, 22)])
def test_default_num_groups(channels, groups):
    assert default_num_groups(channels) == groups
    assert get_norm("group", 2, channels).num_groups == groups


def test_layer_norm_is_one_group():
    norm = get_norm("layer", 3, 6)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 1


@pytest.mark.parametrize("n", (2, 4))
def test_instance_norm_formula(n):
    x = _input(n, channels=3, size=4)
    norm = get_norm("instance", n, 3)
    assert isinstance(norm, nn.InstanceNorm2d if n == 2 else InstanceNormNd)
    axes = tuple(range(2, n + 2))
    expected = (x - x.mean(axes, keepdim=True)) / torch.sqrt(
        x.var(axes, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x), expected)
    torch.testing.assert_close(norm(x[0]), expected[0])  # unbatched, like torch


def test_instance_norm_nd_rejects_wrong_rank():
    with pytest.raises(ValueError, match="N=4 spatial dims"):
        InstanceNormNd(3, spatial_dims=4)(torch.randn(2, 3, 4, 4))


@pytest.mark.parametrize("spec, match", [("batchnorm", "unknown norm 'batchnorm'.*batch, group"),
                                         (("group", {"num_groups": 3}), "must divide"),
                                         (5, "norm must be")])
def test_norm_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        get_norm(spec, 2, 4)


# ---------------------------------------------------------------------------- activations

@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation(name):
    act = get_act(name)
    x = torch.randn(2, 3, 4)
    assert act(x).shape == x.shape


def test_activation_aliases_and_kwargs():
    assert isinstance(get_act("swish"), nn.SiLU)
    assert isinstance(get_act(None), nn.Identity)
    assert get_act(("leaky_relu", {"negative_slope": 0.3})).negative_slope == 0.3
    assert get_act(("prelu", {"num_parameters": 5})).weight.shape == (5,)


def test_activation_rejects_unknown():
    with pytest.raises(ValueError, match="unknown act 'relu6'.*leaky_relu"):
        get_act("relu6")


# ------------------------------------------------------------------ pool, dropout, upsample

@pytest.mark.parametrize("n", DIMS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools(n, kind):
    x = _input(n, size=5)
    assert get_pool(kind, n, 2)(x).shape == (2, 3) + (2,) * n
    assert get_pool(kind, n, 3, stride=2, padding=1)(x).shape == (2, 3) + (3,) * n
    assert get_adaptive_pool(kind, n, 1)(x).shape == (2, 3) + (1,) * n
    assert get_adaptive_pool(kind, n, 2)(x).shape == (2, 3) + (2,) * n
    expected = ndnn.MaxPoolNd if kind == "max" else ndnn.AvgPoolNd
    assert isinstance(get_pool(kind, n, 2), expected) == (n > 3)


def test_pool_rejects_kind():
    with pytest.raises(ValueError, match="pool kind"):
        get_pool("min", 2, 2)
    with pytest.raises(ValueError, match="pool kind"):
        get_adaptive_pool("sum", 4, 1)


@pytest.mark.parametrize("n", DIMS)
def test_dropout(n):
    assert isinstance(get_dropout(n, 0.0), nn.Identity)
    assert isinstance(get_dropout(n, 0.3), nn.Dropout)
    channelwise = get_dropout(n, 0.5, channelwise=True)
    expected = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, ChannelDropoutNd)[n - 1]
    assert type(channelwise) is expected
    x = torch.ones(8, 16, *([3] * n))
    y = channelwise(x).flatten(2)
    # Whole channels are dropped or kept (and scaled by 1 / (1 - p)).
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert (y.amin(-1) == y.amax(-1)).all()
    channelwise.eval()
    assert torch.equal(channelwise(x), x)


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5"])
def test_dropout_rejects(p):
    with pytest.raises(ValueError, match="dropout"):
        get_dropout(2, p)


@pytest.mark.parametrize("n", DIMS)
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample(n, mode):
    up = get_upsample(n, scale_factor=2, mode=mode)
    assert isinstance(up, ndnn.UpsampleNd) == (n > 3)
    assert up(_input(n, size=3)).shape == (2, 3) + (6,) * n
    assert get_upsample(n, size=4)(_input(n, size=3)).shape == (2, 3) + (4,) * n


@pytest.mark.parametrize("n", DIMS)
def test_interpolate_linear_is_multilinear(n):
    """'linear' at any N; a linear ramp along each axis stays a ramp (align_corners=True)."""
    x = _input(n, size=3)
    y = interpolate(x, size=(5,) * n, mode="linear", align_corners=True)
    assert y.shape == (2, 3) + (5,) * n
    ramp = torch.arange(3.0).reshape(1, 1, 3, *([1] * (n - 1))).expand(1, 1, *([3] * n))
    up = interpolate(ramp.contiguous(), size=(5,) * n, mode="linear", align_corners=True)
    torch.testing.assert_close(up[0, 0].reshape(5, -1)[:, 0], torch.arange(5.0) / 2)


# ---------------------------------------------------------------------------- embeddings

def _direct_timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    rows = []
    for value in t:
        freqs = [max_period ** (-j / half) for j in range(half)]
        row = [math.sin(value * f) for f in freqs] + [math.cos(value * f) for f in freqs]
        rows.append(row + [0.0] * (dim % 2))
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("dim", [1, 2, 7, 16])
def test_timestep_embedding_formula(dim):
    t = torch.tensor([0.0, 1.0, 2.5, 17.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(timestep_embedding(t, dim), _direct_timestep_embedding(t, dim))
    int_t = torch.tensor([0, 3, 999])
    embedded = timestep_embedding(int_t, dim)
    assert embedded.dtype == torch.float32
    torch.testing.assert_close(embedded, _direct_timestep_embedding(int_t.tolist(), dim).float())


def test_timestep_embedding_is_not_linear_in_t():
    """The seed's bug: sin/cos taken before multiplying by t made the embedding linear in t."""
    t1, t2 = torch.tensor([3.0]), torch.tensor([5.0])
    e = lambda t: timestep_embedding(t, 32)  # noqa: E731
    assert not torch.allclose(e(t1 + t2), e(t1) + e(t2), atol=1e-2)
    assert not torch.allclose(e(2 * t1), 2 * e(t1), atol=1e-2)
    # Every row is a point on a product of circles: sin^2 + cos^2 = 1 per frequency.
    emb = e(torch.arange(0.0, 1000.0, 37.0))
    torch.testing.assert_close(emb[:, :16] ** 2 + emb[:, 16:] ** 2, torch.ones(len(emb), 16))


def test_timestep_embedding_scalar_and_errors():
    assert timestep_embedding(torch.tensor(4), 8).shape == (1, 8)
    with pytest.raises(ValueError, match="t must have shape"):
        timestep_embedding(torch.zeros(2, 1), 8)
    with pytest.raises(ValueError, match="dim must be"):
        timestep_embedding(torch.zeros(2), 0)


def test_timestep_embedding_module():
    embed = TimestepEmbedding(16, 24)
    t = torch.tensor([1, 500, 999])
    out = embed(t)
    assert out.shape == (3, 24)
    out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in embed.parameters())
    expected = embed.mlp(timestep_embedding(t, 16))
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="out_dim"):
        TimestepEmbedding(16, 0)


@pytest.mark.parametrize("shape, dim", [((7,), 6), ((3, 4), 8), ((2, 3, 4), 13), ((2, 3, 2, 3), 8)])
def test_sinusoidal_position_embedding(shape, dim):
    emb = sinusoidal_position_embedding(shape, dim, dtype=torch.float64)
    assert emb.shape == (math.prod(shape), dim)
    # Rows in row-major order; each axis's block embeds that axis's coordinate.
    pairs = dim // 2
    sizes = [2 * (pairs // len(shape) + (axis < pairs % len(shape))) for axis in range(len(shape))]
    for row, index in enumerate(torch.cartesian_prod(*[torch.arange(s) for s in shape])
                                .reshape(-1, len(shape)).tolist()):
        blocks = [_direct_timestep_embedding([c], size)[0] for c, size in zip(index, sizes)]
        expected = torch.cat(blocks + [torch.zeros(dim % 2, dtype=torch.float64)])
        torch.testing.assert_close(emb[row], expected)
    assert len(torch.unique(emb, dim=0)) == math.prod(shape)  # every position distinct


def test_sinusoidal_position_embedding_rejects():
    with pytest.raises(ValueError, match="dim must be an int >= 2 \\* N = 8"):
        sinusoidal_position_embedding((2, 2, 2, 2), 6)
    with pytest.raises(ValueError, match="shape"):
        sinusoidal_position_embedding((2, 0), 6)


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("act", ["relu", ("leaky_relu", {"negative_slope": 0.2}), "silu",
                                 ("gelu", {"approximate": "tanh"})])
def test_norm_act_fuses_batch_norm_with_the_same_results(n, act):
    torch.manual_seed(0)
    fused_norm, fused_act = layers.get_norm_act("batch", act, n, 3)
    norm, activation = layers.get_norm("batch", n, 3), layers.get_act(act)
    assert isinstance(fused_act, torch.nn.Identity) and fused_norm.activation != "none"
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    fused_norm.load_state_dict(norm.state_dict())  # same parameter and buffer names
    x = torch.randn(2, 3, *[5] * n, dtype=torch.float64)
    fused_norm.double(), norm.double()
    torch.testing.assert_close(fused_act(fused_norm(x)), activation(norm(x)))
    torch.testing.assert_close(fused_norm.running_var, norm.running_var)


@pytest.mark.parametrize("norm, act", [("group", "relu"), ("batch", "prelu"), ("batch", "none"),
                                       ("batch", ("relu", {"inplace": True}))])
def test_norm_act_keeps_unfusable_pairs_apart(norm, act):
    fused_norm, fused_act = layers.get_norm_act(norm, act, 3, 4)
    separate_norm, separate_act = layers.get_norm(norm, 3, 4), layers.get_act(act)
    fusable = norm == "batch" and act not in ("prelu", "none")
    assert (type(fused_act) is torch.nn.Identity) == (fusable or act == "none")
    if not fusable:
        assert type(fused_norm) is type(separate_norm) and type(fused_act) is type(separate_act)
