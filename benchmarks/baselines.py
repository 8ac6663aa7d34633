"""The alternatives users have today, re-implemented for same-run comparisons (not shipped).

``conv4d_loop_of_conv3d``: the recursive decomposition of pvjosue/pytorch_convNd and the seed
package — one ``F.conv3d`` per tap of the leading dim, each over every output frame folded into
the batch, summed. Zero padding, stride and dilation along every dim; groups = 1.
"""
import torch
import torch.nn.functional as F


def conv4d_loop_of_conv3d(x, w, bias=None, stride=1, padding=0, dilation=1):
    s, p, d = stride, padding, dilation
    batch, _, t_in = x.shape[:3]
    out_ch, _, k0 = w.shape[:3]
    x = F.pad(x, (0, 0) * 3 + (p, p))
    t_out = (t_in + 2 * p - d * (k0 - 1) - 1) // s + 1
    total = None
    for k in range(k0):
        frames = x[:, :, k * d: k * d + s * (t_out - 1) + 1: s]       # (B, C, To, D, H, W)
        frames = frames.transpose(1, 2).flatten(0, 1)                    # (B*To, C, D, H, W)
        part = F.conv3d(frames, w[:, :, k], None, s, p, d)
        total = part if total is None else total + part
    out = total.unflatten(0, (batch, t_out)).transpose(1, 2)
    return out if bias is None else out + bias.view(1, out_ch, *([1] * 4))
