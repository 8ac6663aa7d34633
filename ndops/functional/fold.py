"""N-d unfold and fold: ``F.unfold`` / ``F.fold`` (sliding blocks <-> columns, 2-D only in
torch) with the same arguments, defaults and layout, at any N."""
import math
import numbers

import torch
import torch.nn.functional as F

from .. import _args, _backend
from ..fallback import fold as _fallback

# The compiled CPU kernels come first at N = 2 too: against F.unfold / F.fold (im2col/col2im),
# back to back on the shared project machine, 1 thread, fp32, B2 C16 64^2 k3 p1 / B8 C64 32^2
# k3 p1 / B4 C3 224^2 k16 s16 / B1 C32 128^2 k3 p1 / B2 C16 64^2 k3 s2 p1 / B1 C1 512^2 k5 p2:
# unfold 1.8-4.8x, fold 1.8-4.0x, forward + backward 1.5-4.3x faster. (With 2 threads every
# parallel op, torch's own included, stalled ~10 ms on that busy machine, so the 2-thread
# numbers of small shapes said nothing; shapes of >= 18 MB of columns: ext 1.4-10x faster.)
_backend.set_preference("unfold_nd", _backend.compiled_first_on_cpu())
_backend.set_preference("fold_nd", _backend.compiled_first_on_cpu())


def _check_blocks(op, blocks, size_name, size, window):
    if min(blocks) < 1:
        described = ", ".join(f"{k}={v}" for k, v in window.items())
        raise ValueError(f"ndops.{op}: given {size_name}={size} and {described}, the array of "
                         f"sliding blocks would be empty (shape {blocks}); every component "
                         f"must be at least one")


def unfold_nd(input, kernel_size, dilation=1, padding=0, stride=1, *, spatial_dims=None):
    """Extract sliding blocks as columns: ``F.unfold`` for any number N of spatial dims.

    input (B, C, *spatial) or unbatched (C, *spatial); output (B, C * prod(kernel_size), L),
    the column index ordered (c, k_0, ..., k_{N-1}), L = prod((in + 2p - d(k-1) - 1)//s + 1)
    block positions in row-major order. N comes from spatial_dims, from a tuple argument, else
    from input.dim() - 2 (rules in ``ndops._args``).
    Differences from torch: any N (torch: N = 2); with only int arguments a 3-D input is a
    batched N = 1 input (torch: unbatched 2-D; pass spatial_dims=2 or tuples for that); bad
    arguments raise ValueError (torch: RuntimeError). The compiled kernel (backend "ext", CPU,
    csrc/cpu/fold.cpp) copies a non-contiguous input to a contiguous one first.
    """
    op = "unfold_nd"
    n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims, per_dim={
        "kernel_size": kernel_size, "dilation": dilation, "padding": padding, "stride": stride})
    kernel_size, stride, padding, dilation = _args.window_args(op, n, kernel_size, stride,
                                                               padding, dilation)
    _args.check_floating(op, "input", input)
    x = _args.with_batch(input, batched)
    if 0 in x.shape[1:]:
        raise ValueError(f"ndops.{op}: input must have channels and spatial sizes > 0 (only the "
                         f"batch may be empty), got shape {tuple(input.shape)}")
    in_size = tuple(x.shape[2:])
    blocks = _fallback.block_counts(in_size, kernel_size, dilation, padding, stride)
    _check_blocks(op, blocks, "input spatial size", in_size,
                  dict(kernel_size=kernel_size, dilation=dilation, padding=padding))

    impl = _backend.choose(op, n, x.device, native_ok=(n == 2))
    if impl == "native":
        out = F.unfold(x, kernel_size, dilation, padding, stride)
    elif impl == "ext":
        out = torch.ops.ndops.unfold_nd(x, list(kernel_size), list(dilation), list(padding),
                                        list(stride))
    else:
        out = _fallback.unfold_nd(x, kernel_size, dilation, padding, stride)
    return _args.drop_batch(out, batched)


