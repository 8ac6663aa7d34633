"""Convolution and transposed convolution at any N, exact, built from torch's 1-3-D convs.

Both ops peel off the leading spatial dim and make ONE conv call over the remaining N-1 dims per
level (per chunk), recursing until N <= ``native_max_dims``, where ``F.conv{1,2,3}d`` /
``F.conv_transpose{1,2,3}d`` (oneDNN on CPU, cuDNN on CUDA) do the GEMM-heavy work.

- conv: the K0 taps of the leading dim are gathered into channels (C_in * K0 of them) and the
  leading output positions are folded into the batch, so the leading dim's sum over taps becomes
  part of the inner conv's sum over channels.
- conv_transpose: the K0 taps are folded into OUTPUT channels (C_out * K0), the leading input
  positions into the batch; each (input position, tap) result is then added at its output
  position.

The workspace (gathered taps, or per-tap partial outputs) is bounded by processing the leading
dim in chunks; chunking changes neither the arithmetic nor the result.
"""
import torch
import torch.nn.functional as F

# The fixed part of the per-chunk workspace budget, in bytes (see ``_workspace_budget``).
DEFAULT_WORKSPACE_BYTES = 256 * 2**20


def _native(name, n):
    return getattr(F, f"{name}{n}d")


def _check_native_max_dims(native_max_dims):
    if native_max_dims not in (1, 2, 3):
        raise ValueError(f"ndops.fallback.conv: native_max_dims must be 1, 2 or 3 (torch's "
                         f"convs), got {native_max_dims!r}")


def _workspace_budget(workspace_bytes, reference):
    """The per-chunk budget: ``workspace_bytes`` when given, else the larger of twice
    ``reference``'s size and DEFAULT_WORKSPACE_BYTES."""
    if workspace_bytes is not None:
        return workspace_bytes
    return max(2 * reference.numel() * reference.element_size(), DEFAULT_WORKSPACE_BYTES)


