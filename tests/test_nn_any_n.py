"""``ndops.nn`` beyond torch's dims (N = 4, 5): output shapes, agreement with the functional
ops, ConvNd's padding modes as pad_nd + conv_nd, ConvTransposeNd's output_size, BatchNormNd
against BatchNorm1d on the flattened input, MaxPoolNd indices + MaxUnpoolNd, unbatched input."""
import math

import pytest
import torch
from torch import nn

import ndops.functional as F
from ndops.nn import (AdaptiveAvgPoolNd, AdaptiveMaxPoolNd, AvgPoolNd, BatchNormNd, ConvNd,
                      ConvTransposeNd, FoldNd, MaxPoolNd, MaxUnpoolNd, PadNd, UnfoldNd,
                      UpsampleNd)

SHAPE_4D = (2, 4, 5, 6, 4, 5)   # (B, C, D0, D1, D2, D3)


def _window_count(size, kernel, stride, padding, dilation, ceil_mode=False):
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    count = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= size + padding:  # last window starts in padding
        count -= 1
    return count


def _per_dim(value, n=4):
    return value if isinstance(value, tuple) else (value,) * n


def _conv_shape(m, spatial):
    return tuple(_window_count(s, k, st, p, d) for s, k, st, p, d in zip(
        spatial, m.kernel_size, m.stride, m.padding, m.dilation))


# name -> (module, input shape, functional call with the module's own arguments, output shape)
def cases_4d():
    conv = ConvNd(4, 6, (3, 2, 3, 1), stride=(2, 1, 1, 2), padding=(1, 0, 1, 0),
                  dilation=(1, 2, 1, 1), groups=2)
    convt = ConvTransposeNd(4, 6, (2, 3, 1, 2), stride=(2, 1, 3, 2), padding=(0, 1, 0, 1),
                            output_padding=(1, 0, 2, 0), groups=2, dilation=(1, 1, 1, 2))
    max_pool = MaxPoolNd(3, stride=2, padding=1, ceil_mode=True)
    avg_pool = AvgPoolNd((2, 3, 2, 2), stride=(2, 1, 2, 1), padding=(1, 1, 0, 0),
                         count_include_pad=False, divisor_override=None)
    adaptive_avg = AdaptiveAvgPoolNd((2, 3, 1, None))
    adaptive_max = AdaptiveMaxPoolNd(2, return_indices=True, spatial_dims=4)
    batch_norm = BatchNormNd(4)
    upsample = UpsampleNd(scale_factor=(2, 1, 1.5, 1), mode="nearest")
    pad = PadNd((1, 0, 0, 2, 1, 1, 2, 0), "constant", value=-1.0)
    unfold = UnfoldNd(2, stride=(1, 2, 1, 2), spatial_dims=4)
    spatial = SHAPE_4D[2:]
    conv_out = _conv_shape(conv, spatial)
    convt_out = tuple((s - 1) * st - 2 * p + d * (k - 1) + op + 1 for s, k, st, p, d, op in zip(
        spatial, convt.kernel_size, convt.stride, convt.padding, convt.dilation,
        convt.output_padding))
    pooled = tuple(_window_count(s, 3, 2, 1, 1, ceil_mode=True) for s in spatial)
    avg_out = tuple(_window_count(s, k, st, p, 1) for s, k, st, p in zip(
        spatial, (2, 3, 2, 2), (2, 1, 2, 1), (1, 1, 0, 0)))
    unfold_blocks = math.prod(_window_count(s, 2, st, 0, 1) for s, st in zip(spatial, (1, 2, 1, 2)))
    return {
        "conv": (conv, SHAPE_4D, lambda x: F.conv_nd(x, conv.weight, conv.bias, conv.stride,
                                                     conv.padding, conv.dilation, conv.groups),
                 (2, 6) + conv_out),
        "conv_transpose": (convt, SHAPE_4D, lambda x: F.conv_transpose_nd(
            x, convt.weight, convt.bias, convt.stride, convt.padding, convt.output_padding,
            convt.groups, convt.dilation), (2, 6) + convt_out),
        "max_pool": (max_pool, SHAPE_4D, lambda x: F.max_pool_nd(x, 3, 2, 1, ceil_mode=True),
                     (2, 4) + pooled),
        "avg_pool": (avg_pool, SHAPE_4D, lambda x: F.avg_pool_nd(
            x, (2, 3, 2, 2), (2, 1, 2, 1), (1, 1, 0, 0), count_include_pad=False),
            (2, 4) + avg_out),
        "adaptive_avg_pool": (adaptive_avg, SHAPE_4D,
                              lambda x: F.adaptive_avg_pool_nd(x, (2, 3, 1, None)),
                              (2, 4, 2, 3, 1, 5)),
        "adaptive_max_pool": (adaptive_max, SHAPE_4D,
                              lambda x: F.adaptive_max_pool_nd(x, 2, True, spatial_dims=4),
                              (2, 4, 2, 2, 2, 2)),
        "batch_norm": (batch_norm, SHAPE_4D, lambda x: F.batch_norm_nd(
            x, None, None, batch_norm.weight, batch_norm.bias, True), SHAPE_4D),
        "upsample": (upsample, SHAPE_4D,
                     lambda x: F.interpolate_nd(x, scale_factor=(2.0, 1.0, 1.5, 1.0)),
                     (2, 4, 10, 6, 6, 5)),
        "upsample_linear": (UpsampleNd((3, 7, 5, 6), mode="linear", align_corners=True),
                            SHAPE_4D, lambda x: F.interpolate_nd(x, (3, 7, 5, 6), mode="linear",
                                                                 align_corners=True),
                            (2, 4, 3, 7, 5, 6)),
        "pad": (pad, SHAPE_4D, lambda x: F.pad_nd(x, (1, 0, 0, 2, 1, 1, 2, 0), value=-1.0),
                (2, 4, 7, 8, 6, 6)),
        "unfold": (unfold, SHAPE_4D, lambda x: F.unfold_nd(x, 2, stride=(1, 2, 1, 2)),
                   (2, 4 * 16, unfold_blocks)),
        # fold's input: (B, C * prod(kernel_size), blocks) with 2 * 3 * 3 * 2 blocks.
        "fold": (FoldNd((4, 5, 3, 4), (2, 3, 1, 2), stride=(2, 1, 1, 2)), (2, 3 * 12, 36),
                 lambda x: F.fold_nd(x, (4, 5, 3, 4), (2, 3, 1, 2), stride=(2, 1, 1, 2)),
                 (2, 3, 4, 5, 3, 4)),
    }


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("name", list(cases_4d()))
def test_4d_module_shape_and_equals_functional_op(name):
    module, shape, functional_call, expected_shape = cases_4d()[name]
    x = torch.randn(shape, dtype=torch.float64)
    module.double()
    output = module(x)
    assert tuple(_first(output).shape) == expected_shape
    expected = functional_call(x)
    if isinstance(output, tuple):
        assert all(torch.equal(a, e) for a, e in zip(output, expected))
    else:
        assert torch.equal(output, expected)


