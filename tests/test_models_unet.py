"""ndops.models.unet.UNet: shape tables at N = 1..5, attention at every level, conditioning,
"same" padding and "valid" (2015) geometry, gradients, save/load, torch.compile, bad configs."""
import pytest
import torch

from ndops.models.config import ConfigurableModel
from ndops.models.unet import UNet

# (kwargs, input shape, expected output shape); kwargs without spatial_dims (taken from the
# input) and with tiny channel counts so each case runs in well under a second.
SHAPE_CASES = [
    # N = 1
    (dict(in_channels=1, out_channels=2, channels=(4, 6, 8)), (2, 1, 17), (2, 2, 17)),
    (dict(in_channels=2, out_channels=1, channels=(3,)), (2, 2, 5), (2, 1, 5)),
    (dict(in_channels=1, out_channels=1, channels=(4, 4, 4, 4), strides=(3, 1, 2),
          up_mode="interpolate"), (2, 1, 7), (2, 1, 7)),
    # N = 2
    (dict(in_channels=3, out_channels=2, channels=(4, 8, 12)), (2, 3, 13, 7), (2, 2, 13, 7)),
    (dict(in_channels=1, out_channels=3, channels=(5, 3, 7), num_res_blocks=(1, 2, 3),
          down_mode="conv"), (2, 1, 9, 10), (2, 3, 9, 10)),
    (dict(in_channels=1, out_channels=1, channels=(4, 6), strides=((2, 3),),
          up_mode="interpolate", pad_mode="replicate", norm=("group", {"num_groups": 2}),
          act=("leaky_relu", {"negative_slope": 0.1})), (2, 1, 5, 5), (2, 1, 5, 5)),
    (dict(in_channels=1, out_channels=2, channels=(4, 8), down_mode="avgpool",
          residual=False, dropout=0.2, kernel_size=(3, 5)), (2, 1, 1, 1), (2, 2, 1, 1)),
    # N = 3
    (dict(in_channels=2, out_channels=2, channels=(4, 6, 10)), (2, 2, 7, 9, 5),
     (2, 2, 7, 9, 5)),
    (dict(in_channels=1, out_channels=1, channels=(4, 4), strides=((1, 2, 2),),
          norm="instance", pad_mode="reflect"), (2, 1, 3, 5, 6), (2, 1, 3, 5, 6)),
    # N = 4: the odd 13x17x9x11 volume of the issue, non-doubling channels
    (dict(in_channels=1, out_channels=2, channels=(2, 3, 2)), (2, 1, 13, 17, 9, 11),
     (2, 2, 13, 17, 9, 11)),
    (dict(in_channels=2, out_channels=1, channels=(3, 4), up_mode="interpolate",
          num_res_blocks=(2, 1), norm="layer", act="gelu"), (2, 2, 3, 4, 5, 2),
     (2, 1, 3, 4, 5, 2)),
]


@pytest.mark.parametrize("kwargs,in_shape,out_shape", SHAPE_CASES)
def test_output_shapes(kwargs, in_shape, out_shape):
    net = UNet(len(in_shape) - 2, **kwargs)
    assert net(torch.randn(in_shape)).shape == out_shape


def test_five_spatial_dims():
    net = UNet(5, 1, 1, channels=(2, 3), norm="group")
    assert net(torch.randn(2, 1, 3, 2, 3, 2, 3)).shape == (2, 1, 3, 2, 3, 2, 3)


def test_attributes():
    net = UNet(3, 2, 5, channels=(4, 8), num_classes=7)
    assert (net.spatial_dims, net.in_channels, net.out_channels, net.num_classes) == (3, 2, 5, 7)
    assert UNet(1, 1, 1, channels=(2,)).num_classes is None


ATTENTION_KINDS = ["channel", "se", "spatial", "cbam", "self", ("self", {"num_heads": 2}),
                   "gate", ("gate", {"inter_channels": 3})]


@pytest.mark.parametrize("n,size", [(1, 4), (2, 4), (3, 4), (4, 2)])
@pytest.mark.parametrize("kind", ATTENTION_KINDS, ids=str)
def test_attention_at_every_level_down_to_size_one(kind, n, size):
    # Strides 2 on `size` = 4 (or 2) bring the bottleneck to spatial size 1.
    channels = (4, 6, 8) if size == 4 else (4, 6)
    gate = (kind if isinstance(kind, str) else kind[0]) == "gate"
    levels = [kind] * len(channels)
    if gate:
        levels[-1] = None  # the bottleneck has no skip to gate
    net = UNet(n, 1, 2, channels=channels, attention_levels=levels)
    x = torch.randn(2, 1, *(size,) * n)
    assert net(x).shape == (2, 2) + (size,) * n
    assert len(net.gates) == (len(channels) - 1 if gate else 0)


