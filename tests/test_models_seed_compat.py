"""Seed-compatible adapters: the seed's argument names build ndops' networks, bugs fixed."""
import pytest
import torch
from torch import nn

from ndops.models.attention import CBAM, AttentionGate, ChannelAttention, SelfAttention
from ndops.models.config import ConfigurableModel
from ndops.models.diffusion import GaussianDiffusion
from ndops.models.resnet import ResNet, ResNetDenoiser
from ndops.models.seed_compat import (AttentionArgs, AttentionOptions, DiffusionResNetModel,
                                      DiffusionUNETModel, GeneralResNetModel, GeneralUNETModel,
                                      ResNetArgs, ResNetPresets, activation_spec,
                                      attention_spec)
from ndops.models.unet import UNet

CBAM_ARGS = AttentionArgs(attn_order=[AttentionOptions.CHANNEL, AttentionOptions.SPATIAL],
                          channel_ratio=2)
QKV_ARGS = {"attn_order": [AttentionOptions.QKV], "qkv_heads": 2, "use_pos": True,
            "pos_max_len": 4096}


@pytest.mark.parametrize("args, spec", [
    (None, None),
    (AttentionArgs([AttentionOptions.CHANNEL]), ("channel", {"reduction": 8})),
    ({"attn_order": ["SPATIAL"]}, "spatial"),
    (CBAM_ARGS, ("cbam", {"reduction": 2})),
    (QKV_ARGS, ("self", {"num_heads": 2, "downsample": "auto",
                         "pos_embedding": "sinusoidal"})),
    ("cbam", "cbam"),
])
def test_attention_spec(args, spec):
    assert attention_spec(args) == spec


def test_attention_args_errors_and_fields():
    args = AttentionArgs(["qkv"], qkv_heads=4)
    assert args.attn_order == ["qkv"] and args.qkv_heads == 4 and args["use_pos"] is False
    with pytest.raises(ValueError, match="attn_order"):
        AttentionArgs(["transformer"])
    with pytest.raises(ValueError, match="no ndops equivalent"):
        attention_spec(AttentionArgs([AttentionOptions.SPATIAL, AttentionOptions.CHANNEL]))
    with pytest.raises(ValueError, match="bad attention args"):
        attention_spec({"attn_order": ["channel"], "heads": 2})
    assert AttentionOptions.QKV == "qkv" and ResNetPresets.RESNET18 == "resnet18"


def test_activation_spec():
    assert activation_spec(None) == "relu"
    assert activation_spec(nn.LeakyReLU(0.2, inplace=True)) == ("leaky_relu",
                                                                {"negative_slope": 0.2})
    assert activation_spec(nn.SiLU()) == "silu" and activation_spec("gelu") == "gelu"
    with pytest.raises(ValueError, match="conv_act_fn Hardswish"):
        activation_spec(nn.Hardswish())


@pytest.mark.parametrize("n, size", [(2, (10, 7)), (4, (4, 3, 5, 2))])
def test_general_unet_readme_example(n, size):
    # The seed README's example 3 (QKV up-attention + CBAM residual blocks), any N, odd sizes.
    model = GeneralUNETModel(name="sample_model", in_channels=1, channel_list=[4, 8, 12],
                             out_layer=nn.Sigmoid(), data_dims=n, up_drop_perc=0.5,
                             up_attn_args=QKV_ARGS, conv_act_fn=nn.LeakyReLU(0.2, inplace=True),
                             conv_attn_args=CBAM_ARGS, conv_residual=True)
    assert isinstance(model, UNet) and model.model is model and model.model_name == "sample_model"
    assert isinstance(model.encoder[0][0].attention, CBAM)
    assert isinstance(model.encoder[2][0].attention, SelfAttention)  # bottleneck
    assert sorted(model.gates) == ["0", "1"]
    assert all(isinstance(g, AttentionGate) for g in model.gates.values())
    out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 4, *size) and 0 <= out.min() and out.max() <= 1
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_general_unet_mnist_classifier_example():
    # The seed README's example 1: a pooling out_layer turns the UNet into a classifier.
    class PoolHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(6, 10, 1)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    model = GeneralUNETModel("v2", in_channels=1, channel_list=[6, 12, 16], out_layer=PoolHead(),
                             data_dims=2, up_attn_args={"attn_order": [AttentionOptions.SPATIAL]})
    logits = model(torch.randn(3, 1, 9, 9))
    loss = nn.CrossEntropyLoss()(logits, torch.tensor([1, 2, 3]))
    loss.backward()
    assert logits.shape == (3, 10) and model.learning_rate == 0.002