def _chunk_length(positions, bytes_per_position, budget):
    """How many leading-dim positions one chunk holds (at least 1) to stay within ``budget``."""
    if bytes_per_position == 0:
        return max(positions, 1)
    return max(1, min(positions, budget // bytes_per_position))


def _ceil_div(a, b):
    return -(-a // b)


def conv_nd(input, weight, bias, stride, padding, dilation, groups, *, native_max_dims=3,
            workspace_bytes=None):
    """``F.conv{N}d`` for any N: input (B, C_in, *spatial), weight (C_out, C_in/groups, *kernel).

    stride, padding (symmetric, zeros), dilation: tuples of N ints. ``native_max_dims``: the
    largest N handed to torch directly. ``workspace_bytes``: per-chunk budget for the gathered
    taps (default: the larger of twice the input's size and 256 MiB).
    """
    _check_native_max_dims(native_max_dims)
    n = weight.dim() - 2
    if n <= native_max_dims:
        return _native("conv", n)(input, weight, bias, stride, padding, dilation, groups)
    budget = _workspace_budget(workspace_bytes, input)
    k0, s0, p0, d0 = weight.shape[2], stride[0], padding[0], dilation[0]
    if p0:
        input = F.pad(input, (0, 0) * (n - 1) + (p0, p0))
    batch, channels, length = input.shape[:3]
    rest = input.shape[3:]
    span = d0 * (k0 - 1) + 1
    out_len = (length - span) // s0 + 1
    # Windows of the leading dim, every d0-th entry of each being a tap: (B, C, To, *rest, K0).
    taps = input.unfold(2, span, s0)[..., ::d0]
    # Channel c * K0 + k of the gathered input meets weight[:, c, k]; with channels ordered
    # (C, K0), each group's channels stay contiguous, so ``groups`` carries over unchanged.
    inner_weight = weight.flatten(1, 2)
    per_position = batch * channels * k0 * rest.numel() * input.element_size()
    chunk = _chunk_length(out_len, per_position, budget)
    pieces = []
    for start in range(0, out_len, chunk):
        part = taps[:, :, start:start + chunk]
        count = part.shape[2]
        # (B, C, Tc, *rest, K0) -> (B, Tc, *rest, C, K0) -> (B*Tc, C*K0, *rest): one copy, into
        # the channels-last layout, which oneDNN's convs run faster on (measured).
        gathered = part.movedim(1, -2).reshape(batch * count, *rest, channels * k0).movedim(-1, 1)
        inner = conv_nd(gathered, inner_weight, bias, stride[1:], padding[1:], dilation[1:],
                        groups, native_max_dims=native_max_dims, workspace_bytes=budget)
        pieces.append(inner.unflatten(0, (batch, count)).transpose(1, 2))  # (B, C_out, Tc, ...)
    return torch.cat(pieces, dim=2)


def conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, *,
                      native_max_dims=3, workspace_bytes=None):
    """``F.conv_transpose{N}d`` for any N: input (B, C_in, *spatial), weight
    (C_in, C_out/groups, *kernel).

    stride, padding, output_padding, dilation: tuples of N ints. ``native_max_dims`` and
    ``workspace_bytes`` (budget for the per-tap partial outputs of one chunk, default: the
    larger of twice the output's size and 256 MiB) as in ``conv_nd``.
    """
    _check_native_max_dims(native_max_dims)
    n = weight.dim() - 2
    if n <= native_max_dims:
        return _native("conv_transpose", n)(input, weight, bias, stride, padding, output_padding,
                                            groups, dilation)
    batch, in_len = input.shape[0], input.shape[2]
    out_channels = weight.shape[1] * groups
    out_sizes = [(i - 1) * s - 2 * p + d * (k - 1) + q + 1 for i, s, p, d, k, q in
                 zip(input.shape[2:], stride, padding, dilation, weight.shape[2:], output_padding)]
    if bias is None:
        out = input.new_zeros(batch, out_channels, *out_sizes)
    else:
        out = bias.reshape(1, -1, *[1] * n).expand(batch, out_channels, *out_sizes)
        out = out.clone(memory_format=torch.contiguous_format)
    budget = _workspace_budget(workspace_bytes, out)
    k0, s0, p0, d0 = weight.shape[2], stride[0], padding[0], dilation[0]
    out_len = out_sizes[0]
    # Output channel o * K0 + k of the inner op is output channel o's contribution from tap k;
    # ordered (C_out/groups, K0) within a group, the groups stay contiguous.
    inner_weight = weight.flatten(1, 2)
    per_position = batch * out_channels * k0 * out.shape[3:].numel() * out.element_size()
    chunk = _chunk_length(in_len, per_position, budget)
    for start in range(0, in_len, chunk):
        part = input[:, :, start:start + chunk]
        count = part.shape[2]
        folded = part.transpose(1, 2).flatten(0, 1)  # (B*Tc, C_in, *rest_in)
        inner = conv_transpose_nd(folded, inner_weight, None, stride[1:], padding[1:],
                                  output_padding[1:], groups, dilation[1:],
                                  native_max_dims=native_max_dims, workspace_bytes=budget)
        inner = inner.unflatten(0, (batch, count)).unflatten(2, (out_channels, k0))
        # Input position i and tap k land on output position t = i*s0 + k*d0 - p0 (the
        # adjoint of conv reading input t for output i), kept when 0 <= t < To. For one k the
        # kept i form a contiguous range and their t a stride-s0 slice of the output, so each
        # tap is one strided in-place add: the scatter-add of every (i, k), without an index
        # map or a permuted copy of the partial outputs.
        for k in range(k0):
            first = max(start, _ceil_div(p0 - k * d0, s0))
            hits = max(0, min(start + count, (out_len - 1 + p0 - k * d0) // s0 + 1) - first)
            if hits == 0:
                # An empty add still links the output to the graph (zero gradients), as torch's
                # output always is, even when no tap lands inside it.
                first, t_first = start, 0
            else:
                t_first = first * s0 + k * d0 - p0
            contribution = inner[:, first - start:first - start + hits, :, k].transpose(1, 2)
            out[:, :, t_first:t_first + hits * s0:s0] += contribution
    return out