@pytest.mark.parametrize("up_mode", ["transpose", "interpolate"])
def test_attention_true_means_self_and_mixed_levels(up_mode):
    net = UNet(2, 1, 1, channels=(4, 8, 8), attention_levels=[False, "gate", True],
               up_mode=up_mode)
    assert list(net.gates) == ["1"]
    assert type(net.encoder[2][0].attention).__name__ == "SelfAttention"
    assert net(torch.randn(2, 1, 6, 10)).shape == (2, 1, 6, 10)


# ------------------------------------------------------------------------ "same" and "valid"
def test_same_mode_pads_to_multiple_and_crops_back():
    net = UNet(2, 1, 1, channels=(4, 6, 8), strides=((2, 1), (2, 3)), norm="group").eval()
    assert net.size_multiple == (4, 3)
    assert net.valid_input_size((13, 7)) == (16, 9)
    assert net.output_size((13, 7)) == (13, 7)
    x = torch.randn(2, 1, 13, 7)
    # The padding is split evenly (1 before, 2 after along dim 0; 1 and 1 along dim 1).
    padded = torch.nn.functional.pad(x, (1, 1, 1, 2))
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(padded)[:, :, 1:14, 1:8])


def test_valid_mode_reproduces_2015_geometry():
    # The paper's five levels (64 ... 1024 channels) with tiny channels: 572 -> 388.
    net = UNet(2, 1, 2, channels=(2, 2, 3, 3, 4), mode="valid", residual=False)
    assert net.output_size((572, 572)) == (388, 388)
    assert net(torch.randn(1, 1, 572, 572)).shape == (1, 2, 388, 388)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("n,size,out", [(1, 44, 4), (3, 44, 4)])
def test_valid_mode_other_dims(n, size, out, residual):
    net = UNet(n, 1, 1, channels=(2, 3, 4), mode="valid", residual=residual,
               attention_levels=("gate", "cbam", "self"), up_mode="interpolate")
    # 44 -4-> 40 /2 -> 20 -4-> 16 /2 -> 8 -4-> 4, x2 -> 8 -4-> 4, x2 -> 8 -4-> 4
    assert net.output_size((size,) * n) == (out,) * n
    assert net(torch.randn(2, 1, *(size,) * n)).shape == (2, 1) + (out,) * n


def test_valid_mode_error_names_nearest_sizes():
    net = UNet(2, 1, 1, channels=(2, 2, 3, 3, 4), mode="valid")
    assert net.valid_input_size((570, 572)) == (572, 572)
    with pytest.raises(ValueError, match=r"570 along spatial dim 0.*sizes are 556 and 572"):
        net(torch.randn(1, 1, 570, 572))
    with pytest.raises(ValueError, match=r"nearest valid size is 188\b"):
        net.output_size((572, 30))


# ------------------------------------------------------------------------------ conditioning
def test_time_conditioning_requires_t():
    net = UNet(2, 1, 1, channels=(4, 8), time_conditioning=True)
    x = torch.randn(2, 1, 6, 5)
    assert net(x, torch.tensor([1, 500])).shape == x.shape
    assert net(x, torch.tensor([0.5, 3.25])).shape == x.shape  # float timesteps
    assert net(x, 7).shape == x.shape  # a scalar is broadcast over the batch
    with pytest.raises(ValueError, match="time_conditioning=True"):
        net(x)
    with pytest.raises(ValueError, match="t must have shape"):
        net(x, torch.zeros(3))
    with pytest.raises(ValueError, match="time_conditioning=False"):
        UNet(2, 1, 1, channels=(4, 8))(x, torch.zeros(2))