def test_general_unet_save_load(tmp_path):
    model = GeneralUNETModel("saved", 2, [4, 6], data_dims=3, conv_attn_args=CBAM_ARGS,
                             up_attn_args=AttentionArgs(["spatial"]), conv_act_fn="silu",
                             out_channels=3).eval()
    model.save(tmp_path)
    loaded = ConfigurableModel.load(tmp_path).eval()
    assert type(loaded) is GeneralUNETModel and loaded.model_name == "saved"
    x = torch.randn(1, 2, 5, 4, 6)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(TypeError, match="conv_act_fn'] is a ReLU"):
        GeneralUNETModel("modules", 1, [4], conv_act_fn=nn.ReLU()).save(tmp_path / "x")


TINY_RESNET = ResNetArgs([[4, 4, 4], [4, 8, 8]], [(3, 3)] * 2, [(1, 1)] * 2, [2, 1])


@pytest.mark.parametrize("n, layout", [
    (1, dict(preset=ResNetPresets.RESNET18)), (2, dict(preset="resnet10")),
    (3, dict(custom_resnet_args=TINY_RESNET)), (4, dict(custom_resnet_args=TINY_RESNET))])
def test_general_resnet(n, layout):
    # Full-width presets at N <= 2; the same blocks at tiny widths (custom args) at N = 3, 4.
    model = GeneralResNetModel("sample_model", 1, preset_out_classes=5, data_dims=n,
                               conv_attn_args=CBAM_ARGS, conv_residual=True, **layout)
    assert isinstance(model, ResNet) and model.num_classes == 5
    assert isinstance(model.stages[0][0].attention, CBAM)
    out = model(torch.randn(2, 1, *(5,) * n))
    assert out.shape == (2, 5)
    assert not torch.allclose(out.sum(1), torch.ones(2))  # logits, not a softmax


def test_resnet18_count_matches_torchvision_through_adapter():
    with torch.device("meta"):
        model = GeneralResNetModel("r", 3, preset="resnet18", preset_out_classes=1000)
    assert model.param_count == 11_689_512


@pytest.mark.parametrize("custom, block, widths", [
    (ResNetArgs([[8, 8, 8], [8, 16, 16]], [(3, 3)] * 2, [(1, 1)] * 2, [2, 1]), "basic", [8, 16]),
    (ResNetArgs([[4, 4, 4, 16], [16, 8, 8, 32]], [(1, 3, 1)] * 2, [(0, 1, 0)] * 2, [1, 2]),
     "bottleneck", [4, 8]),
])
def test_general_resnet_custom_args(custom, block, widths):
    model = GeneralResNetModel("custom", 2, custom_resnet_args=custom, data_dims=2,
                               out_layer=nn.Linear(model_channels(block, widths), 3))
    assert [len(s) for s in model.stages] == list(custom.set_list)
    assert model.num_classes is None and model.out_features == model_channels(block, widths)
    assert model(torch.randn(2, 2, 16, 16)).shape == (2, 3)


def model_channels(block, widths):
    return widths[-1] * (4 if block == "bottleneck" else 1)


