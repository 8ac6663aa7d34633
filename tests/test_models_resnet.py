"""ResNet (presets, custom layouts, attention, features, N = 1..4) and ResNetDenoiser."""
import pytest
import torch
from torch import nn

from ndops.models.attention import CBAM, ChannelAttention, SelfAttention, SpatialAttention
from ndops.models.config import ConfigurableModel
from ndops.models.resnet import (PRESETS, BasicBlock, BottleneckBlock, ResNet, ResNetDenoiser,
                                 ResNetPresets)

TINY = (4, 4, 8, 8)  # widths that keep every preset small at any N


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def check_grads(model):
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("preset, expected", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808)])
def test_param_counts_match_torchvision(preset, expected):
    # torchvision.models.<preset>() in 2-D with 3 input channels and 1000 classes.
    with torch.device("meta"):
        model = ResNet(2, 3, 1000, preset=preset)
    assert n_params(model) == expected


def test_resnet10_count_and_enum_preset():
    with torch.device("meta"):
        a = ResNet(2, 3, 1000, preset="resnet10")
        b = ResNet(2, 3, 1000, preset=ResNetPresets.RESNET10, layers=(1, 1, 1, 1), block="basic")
    # resnet18 minus one basic block (two 3x3 convs + norms) per stage.
    per_stage = sum(2 * (9 * w * w + 2 * w) for w in (64, 128, 256, 512))
    assert n_params(a) == n_params(b) == 11_689_512 - per_stage
    assert ResNetPresets.RESNET50 == "resnet50" and set(PRESETS) == {p.value for p in
                                                                     ResNetPresets}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_at_every_n(n, preset):
    model = ResNet(n, 2, 3, preset=preset, widths=TINY, stem="small" if n == 4 else "standard")
    expansion = 4 if PRESETS[preset][0] == "bottleneck" else 1
    assert model.feature_channels == [w * expansion for w in TINY]
    assert [len(stage) for stage in model.stages] == list(PRESETS[preset][1])
    # Forward: every preset at N = 1, resnet10 at every N (bottleneck blocks at N = 2..4 run
    # in the tests below, at a cost this table of deep models cannot afford).
    if preset == "resnet10" or n == 1:
        size = (5, 4, 3, 3)[n - 1]
        assert model(torch.randn(2, 2, *(size,) * n)).shape == (2, 3)


@pytest.mark.parametrize("n, kwargs, size, feature_sizes", [
    (1, dict(preset="resnet18", widths=TINY), (37,), [(10,), (5,), (3,), (2,)]),
    (2, dict(preset="resnet10", widths=TINY), (33, 20), [(9, 5), (5, 3), (3, 2), (2, 1)]),
    (2, dict(preset=None, layers=(1, 2), block="bottleneck", widths=(3, 5), stem="small"),
     (7, 6), [(7, 6), (4, 3)]),
    (3, dict(preset=None, layers=(2, 1, 1), block="basic", widths=(6, 10, 14),
             strides=(2, 1, 2), stem="small", stem_channels=5), (9, 8, 7),
     [(5, 4, 4), (5, 4, 4), (3, 2, 2)]),
    (4, dict(preset="resnet10", widths=(2, 3, 4, 5)), (13, 17, 9, 11),
     [(4, 5, 3, 3), (2, 3, 2, 2), (1, 2, 1, 1), (1, 1, 1, 1)]),
])
def test_features_and_logits_shapes(n, kwargs, size, feature_sizes):
    model = ResNet(n, 1, 4, **kwargs)
    x = torch.randn(2, 1, *size)
    features = model.features(x)
    assert [tuple(f.shape[2:]) for f in features] == feature_sizes
    assert [f.shape[1] for f in features] == model.feature_channels
    assert model(x).shape == (2, 4)


def test_logits_not_probabilities():
    model = ResNet(2, 1, 5, preset="resnet10", widths=TINY, stem="small").eval()
    out = model(torch.randn(3, 1, 8, 8))
    assert not any(isinstance(m, (nn.Softmax, nn.LogSoftmax)) for m in model.modules())
    assert (out < 0).any() and not torch.allclose(out.sum(1), torch.ones(3))


def test_no_head_returns_pooled_features():
    model = ResNet(3, 1, None, preset="resnet10", widths=TINY, block="bottleneck")
    assert model(torch.randn(2, 1, 8, 8, 8)).shape == (2, model.out_features) == (2, 32)
    assert model.head is None