def _fold_spatial_dims(op, spatial_dims, per_dim):
    """N for fold: from spatial_dims or the tuple arguments (the input does not carry it)."""
    sources = {}
    if spatial_dims is not None:
        if (not isinstance(spatial_dims, numbers.Integral) or isinstance(spatial_dims, bool)
                or spatial_dims < 1):
            raise ValueError(f"ndops.{op}: spatial_dims must be an int >= 1, got "
                             f"{spatial_dims!r}")
        sources["spatial_dims"] = int(spatial_dims)
    for name, value in per_dim.items():
        if isinstance(value, (tuple, list, torch.Size)):
            sources[name] = len(value)
    if len(set(sources.values())) > 1:
        described = ", ".join(f"{k} -> N={v}" for k, v in sources.items())
        raise ValueError(f"ndops.{op}: conflicting numbers of spatial dims ({described})")
    if not sources:
        raise ValueError(f"ndops.{op}: the number of spatial dims N is unknown: the input "
                         f"(B, C * prod(kernel_size), L) does not carry it and every argument "
                         f"is an int; pass spatial_dims=N or output_size/kernel_size as tuples")
    n = next(iter(sources.values()))
    if n < 1:
        raise ValueError(f"ndops.{op}: at least one spatial dim is needed, got N={n}")
    return n


def fold_nd(input, output_size, kernel_size, dilation=1, padding=0, stride=1, *,
            spatial_dims=None):
    """Sum columns back into sliding blocks: ``F.fold`` (the adjoint of unfold) for any N.

    input (B, C * prod(kernel_size), L) or unbatched (C * prod(kernel_size), L), laid out as
    ``unfold_nd``'s output, with L equal to the number of block positions; output
    (B, C, *output_size), overlapping values summed. N comes from spatial_dims or the length of
    a tuple argument; if every argument is an int and spatial_dims is not given, a ValueError
    asks for one (the input's rank does not tell N).
    Differences from torch: any N (torch: N = 2, with int arguments accepted as 2-D); bad
    arguments raise ValueError (torch: RuntimeError). The compiled kernel (backend "ext", CPU)
    sums each element's terms in float for float16/bfloat16 and rounds once.
    """
    op = "fold_nd"
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"ndops.{op}: input must be a torch.Tensor, got {type(input).__name__}")
    n = _fold_spatial_dims(op, spatial_dims, {
        "output_size": output_size, "kernel_size": kernel_size, "dilation": dilation,
        "padding": padding, "stride": stride})
    output_size = _args.as_tuple(op, "output_size", output_size, n)
    _args.check_positive(op, "output_size", output_size)
    kernel_size, stride, padding, dilation = _args.window_args(op, n, kernel_size, stride,
                                                               padding, dilation)
    if input.dim() not in (2, 3):
        raise ValueError(f"ndops.{op}: input must have shape (B, C * prod(kernel_size), L) or "
                         f"(C * prod(kernel_size), L), got shape {tuple(input.shape)}")
    _args.check_floating(op, "input", input)
    batched = input.dim() == 3
    x = _args.with_batch(input, batched)
    columns, length = x.shape[1:]
    taps = math.prod(kernel_size)
    if columns == 0 or columns % taps:
        raise ValueError(f"ndops.{op}: input's dimension -2 must be a positive multiple of "
                         f"prod(kernel_size) = {taps} (kernel_size={kernel_size}), got input "
                         f"of shape {tuple(input.shape)}")
    blocks = _fallback.block_counts(output_size, kernel_size, dilation, padding, stride)
    window = dict(kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride)
    _check_blocks(op, blocks, "output_size", output_size, window)
    if length != math.prod(blocks):
        raise ValueError(
            f"ndops.{op}: given output_size={output_size}, "
            f"{', '.join(f'{k}={v}' for k, v in window.items())}, input's dimension -1 (L) must "
            f"match the calculated number of sliding blocks {' * '.join(map(str, blocks))} = "
            f"{math.prod(blocks)}, got input of shape {tuple(input.shape)}")

    impl = _backend.choose(op, n, x.device, native_ok=(n == 2))
    if impl == "native":
        out = F.fold(x, output_size, kernel_size, dilation, padding, stride)
    elif impl == "ext":
        out = torch.ops.ndops.fold_nd(x, list(output_size), list(kernel_size), list(dilation),
                                      list(padding), list(stride))
    else:
        out = _fallback.fold_nd(x, output_size, kernel_size, dilation, padding, stride)
    return _args.drop_batch(out, batched)