def _torch_order_padding(padding, kernel_size, dilation):
    """Padding as F.pad takes it (last dim first, (begin, end) per dim), by torch's rule for
    'same': the total d * (k - 1) split with the odd one at the end."""
    pairs = []
    for k, d, p in zip(_per_dim(kernel_size), _per_dim(dilation), _per_dim(padding)):
        if padding == "same":
            total = d * (k - 1)
            pairs.append((total // 2, total - total // 2))
        else:
            pairs.append((0, 0) if padding == "valid" else (p, p))
    return [side for pair in reversed(pairs) for side in pair]


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding, kernel_size, dilation", [
    ((1, 0, 2, 1), 3, 1),
    ("same", (4, 3, 2, 1), 1),   # even kernels: one more at the end
    ("same", (2, 3, 1, 2), (2, 1, 1, 3)),
    ("valid", 2, 1),
])
def test_4d_conv_padding_mode_equals_pad_then_conv(padding_mode, padding, kernel_size, dilation):
    module = ConvNd(3, 4, kernel_size, padding=padding, dilation=dilation,
                    padding_mode=padding_mode, spatial_dims=4).double()
    x = torch.randn(2, 3, 5, 6, 4, 5, dtype=torch.float64)
    pad = _torch_order_padding(padding, kernel_size, dilation)
    assert list(module._reversed_padding_repeated_twice) == pad
    expected = F.conv_nd(F.pad_nd(x, pad, mode="constant" if padding_mode == "zeros"
                                  else padding_mode),
                         module.weight, module.bias, 1, 0, module.dilation)
    torch.testing.assert_close(module(x), expected, atol=1e-12, rtol=1e-12)
    if padding == "same":
        assert module(x).shape[2:] == x.shape[2:]