def test_class_conditioning_with_null_class():
    torch.manual_seed(1)
    net = UNet(3, 1, 1, channels=(4, 6), time_conditioning=True, num_classes=3,
               time_embed_dim=12).eval()
    x, t = torch.randn(2, 1, 4, 5, 3), torch.tensor([10, 20])
    with torch.no_grad():
        unconditional = net(x, t)
        torch.testing.assert_close(net(x, t, None), unconditional)
        torch.testing.assert_close(net(x, t, torch.tensor([-1, -1])), unconditional)
        conditional = net(x, t, torch.tensor([0, 2]))
        mixed = net(x, t, torch.tensor([0, -1]))
    assert not torch.allclose(conditional, unconditional)
    torch.testing.assert_close(mixed[0], conditional[0])
    torch.testing.assert_close(mixed[1], unconditional[1])
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 3\)"):
        net(x, t, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="y must be an int tensor"):
        net(x, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_classes=None"):
        UNet(3, 1, 1, channels=(4, 6))(x, y=torch.tensor([0, 1]))


def test_class_conditioning_without_time():
    net = UNet(1, 2, 2, channels=(4, 6), num_classes=5)
    x = torch.randn(2, 2, 9)
    assert net(x, y=torch.tensor([1, 4])).shape == x.shape
    assert net(x).shape == x.shape


# -------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_parameter_gets_a_finite_gradient(n):
    size = (5, 6, 3, 4)[:n]
    net = UNet(n, 2, 1, channels=(3, 4, 6), num_res_blocks=(1, 2, 1),
               attention_levels=("gate", "cbam", ("self", {"num_heads": 2})),
               time_conditioning=True, num_classes=2, norm="group")
    x = torch.randn(2, 2, *size, requires_grad=True)
    net(x, torch.tensor([3, 70]), torch.tensor([1, -1])).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    net = UNet(2, 1, 2, channels=(4, 6, 8), strides=(2, (1, 2)), num_res_blocks=(1, 2, 1),
               attention_levels=(("gate", {"inter_channels": 2}), None,
                                 ("self", {"num_heads": 2})),
               norm=("group", {"num_groups": 2}), act=("leaky_relu", {"negative_slope": 0.2}),
               time_conditioning=True, num_classes=4, up_mode="interpolate")
    x, t, y = torch.randn(2, 1, 7, 6), torch.tensor([5, 9]), torch.tensor([3, -1])
    net.save(tmp_path)
    for loader in (UNet, ConfigurableModel):
        loaded = loader.load(tmp_path)
        assert type(loaded) is UNet and loaded.config == net.config
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(x, t, y), net.eval()(x, t, y),
                                       rtol=0, atol=0)


# --------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_torch_compile_full_graph_matches_eager():
    # fullgraph=True: no graph break anywhere (padding, crop, conditioning, gate, attention).
    # The "aot_eager" backend traces forward and backward like inductor does but skips its
    # C++ code generation, which takes 35-60 s for this net on a 2-core CPU.
    net = UNet(2, 1, 2, channels=(4, 8), attention_levels=("gate", "self"),
               time_conditioning=True, num_classes=3).eval()
    x, t, y = torch.randn(2, 1, 7, 9), torch.tensor([1, 2]), torch.tensor([0, -1])
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, y), net(x, t, y))


# ------------------------------------------------------------------------------ bad configs
BAD_CONFIGS = [
    (dict(channels=()), "channels"),
    (dict(channels=(4, 0)), "channels"),
    (dict(channels=(4, 8, 16), strides=(2,)), "strides"),
    (dict(channels=(4, 8), strides=((2, 2, 2),)), r"strides\[0\]"),
    (dict(channels=(4, 8), strides=(0,)), r"strides\[0\]"),
    (dict(channels=(4, 8), num_res_blocks=(1, 1, 1)), "num_res_blocks"),
    (dict(channels=(4, 8), num_res_blocks=0), "num_res_blocks"),
    (dict(norm="bogus"), "norm.*unknown norm 'bogus'"),
    (dict(norm=("group", {"num_groups": 3})), "norm.*divide"),
    (dict(act="bogus"), "act.*unknown act 'bogus'"),
    (dict(channels=(4, 6), attention_levels=(None, ("self", {"num_heads": 4}))),
     r"attention_levels\[1\].*num_heads=4 must divide channels=6"),
    (dict(channels=(4, 6), attention_levels=("bogus", None)),
     r"attention_levels\[0\].*unknown attention 'bogus'"),
    (dict(channels=(4, 6), attention_levels=(("gate", {"bogus": 1}), None)),
     r"attention_levels\[0\]"),
    (dict(channels=(4, 6), attention_levels=(None, "gate")), "no skip connection"),
    (dict(channels=(4, 6), attention_levels=("self",)), "attention_levels"),
    (dict(up_mode="pixelshuffle"), "up_mode"),
    (dict(down_mode="stride"), "down_mode"),
    (dict(mode="full"), "mode"),
    (dict(pad_mode="wrap"), "pad_mode"),
    (dict(dropout=1.5), "dropout"),
    (dict(num_classes=0), "num_classes"),
    (dict(time_embed_dim=-1), "time_embed_dim"),
    (dict(in_channels=0), "in_channels"),
    (dict(spatial_dims=0), "spatial_dims"),
]


@pytest.mark.parametrize("kwargs,match", BAD_CONFIGS)
def test_bad_configs_raise_at_construction(kwargs, match):
    args = dict(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        UNet(**args)


def test_bad_inputs_raise():
    net = UNet(2, 2, 1, channels=(4, 8))
    with pytest.raises(ValueError, match="2 spatial dims"):
        net(torch.randn(2, 2, 8))
    with pytest.raises(ValueError, match="in_channels=2"):
        net(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="positive spatial sizes"):
        net.valid_input_size((8,))


def test_size_multiple_is_product_of_strides():
    net = UNet(3, 1, 1, channels=(2, 2, 2, 2), strides=(2, (1, 3, 2), 3))
    assert net.size_multiple == (6, 18, 12)
    assert net.valid_input_size((6, 19, 1)) == (6, 36, 12)