@pytest.mark.parametrize("n, block", [(1, "basic"), (2, "bottleneck"), (3, "basic"),
                                      (4, "bottleneck")])
def test_gradient_flow(n, block):
    model = ResNet(n, 2, 3, preset=None, layers=(1, 1), block=block, widths=(4, 4),
                   stem="small", attention="cbam", dropout=0.2, norm="group")
    model(torch.randn(2, 2, *(4,) * n)).square().sum().backward()
    check_grads(model)


ATTENTION_KINDS = [("channel", ChannelAttention), ("se", ChannelAttention),
                   ("spatial", SpatialAttention), ("cbam", CBAM),
                   (("self", {"num_heads": 2}), SelfAttention)]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("spec, cls", ATTENTION_KINDS, ids=lambda v: str(v)[:12])
def test_attention_in_every_block(n, spec, cls):
    # The standard stem and stride-2 stages bring the last stage down to size 1.
    model = ResNet(n, 1, 2, preset=None, layers=(1, 2), block="basic", widths=(8, 8),
                   attention=spec)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 and all(isinstance(b.attention, cls) for b in blocks)
    assert model(torch.randn(2, 1, *(5,) * n)).shape == (2, 2)


def test_attention_per_stage():
    model = ResNet(2, 1, 2, preset=None, layers=(1, 1, 1), block="bottleneck", widths=(4, 4, 8),
                   attention=[None, "spatial", ("channel", {"reduction": 2})])
    kinds = [type(s[0].attention) for s in model.stages]
    assert kinds == [nn.Identity, SpatialAttention, ChannelAttention]
    assert isinstance(model.stages[0][0], BottleneckBlock)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 2)


def test_zero_init_residual_makes_blocks_identity_like():
    model = ResNet(2, 1, 2, preset="resnet10", widths=TINY, zero_init_residual=True)
    assert all(b.last_norm.weight.abs().sum() == 0 for b in model.modules()
               if isinstance(b, BasicBlock))
    block = model.stages[0][0].eval()  # identity shortcut: output = relu(x)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_standard_stem_matches_torchvision_layout():
    model = ResNet(2, 3, 10)
    conv, pool = model.stem[0], model.stem[3]
    assert conv.kernel_size == (7, 7) and conv.stride == (2, 2) and conv.padding == (3, 3)
    assert conv.bias is None and isinstance(pool, nn.MaxPool2d)
    down = model.stages[1][0].shortcut
    assert down[0].kernel_size == (1, 1) and down[0].stride == (2, 2)
    assert isinstance(model.stages[0][0].shortcut, nn.Identity)


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset="resnet19"), "unknown preset"),
    (dict(preset=None, layers=(1, 1)), "give both layers"),
    (dict(block="wide"), "block must be"),
    (dict(widths=(8, 16)), "widths must have one entry per stage"),
    (dict(strides=(1, 2)), "strides must have one entry per stage"),
    (dict(layers=(2, 0, 1, 1)), "layers must be a non-empty list"),
    (dict(stem="tiny"), "stem must be"),
    (dict(norm="batchy"), "unknown norm"),
    (dict(act="relu6"), "unknown act"),
    (dict(attention="cross"), "unknown attention"),
    (dict(attention=["cbam", None]), "list of 4 specs"),
    (dict(attention=("self", {"num_heads": 3})), "num_heads=3 must divide"),
    (dict(num_classes=0), "num_classes"),
    (dict(dropout=1.0), "dropout"),
    (dict(spatial_dims=0), "spatial_dims"),
    (dict(norm="none", zero_init_residual=True), "zero_init_residual"),
])
def test_bad_configs(kwargs, match):
    args = dict(spatial_dims=2, in_channels=1, num_classes=3, widths=TINY)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ResNet(**args)


def test_bad_input_shape():
    model = ResNet(3, 2, 3, preset="resnet10", widths=TINY)
    with pytest.raises(ValueError, match=r"\(B, 2, \*spatial\) with 3 spatial dims"):
        model(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="input must have shape"):
        model.features(torch.randn(1, 3, 8, 8, 8))


