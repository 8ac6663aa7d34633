"""Nearest and multilinear interpolation at any N, as exact separable passes over the dims.

Every mode here is a tensor product of 1-D resamplings: nearest picks one source index per dim;
a multilinear (or antialiased multilinear) weight is the product of per-dim weights. So
resampling one dim, or a group of dims with torch's own kernel, after another gives exactly the
N-d result, with torch's source coordinates in every dim (the per-dim scales are passed on).
"""
import torch

# torch's linear kernels for 1, 2 and 3 dims, each taking explicit per-dim scales.
_LINEAR_KERNELS = {
    1: torch.ops.aten.upsample_linear1d.default,
    2: torch.ops.aten.upsample_bilinear2d.default,
    3: torch.ops.aten.upsample_trilinear3d.default,
}
# torch's antialiased kernel exists for 2 dims only; it is used one dim at a time (see
# _resample_group): its CPU version is wrong when the output width is 1 and the height changes.
_ANTIALIAS_KERNEL = torch.ops.aten._upsample_bilinear2d_aa.default


def interpolate_nd(input, output_size, scales, mode, align_corners=False, antialias=False, *,
                   native_max_dims=3):
    """Resample ``input`` (B, C, *spatial) to ``output_size`` (N ints).

    ``scales``: None or N floats, the user's scale factors, which (as in torch) set the source
    coordinates instead of in/out. ``mode``: "nearest", "nearest-exact" or "linear" (multilinear;
    ``antialias`` applies torch's antialiasing filter in every dim). ``native_max_dims`` (1-3)
    caps how many dims one torch kernel call resamples (always 1 with antialias).
    """
    if native_max_dims not in (1, 2, 3):
        raise ValueError(f"ndops.fallback.interpolate: native_max_dims must be 1, 2 or 3, got "
                         f"{native_max_dims!r}")
    if scales is None:
        scales = (None,) * len(output_size)
    if mode == "linear":
        # The passes below leave the output as a permuted view; torch (and the ext kernel)
        # return a contiguous tensor for a contiguous input, so copy back to that layout.
        contiguous_input = input.is_contiguous()
        group_size = 1 if antialias else native_max_dims
        n = len(output_size)
        # Last group first: the trailing dims need no move (see _resample_group).
        for stop in range(n, 0, -group_size):
            group = list(range(max(0, stop - group_size), stop))
            # torch's antialiased forward copies a dim that keeps its size (its backward does
            # not, under a scale factor != 1): skipping the dim is that copy.
            if antialias and input.shape[2 + group[0]] == output_size[group[0]]:
                continue
            input = _resample_group(input, group, output_size, scales, bool(align_corners),
                                    antialias)
        return input.contiguous() if contiguous_input else input
    exact = mode == "nearest-exact"
    for d, (out_size, scale) in enumerate(zip(output_size, scales)):
        index = _nearest_source_index(input.shape[2 + d], out_size, scale, exact, input)
        input = input.index_select(2 + d, index)
    return input


def _index_math_dtype(input):
    # torch's CPU kernels compute source coordinates in the input's "opmath" type (float64 for
    # float64 input, float32 otherwise); its CUDA kernels always in float32.
    if input.dtype == torch.float64 and input.device.type == "cpu":
        return torch.float64
    return torch.float32


def _nearest_source_index(in_size, out_size, scale, exact, input):
    """torch's nearest / nearest-exact source index for every output index of one dim.

    ratio = 1 / scale_factor when one is used, else in / out (ATen's compute_scales_value);
    nearest:       src = floor(ratio * i)
    nearest-exact: src = floor(max(ratio * (i + 0.5) - 0.5, 0) + 0.5)
    both clamped to in - 1. ATen floors in float32 (floorf), so the coordinate is rounded to
    float32 first (it matters for float64 input, whose coordinate is computed in float64).
    """
    dtype = _index_math_dtype(input)
    if scale is not None and scale > 0:
        ratio = torch.tensor(1.0 / scale, dtype=dtype)
    else:
        ratio = torch.tensor(float(in_size), dtype=dtype) / out_size
    i = torch.arange(out_size, dtype=dtype)
    if exact:
        src = (ratio * (i + 0.5) - 0.5).clamp_min(0)
        src = (src.double() + 0.5).float()
    else:
        src = (ratio * i).float()
    index = src.floor().long().clamp_max(in_size - 1)
    return index.to(input.device)


def _resample_group(input, group, output_size, scales, align_corners, antialias):
    """Linearly resample the consecutive spatial dims ``group`` with one torch kernel call.

    The group's dims are moved last and every other dim (batch and channels included) is folded
    into the batch: torch's kernel sees (B', 1, *group_sizes), as the resampling is independent
    along all other dims. Under antialias the group is one dim, given a size-1 partner dim
    in front, which the 2-D antialiased kernel copies exactly (one tap of weight 1).
    """
    k = len(group)
    axes = [2 + d for d in group]
    moved = input.movedim(axes, list(range(-k, 0)))
    lead_shape = moved.shape[:-k]
    lead = 1
    for s in lead_shape:
        lead *= s
    flat = moved.reshape(lead, 1, *moved.shape[-k:])
    sizes = [output_size[d] for d in group]
    group_scales = [scales[d] for d in group]
    if antialias:
        out = _ANTIALIAS_KERNEL(flat.unsqueeze(-2), [1] + sizes, align_corners,
                                None, *group_scales).squeeze(-2)
    else:
        out = _LINEAR_KERNELS[k](flat, sizes, align_corners, *group_scales)
    out = out.reshape(*lead_shape, *sizes)
    return out.movedim(list(range(-k, 0)), axes)
