"""``ndops.models``: networks for any number of spatial dims, built on ndops' N-d ops.

    from ndops.models import UNet, ResNet, GaussianDiffusion
    net = UNet(4, in_channels=1, out_channels=2, channels=(8, 16, 32))   # 4 spatial dims
    clf = ResNet(3, in_channels=1, num_classes=10, preset="resnet18")

What lives where:
    layers      factories (conv, norm, act, pool, ...) returning torch modules for N <= 3
                and ndops.nn modules above; norm/act given as "name" or ("name", {kwargs})
    blocks      ConvNormAct, ConvBlock (convs, residual, time/condition scale-shift)
    attention   ChannelAttention, SpatialAttention, CBAM, AttentionGate, SelfAttention
    embeddings  timestep and N-d positional sinusoidal embeddings
    unet        UNet (any channel list, any input size, 'valid' 2015 mode, conditioning)
    resnet      ResNet (presets resnet10-152, custom), ResNetDenoiser (for diffusion)
    diffusion   schedules, GaussianDiffusion (epsilon/sample/v, DDPM and DDIM sampling)
    config      ConfigurableModel: .config, .save(dir), .load(dir)
    seed_compat the seed package's names (GeneralUNETModel, ...) as a migration path
    training    Trainer (checkpoints, resume, AMP, EMA, DDP) and the ndops-train CLI

Installed as the subpackage ``ndops.models`` (never as a top-level ``models``).
"""
from .config import ConfigurableModel
from .blocks import ConvNormAct, ConvBlock
from .attention import (ChannelAttention, SpatialAttention, CBAM, AttentionGate, SelfAttention,
                        build_attention)
from .embeddings import TimestepEmbedding, timestep_embedding, sinusoidal_position_embedding
from .unet import ResidualDenoiser, UNet
from .resnet import ResNet, ResNetPresets, ResNetDenoiser
from .diffusion import GaussianDiffusion
from .seed_compat import (GeneralUNETModel, DiffusionUNETModel, GeneralResNetModel,
                          DiffusionResNetModel, AttentionOptions, AttentionArgs)

__all__ = ["ConfigurableModel", "ConvNormAct", "ConvBlock", "ChannelAttention", "SpatialAttention",
           "CBAM", "AttentionGate", "SelfAttention", "build_attention", "TimestepEmbedding",
           "timestep_embedding", "sinusoidal_position_embedding", "UNet", "ResidualDenoiser", "ResNet",
           "ResNetPresets", "ResNetDenoiser", "GaussianDiffusion", "GeneralUNETModel",
           "DiffusionUNETModel", "GeneralResNetModel", "DiffusionResNetModel",
           "AttentionOptions", "AttentionArgs"]