def test_general_resnet_in_layer_replaces_stem_and_errors():
    stem = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU())
    model = GeneralResNetModel("s", 1, preset="resnet10", preset_out_classes=2, in_layer=stem)
    assert model.stem is stem and model(torch.randn(2, 1, 8, 8)).shape == (2, 2)
    with pytest.raises(ValueError, match="exactly one of preset"):
        GeneralResNetModel("s", 1)
    with pytest.raises(ValueError, match="preset_out_classes"):
        GeneralResNetModel("s", 1, preset="resnet18")
    with pytest.raises(ValueError, match="kernel_list"):
        GeneralResNetModel("s", 1, custom_resnet_args=ResNetArgs([[4, 4, 4]], [(5, 5)],
                                                                 [(2, 2)], [1]))
    with pytest.raises(ValueError, match="channel_list must hold"):
        GeneralResNetModel("s", 1, custom_resnet_args={
            "channel_list": [[4, 4, 4, 4]], "kernel_list": [(1, 3, 1)],
            "padding_list": [(0, 1, 0)], "set_list": [1]})


@pytest.mark.parametrize("n", [1, 2, 4])
def test_diffusion_unet(n, tmp_path):
    model = DiffusionUNETModel("diff", in_channels=2, channel_list=[4, 8], data_dims=n,
                               conv_residual=True, time_steps=30, time_embed_count=16)
    assert isinstance(model, GaussianDiffusion) and isinstance(model.model, UNet)
    assert model.num_timesteps == 30 and model.loss_type == "l1" and model.schedule == "linear"
    assert model.model.time_conditioning and model.model.out_channels == 2
    x0 = torch.rand(2, 2, *(4,) * n) * 2 - 1
    x_t, noise = model.forward_diffusion_sample(x0, torch.tensor([0, 29]))
    assert x_t.shape == noise.shape == x0.shape
    loss = model.loss(x0)
    loss.backward()
    samples = model.sample((1, 2, *(4,) * n), sampler="ddim", steps=3)
    assert samples.shape == (1, 2, *(4,) * n) and torch.isfinite(samples).all()
    if n == 2:
        model.save(tmp_path)
        loaded = ConfigurableModel.load(tmp_path)
        assert type(loaded) is DiffusionUNETModel
        for a, b in zip(loaded.parameters(), model.parameters()):
            torch.testing.assert_close(a, b)


def test_diffusion_unet_with_out_layer():
    # The seed's CIFAR example mapped channel_list[0] back to the image channels itself.
    model = DiffusionUNETModel("cifar", 3, [4, 8], out_layer=nn.Conv2d(4, 3, 1), time_steps=25)
    assert model.model.out_channels is None
    assert model.loss(torch.randn(2, 3, 6, 6)).ndim == 0


@pytest.mark.parametrize("kwargs, blocks, channels", [
    (dict(preset="resnet10"), 4, 64),
    (dict(custom_resnet_args=ResNetArgs([[8, 8, 8], [8, 8, 8]], [(3, 3)] * 2, [(1, 1)] * 2,
                                        [1, 2])), 3, 8),
])
def test_diffusion_resnet(kwargs, blocks, channels):
    model = DiffusionResNetModel("dres", 1, data_dims=3, conv_act_fn=nn.SiLU(), time_steps=25,
                                 time_embed_count=8, **kwargs)
    assert isinstance(model.model, ResNetDenoiser) and len(model.model.blocks) == blocks
    assert model.model.input_conv.out_channels == channels
    x0 = torch.randn(2, 1, 3, 4, 3)
    model.loss(x0).backward()
    assert model.sample((1, 1, 3, 4, 3), steps=2).shape == (1, 1, 3, 4, 3)


def test_diffusion_resnet_rejects_layers():
    with pytest.raises(ValueError, match="in_layer / out_layer are not supported"):
        DiffusionResNetModel("d", 1, preset="resnet10", out_layer=nn.Identity())


def test_channel_attention_reduction_from_channel_ratio():
    model = GeneralResNetModel("c", 1, preset="resnet10", preset_out_classes=2,
                               conv_attn_args=AttentionArgs(["channel"], channel_ratio=4))
    attention = model.stages[0][0].attention
    assert isinstance(attention, ChannelAttention)
    assert attention(torch.randn(2, 64, 3, 3)).shape == (2, 64, 3, 3)
