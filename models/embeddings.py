"""Sinusoidal embeddings: of diffusion timesteps (``timestep_embedding``, ``TimestepEmbedding``)
and of positions on an N-d grid (``sinusoidal_position_embedding``)."""
import math

import torch
from torch import nn

from .layers import get_act

__all__ = ["timestep_embedding", "TimestepEmbedding", "sinusoidal_position_embedding"]


def _frequencies(count, max_period, device, dtype):
    """``count`` geometric frequencies from 1 down to (almost) 1 / max_period:
    ``f_j = max_period ** (-j / count)``, j = 0 .. count-1 (Transformer / DDPM)."""
    exponents = torch.arange(count, device=device, dtype=dtype) / count
    return torch.exp(-math.log(max_period) * exponents)


def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal embedding of timesteps: ``[sin(t * f_0), ..., sin(t * f_{h-1}),
    cos(t * f_0), ..., cos(t * f_{h-1})]`` with h = dim // 2 and
    ``f_j = max_period ** (-j / h)``; an odd ``dim`` gets a final zero column.

    The sines and cosines are taken of ``t * f`` (the seed package took them of ``f`` and then
    multiplied by t, an embedding linear in t). ``t`` is a (B,) float or int tensor (fractional
    timesteps are fine) or a 0-d tensor/number (B = 1); the result is (B, dim), float64 for
    float64 ``t`` and float32 otherwise.

    Example::

        >>> timestep_embedding(torch.tensor([0, 10, 999]), 128).shape
        torch.Size([3, 128])
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"ndops.models.timestep_embedding: dim must be an int >= 1, got {dim!r}")
    t = torch.as_tensor(t)
    if t.dim() > 1:
        raise ValueError(f"ndops.models.timestep_embedding: t must have shape (B,) or be a "
                         f"scalar, got shape {tuple(t.shape)}")
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.reshape(-1).to(dtype)
    half = dim // 2
    angles = t[:, None] * _frequencies(half, max_period, t.device, dtype)[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        embedding = torch.cat([embedding, embedding.new_zeros(len(t), 1)], dim=1)
    return embedding


class TimestepEmbedding(nn.Module):
    """``timestep_embedding(t, dim)`` followed by an MLP Linear(dim, out_dim) -> act ->
    Linear(out_dim, out_dim): (B,) timesteps -> (B, out_dim) conditioning vectors.

    Args:
        dim: size of the sinusoidal embedding.
        out_dim: size of the output (and hidden) layer.
        act: activation spec of the MLP (default "silu").
        max_period: the longest sinusoid period, in timesteps.

    Example::

        >>> embed = TimestepEmbedding(64, 256)
        >>> embed(torch.randint(0, 1000, (8,))).shape
        torch.Size([8, 256])
    """

    def __init__(self, dim, out_dim, act="silu", max_period=10000):
        super().__init__()
        for name, value in (("dim", dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ndops.models.TimestepEmbedding: {name} must be an int >= 1, "
                                 f"got {value!r}")
        self.dim = dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), get_act(act),
                                 nn.Linear(out_dim, out_dim))

    def forward(self, t):
        weight = self.mlp[0].weight
        sinusoid = timestep_embedding(t.to(weight.device), self.dim, self.max_period)
        return self.mlp(sinusoid.to(weight.dtype))


def _axis_sizes(dim, n):
    """How many embedding channels each of the n axes gets: whole sin/cos pairs, as even a
    split as possible (earlier axes get the extra pairs); an odd channel left over is zero."""
    pairs = dim // 2
    return [2 * (pairs // n + (1 if axis < pairs % n else 0)) for axis in range(n)]


def sinusoidal_position_embedding(shape, dim, max_period=10000, device=None,
                                  dtype=torch.float32):
    """Fixed sinusoidal embedding of the points of an N-d grid: (prod(shape), dim).

    The ``dim`` channels are split across the N axes (whole sin/cos pairs, as evenly as
    possible; an odd last channel is zero); axis i's block is ``timestep_embedding`` of the
    integer coordinate along axis i. Rows follow the row-major order of ``shape``, the order of
    ``x.flatten(2)`` for x of shape (B, C, *shape). Needs ``dim >= 2 * N`` so that every axis is
    encoded.

    Example::

        >>> sinusoidal_position_embedding((4, 5, 6, 7), 32).shape
        torch.Size([840, 32])
    """
    shape = tuple(shape)
    n = len(shape)
    if n < 1 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"ndops.models.sinusoidal_position_embedding: shape must be a "
                         f"non-empty tuple of ints >= 1, got {shape!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 * n:
        raise ValueError(f"ndops.models.sinusoidal_position_embedding: dim must be an int >= "
                         f"2 * N = {2 * n} (a sin/cos pair per axis of the {n}-d grid), got "
                         f"{dim!r}")
    coordinates = torch.meshgrid(
        *[torch.arange(size, device=device, dtype=torch.float64) for size in shape],
        indexing="ij")
    blocks = [timestep_embedding(c.reshape(-1), size, max_period)
              for c, size in zip(coordinates, _axis_sizes(dim, n))]
    embedding = torch.cat(blocks, dim=1)
    if dim % 2:
        embedding = torch.cat([embedding, embedding.new_zeros(len(embedding), 1)], dim=1)
    return embedding.to(dtype)