def test_5d_conv_runs_with_tuple_kernel():
    module = ConvNd(2, 3, (2, 1, 2, 1, 2), padding="same", padding_mode="circular")
    x = torch.randn(1, 2, 3, 2, 3, 2, 3)
    assert module.spatial_dims == 5 and module(x).shape == (1, 3, 3, 2, 3, 2, 3)


def test_4d_conv_transpose_output_size():
    module = ConvTransposeNd(2, 3, 3, stride=(2, 3, 1, 2), padding=1, spatial_dims=4).double()
    x = torch.randn(1, 2, 3, 2, 4, 3, dtype=torch.float64)
    smallest = module(x).shape[2:]
    output_size = [smallest[0] + 1, smallest[1] + 2, smallest[2], smallest[3]]
    output = module(x, output_size=output_size)
    assert list(output.shape[2:]) == output_size
    expected = F.conv_transpose_nd(x, module.weight, module.bias, module.stride, module.padding,
                                   (1, 2, 0, 0))
    torch.testing.assert_close(output, expected, atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="valid sizes range"):
        module(x, output_size=[smallest[0] + 2, *smallest[1:]])
    with pytest.raises(ValueError, match="output_size must have"):
        module(x, output_size=smallest[:3])


@pytest.mark.parametrize("n", [4, 5])
@pytest.mark.parametrize("momentum", [0.3, None])
def test_batch_norm_any_n_equals_batch_norm_1d_on_flattened_input(n, momentum):
    # Batch norm reduces over batch and every spatial position alike, so flattening the spatial
    # dims into one does not change it: torch's BatchNorm1d is an independent reference.
    reference = nn.BatchNorm1d(3, momentum=momentum).double()
    module = BatchNormNd(3, momentum=momentum, spatial_dims=n).double()
    with torch.no_grad():
        reference.weight.normal_()
        reference.bias.normal_()
    module.load_state_dict(reference.state_dict())
    shape = (4, 3) + (3, 2, 2, 3, 2)[:n]
    for training, steps in ((True, 3), (False, 1)):
        reference.train(training)
        module.train(training)
        for _ in range(steps):
            x = torch.randn(shape, dtype=torch.float64) * 3 - 1
            torch.testing.assert_close(module(x), reference(x.flatten(2)).view(shape),
                                       atol=1e-12, rtol=1e-12)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(module.state_dict()[key], value, atol=1e-12, rtol=1e-12)


def test_4d_max_pool_indices_unpool_round_trip():
    pool = MaxPoolNd((2, 3, 2, 2), stride=(2, 2, 1, 2), padding=(1, 0, 0, 1),
                     return_indices=True)
    unpool = MaxUnpoolNd((2, 3, 2, 2), stride=(2, 2, 1, 2), padding=(1, 0, 0, 1))
    x = torch.rand(SHAPE_4D, dtype=torch.float64) + 0.1
    pooled, indices = pool(x)
    unpooled = unpool(pooled, indices, output_size=x.shape[2:])
    assert unpooled.shape == x.shape
    kept = unpooled != 0  # exactly the maxima, at their input positions
    assert torch.equal(unpooled[kept], x[kept])
    repooled, reindices = pool(unpooled)
    assert torch.equal(repooled, pooled) and torch.equal(reindices, indices)
    assert torch.equal(unpooled, F.max_unpool_nd(pooled, indices, (2, 3, 2, 2), (2, 2, 1, 2),
                                                 (1, 0, 0, 1), x.shape[2:]))


def test_unbatched_4d_input_with_spatial_dims():
    conv = ConvNd(3, 2, 3, padding=1, padding_mode="reflect", spatial_dims=4)
    x = torch.randn(3, 4, 5, 4, 3)
    torch.testing.assert_close(conv(x), conv(x.unsqueeze(0)).squeeze(0))
    pad = PadNd(1, "replicate", spatial_dims=4)
    assert pad(x).shape == (3, 6, 7, 6, 5)


def test_factory_kwargs_set_dtype():
    conv = ConvNd(2, 3, 3, spatial_dims=4, dtype=torch.float64, device="cpu")
    assert conv.weight.dtype == torch.float64 and conv.bias.dtype == torch.float64
    norm = BatchNormNd(3, dtype=torch.float64)
    assert norm.running_mean.dtype == torch.float64
    assert norm.num_batches_tracked.dtype == torch.long
