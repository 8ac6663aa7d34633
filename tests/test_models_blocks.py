"""ndops.models.blocks: ConvNormAct and ConvBlock at N = 1..4."""
import time

import pytest
import torch
from torch import nn

from ndops.models.blocks import ConvBlock, ConvNormAct

DIMS = (1, 2, 3, 4)
ODD_SIZES = {1: (13,), 2: (13, 9), 3: (7, 9, 5), 4: (5, 7, 5, 6)}


def _check_grads(module):
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


# (kwargs, input spatial size -> output spatial size as a function of it)
SHAPE_CASES = [
    (dict(), lambda s: s),
    (dict(num_convs=1), lambda s: s),
    (dict(num_convs=3, kernel_size=5), lambda s: s),
    (dict(kernel_size=4), lambda s: s),                         # even kernel, "same" at stride 1
    (dict(stride=2), lambda s: (s + 1) // 2),
    (dict(stride=2, residual=True), lambda s: (s + 1) // 2),
    (dict(residual=True), lambda s: s),
    (dict(padding="valid"), lambda s: s - 4),
    (dict(padding="valid", residual=True, num_convs=1), lambda s: s - 2),
    (dict(norm="group", act="silu", dropout=0.1), lambda s: s),
    (dict(norm=("group", {"num_groups": 2}), act=("leaky_relu", {"negative_slope": 0.1})),
     lambda s: s),
    (dict(norm="instance", act="gelu"), lambda s: s),
    (dict(norm="layer", act="mish"), lambda s: s),
    (dict(norm=None, act=None), lambda s: s),
    (dict(emb_channels=5, residual=True, norm="group"), lambda s: s),
    (dict(attention="cbam"), lambda s: s),
    (dict(attention=("self", {"num_heads": 2}), residual=True), lambda s: s),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("n", DIMS)
@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
def test_conv_block_shapes_and_grads(n, case):
    kwargs, out_size = SHAPE_CASES[case]
    spatial = ODD_SIZES[n]
    block = ConvBlock(n, 3, 4, **kwargs)
    x = torch.randn(2, 3, *spatial, requires_grad=True)
    emb = torch.randn(2, 5) if "emb_channels" in kwargs else None
    y = block(x, emb)
    assert y.shape == (2, 4) + tuple(out_size(s) for s in spatial)
    y.square().mean().backward()
    _check_grads(block)
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("n", DIMS)
def test_conv_block_size_one_input(n):
    block = ConvBlock(n, 2, 4, norm="group", residual=True, emb_channels=3, attention="self")
    assert block(torch.randn(2, 2, *([1] * n)), torch.randn(2, 3)).shape == (2, 4) + (1,) * n


def test_residual_shortcut_kinds():
    assert isinstance(ConvBlock(2, 4, 4, residual=True).shortcut, nn.Identity)
    assert isinstance(ConvBlock(2, 4, 6, residual=True).shortcut, nn.Conv2d)
    strided = ConvBlock(4, 4, 4, residual=True, stride=2).shortcut
    assert strided.kernel_size == (1,) * 4 and strided.stride == (2,) * 4
    assert ConvBlock(2, 4, 4).shortcut is None


def test_residual_identity_is_added_before_last_activation():
    """With every conv weight zero, a residual block returns act(norm(0) + x) = relu(x)."""
    block = ConvBlock(3, 2, 2, residual=True, norm=None)
    for parameter in block.parameters():
        nn.init.zeros_(parameter)
    x = torch.randn(2, 2, 3, 4, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_valid_residual_is_center_cropped():
    block = ConvBlock(2, 2, 2, residual=True, norm=None, act=None, padding="valid")
    for parameter in block.parameters():
        nn.init.zeros_(parameter)
    x = torch.randn(1, 2, 9, 8)
    torch.testing.assert_close(block(x), x[:, :, 2:7, 2:6])


def test_valid_blocks_reproduce_the_2015_unet_sizes():
    block = ConvBlock(2, 1, 2, padding="valid", norm=None)
    assert block(torch.randn(1, 1, 572, 572)).shape == (1, 2, 568, 568)


@pytest.mark.parametrize("norm, has_bias", [("batch", False), ("instance", False),
                                            ("group", True), (None, True)])
def test_conv_bias_dropped_before_mean_cancelling_norms(norm, has_bias):
    unit = ConvNormAct(2, 3, 4, norm=norm)
    assert (unit.conv.bias is not None) == has_bias
    assert ConvNormAct(2, 3, 4, norm="batch", bias=True).conv.bias is not None


@pytest.mark.parametrize("n", (2, 4))
def test_embedding_scale_shift_formula(n):
    block = ConvBlock(n, 3, 4, num_convs=1, norm="group", act="silu", emb_channels=6)
    x, emb = torch.randn(2, 3, *([4] * n)), torch.randn(2, 6)
    unit = block.units[0]
    scale, shift = block.emb_proj(emb).chunk(2, dim=1)
    shape = (2, 4) + (1,) * n
    expected = unit.act(unit.norm(unit.conv(x)) * (1 + scale.reshape(shape)) + shift.reshape(shape))
    torch.testing.assert_close(block(x, emb), expected)
    # The embedding changes the output, per sample.
    other = block(x, emb.flip(0))
    assert not torch.allclose(other, block(x, emb))


def test_embedding_must_match_construction():
    with pytest.raises(ValueError, match="emb must be given"):
        ConvBlock(2, 2, 2, emb_channels=4)(torch.randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match="emb must be given"):
        ConvBlock(2, 2, 2)(torch.randn(1, 2, 4, 4), torch.randn(1, 4))


def test_stride_applies_to_first_conv_only():
    block = ConvBlock(3, 2, 2, num_convs=3, stride=2)
    assert [u.conv.stride for u in block.units] == [(2, 2, 2), (1, 1, 1), (1, 1, 1)]


def test_dropout_placement():
    block = ConvBlock(2, 2, 2, dropout=0.5)
    assert all(isinstance(u.dropout, nn.Dropout) for u in block.units)
    block.eval()
    x = torch.randn(1, 2, 5, 5)
    assert torch.equal(block(x), block(x))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_convs=0), "num_convs"),
    (dict(padding="full"), "padding"),
    (dict(norm="batchnorm"), "unknown norm"),
    (dict(act="relu7"), "unknown act"),
    (dict(attention="transformer"), "unknown attention"),
    (dict(attention=("self", {"num_heads": 3})), "num_heads=3 must divide channels=4"),
    (dict(emb_channels=0), "emb_channels"),
    (dict(dropout=2.0), "dropout"),
    (dict(kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(kernel_size=4, stride=2), "even kernel_size"),
    (dict(stride=(2, 2, 2)), "stride"),
])
def test_conv_block_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvBlock(2, 3, 4, **kwargs)


@pytest.mark.slow
def test_conv_block_compiles():
    """torch.compile smoke test: the compiled block gives the eager result."""
    torch._dynamo.reset()
    block = ConvBlock(2, 3, 4, residual=True, emb_channels=5, norm="group", attention="cbam")
    x, emb = torch.randn(2, 3, 9, 7), torch.randn(2, 5)
    start = time.perf_counter()
    compiled = torch.compile(block)
    torch.testing.assert_close(compiled(x, emb), block(x, emb), rtol=1e-4, atol=1e-5)
    assert time.perf_counter() - start < 120
