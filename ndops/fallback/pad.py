"""Pure-PyTorch ``pad_nd`` for any number of padded dims.

Constant padding is ``torch.nn.functional.pad`` itself (natively N-d). The other modes are
separable: every padded dim is one ``index_select`` with the vector of source coordinates that
the mode assigns to each output coordinate, which is exact, handles negative pads (cropping)
through the same vector, and gets its gradient (an index_add) from torch autograd.
"""
import torch
import torch.nn.functional as F


def source_index(mode, size, pad_left, pad_right, device):
    """For each output coordinate of one padded dim, the input coordinate it copies.

    ``mode`` is "reflect", "replicate" or "circular"; the pads are already validated.
    """
    out_size = size + pad_left + pad_right
    o = torch.arange(out_size, device=device)
    if mode == "reflect":  # mirror about 0 and size - 1; |pads| < size, so once at each end
        j = (o - pad_left).abs()
        return torch.where(j >= size, 2 * (size - 1) - j, j)
    if mode == "replicate":
        return (o - pad_left).clamp(0, size - 1)
    # circular, as torch: negative pads crop first, positive ones wrap around what is left
    if out_size == 0:
        return o
    crop_left = max(-pad_left, 0)
    period = size + min(pad_left, 0) + min(pad_right, 0)
    return (o - max(pad_left, 0)).remainder(period) + crop_left


def pad_nd(input, pad, mode, value):
    """Pad the trailing ``len(pad) // 2`` dims of ``input`` (``torch.nn.functional.pad``'s
    layout: last dim first). Arguments are validated by ``ndops.functional.pad_nd``."""
    if mode == "constant":
        return F.pad(input, pad, value=value)
    out = input
    for i in range(len(pad) // 2):
        dim = input.dim() - 1 - i
        index = source_index(mode, input.shape[dim], pad[2 * i], pad[2 * i + 1], input.device)
        out = out.index_select(dim, index)
    return out