def test_save_load_round_trip(tmp_path):
    model = ResNet(4, 1, 3, preset=ResNetPresets.RESNET10, widths=(2, 3, 4, 5), stem="small",
                   attention=["cbam", None, "channel", "spatial"], act=("elu", {"alpha": 0.5}))
    model(torch.randn(2, 1, 3, 3, 3, 3))  # a training-mode step updates the BN statistics
    model.eval()
    model.save(tmp_path)
    loaded = ConfigurableModel.load(tmp_path).eval()
    assert type(loaded) is ResNet and loaded.config["preset"] == "resnet10"
    x = torch.randn(2, 1, 5, 4, 3, 3)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_torch_compile_smoke():
    # fullgraph: dynamo captures the whole forward in one graph (no graph break); the eager
    # backend skips inductor's code generation, which would take most of this file's time
    # budget on a CPU.
    model = ResNet(2, 1, 3, preset=None, layers=(1, 1), block="basic", widths=(4, 4),
                   stem="small", attention="cbam").eval()
    denoiser = ResNetDenoiser(3, 1, 1, channels=4, num_blocks=1, num_classes=2).eval()
    x, v = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4, 4)
    t, y = torch.tensor([3, 7]), torch.tensor([1, -1])
    for net, args in ((model, (x,)), (denoiser, (v, t, y))):
        compiled = torch.compile(net, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(*args), net(*args), rtol=1e-4, atol=1e-5)


# --- ResNetDenoiser -------------------------------------------------------------------------

@pytest.mark.parametrize("n, size, kwargs", [
    (1, (11,), dict(num_blocks=3)),
    (2, (7, 5), dict(num_classes=4, attention="cbam")),
    (3, (5, 4, 3), dict(num_blocks=1, norm="batch", act="relu", time_embed_dim=12)),
    (4, (3, 4, 2, 3), dict(num_classes=3, attention=[None, ("self", {"num_heads": 2})])),
])
def test_denoiser_shapes_and_grads(n, size, kwargs):
    kwargs.setdefault("num_blocks", 2)
    model = ResNetDenoiser(n, 2, 3, channels=8, **kwargs)
    assert (model.spatial_dims, model.in_channels, model.out_channels) == (n, 2, 3)
    assert model.num_classes == kwargs.get("num_classes")
    x = torch.randn(2, 2, *size)
    y = torch.tensor([0, 2]) if model.num_classes else None
    out = model(x, torch.tensor([1, 700]), y)
    assert out.shape == (2, 3, *size)
    out.square().sum().backward()
    check_grads(model)


def test_denoiser_timestep_forms_and_conditioning():
    model = ResNetDenoiser(2, 1, 1, channels=8, num_blocks=2, num_classes=3).eval()
    x = torch.randn(2, 1, 6, 6)
    ints = model(x, torch.tensor([5, 5]))
    torch.testing.assert_close(model(x, torch.tensor([5.0, 5.0])), ints)
    torch.testing.assert_close(model(x, 5), ints)
    torch.testing.assert_close(model(x, torch.tensor(5)), ints)
    assert not torch.allclose(model(x, torch.tensor([5, 500])), ints)
    # y=None is the learned null class; -1 entries are null too (label dropout for CFG).
    torch.testing.assert_close(model(x, 5, torch.tensor([-1, -1])), ints)
    mixed = model(x, 5, torch.tensor([1, -1]))
    torch.testing.assert_close(mixed[1], ints[1])
    assert not torch.allclose(mixed[0], ints[0])


def test_denoiser_errors_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="channels must be an int"):
        ResNetDenoiser(2, 1, 1, channels=0)
    with pytest.raises(ValueError, match="list of 2 specs"):
        ResNetDenoiser(2, 1, 1, channels=8, num_blocks=2, attention=["cbam"])
    model = ResNetDenoiser(3, 1, 2, channels=8, num_blocks=1).eval()
    x = torch.randn(2, 1, 4, 4, 4)
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 2\)"):
        ResNetDenoiser(1, 1, 1, channels=4, num_blocks=1, num_classes=2)(
            torch.randn(2, 1, 5), 3, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="y was given"):
        model(x, 3, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="t must be"):
        model(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="input must have shape"):
        model(torch.randn(2, 1, 4, 4), 3)
    model.save(tmp_path)
    loaded = ResNetDenoiser.load(tmp_path).eval()
    torch.testing.assert_close(loaded(x, torch.tensor([3, 9])), model(x, torch.tensor([3, 9])))
