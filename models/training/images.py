"""Sample grids as PNG files, for data with any number of spatial dims (no plotting library).

How a sample (C, *spatial) becomes a grid cell:
- N = 1: each channel is drawn as a curve (white on black, ``curve_height`` pixels high);
  channels are stacked vertically.
- N = 2: the image itself; C = 3 is shown as RGB, other channel counts as grayscale tiles
  side by side (one per channel).
- N >= 3: reduced to its first two spatial dims over the other N - 2 dims by ``projection``:
  ``"slice"`` (the middle index of each trailing dim), ``"max"`` (maximum intensity
  projection) or ``"mean"``; then drawn as in 2-D.
Values are mapped from ``value_range`` to [0, 255] (clipped).
"""
import struct
import zlib

import numpy as np
import torch

from .checkpoint import atomic_write

_WHERE = "ndops.models.training.save_sample_grid"
PROJECTIONS = ("slice", "max", "mean")


def png_bytes(image):
    """PNG file content of a uint8 array (H, W) (grayscale) or (H, W, 3) (RGB)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    color_type = 2 if image.ndim == 3 else 0

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = image.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def _reduce_to_2d(sample, projection):
    """(C, *spatial) with N >= 3 -> (C, H, W) over the first two spatial dims."""
    extra = tuple(range(3, sample.dim()))
    if projection == "max":
        return sample.amax(dim=extra)
    if projection == "mean":
        return sample.mean(dim=extra)
    index = (slice(None),) * 3 + tuple(size // 2 for size in sample.shape[3:])
    return sample[index]


def _curve(signal, height):
    """A (height, L) image of a 1-D signal in [0, 1], consecutive points joined vertically."""
    length = signal.shape[0]
    rows = np.round((1.0 - signal) * (height - 1)).astype(int)
    image = np.zeros((height, length), np.uint8)
    previous = rows[0]
    for x in range(length):
        low, high = sorted((previous, rows[x]))
        image[low:high + 1, x] = 255
        previous = rows[x]
    return image


def _cell(sample, projection, curve_height):
    """uint8 (h, w) or (h, w, 3) image of one sample with values already in [0, 1]."""
    if sample.dim() == 2:      # (C, L)
        return np.concatenate([_curve(channel.numpy(), curve_height) for channel in sample])
    if sample.dim() > 3:
        sample = _reduce_to_2d(sample, projection)
    pixels = np.round(sample.numpy() * 255).astype(np.uint8)
    if pixels.shape[0] == 3:
        return pixels.transpose(1, 2, 0)
    return np.concatenate(list(pixels), axis=1)


def grid_image(samples, nrow=None, value_range=(-1.0, 1.0), projection="slice", padding=2,
               curve_height=48):
    """A uint8 grid image of ``samples`` (B, C, *spatial), ``nrow`` cells per row (default
    ~sqrt(B)), cells separated by ``padding`` pixels of mid-gray."""
    if not torch.is_tensor(samples) or samples.dim() < 3 or samples.shape[0] == 0:
        raise ValueError(f"{_WHERE}: samples must be a non-empty tensor (B, C, *spatial), got "
                         f"{getattr(samples, 'shape', type(samples).__name__)}")
    if projection not in PROJECTIONS:
        raise ValueError(f"{_WHERE}: projection must be one of {PROJECTIONS}, got "
                         f"{projection!r}")
    low, high = value_range
    if not high > low:
        raise ValueError(f"{_WHERE}: value_range must be (low, high) with high > low, got "
                         f"{value_range!r}")
    scaled = ((samples.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
    cells = [_cell(sample, projection, curve_height) for sample in scaled]
    if any(c.ndim == 3 for c in cells):
        cells = [c if c.ndim == 3 else np.repeat(c[..., None], 3, axis=2) for c in cells]
    nrow = nrow or max(1, int(np.ceil(np.sqrt(len(cells)))))
    ncol_rows = -(-len(cells) // nrow)
    cell_h, cell_w = cells[0].shape[:2]
    shape = (ncol_rows * (cell_h + padding) + padding, nrow * (cell_w + padding) + padding)
    grid = np.full(shape + cells[0].shape[2:], 128, np.uint8)
    for index, cell in enumerate(cells):
        top = padding + (index // nrow) * (cell_h + padding)
        left = padding + (index % nrow) * (cell_w + padding)
        grid[top:top + cell_h, left:left + cell_w] = cell
    return grid


def save_sample_grid(samples, path, nrow=None, value_range=(-1.0, 1.0), projection="slice",
                     padding=2):
    """Writes :func:`grid_image` of ``samples`` (B, C, *spatial) to the PNG file ``path``
    (atomically) and returns the path. See the module docstring for N = 1 and N >= 3."""
    image = grid_image(samples, nrow, value_range, projection, padding)
    data = png_bytes(image)
    atomic_write(path, lambda f: f.write(data))
    return path
