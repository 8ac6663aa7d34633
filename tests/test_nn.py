"""``ndops.nn`` against torch's own modules at N = 1, 2, 3.

For every module: the same parameter/buffer names and shapes, the same initial values from the
same seed, state dicts that load both ways (strict) and the same outputs. Then the parts with
their own rules: conv padding modes (incl. 'same' with even kernels), ConvTransposeNd's
``output_size``, BatchNormNd's running statistics, MaxPoolNd indices + MaxUnpoolNd.
(N = 4, 5 are in test_nn_any_n.py; pickle, deepcopy, repr and errors in test_nn_mechanics.py.)
"""
import inspect

import pytest
import torch
from torch import nn

import ndops
from ndops.nn import (AdaptiveAvgPoolNd, AdaptiveMaxPoolNd, AvgPoolNd, BatchNormNd, ConvNd,
                      ConvTransposeNd, FoldNd, MaxPoolNd, MaxUnpoolNd, PadNd, UnfoldNd,
                      UpsampleNd)

LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
TOLERANCE = {torch.float32: dict(atol=1e-6, rtol=1e-6),
             torch.float64: dict(atol=1e-12, rtol=1e-12)}


def _input_shape(n, batch, channels, size):
    """(batch, channels, size, size + 1, ...): unequal spatial sizes catch swapped dims."""
    return (batch, channels) + tuple(size + d for d in range(n))


def _case(torch_module, ndops_module, shape, unbatched=True):
    return dict(torch=torch_module, ndops=ndops_module, shape=shape, unbatched=unbatched)


def parity_cases(n):
    """name -> (torch module factory, ndops module factory, input shape) at N = ``n``."""
    def torch_cls(pattern):
        return getattr(nn, pattern.format(n))

    def per_dim(*values):
        return tuple(values[:n])

    cases = {
        "conv": _case(lambda: torch_cls("Conv{}d")(4, 6, 3, stride=2, padding=1, groups=2),
                      lambda: ConvNd(4, 6, 3, stride=2, padding=1, groups=2, spatial_dims=n),
                      _input_shape(n, 2, 4, 6)),
        "conv_same_even_reflect_no_bias": _case(
            lambda: torch_cls("Conv{}d")(3, 5, per_dim(4, 3, 2), padding="same", bias=False,
                                         padding_mode="reflect"),
            lambda: ConvNd(3, 5, per_dim(4, 3, 2), padding="same", bias=False,
                           padding_mode="reflect"),
            _input_shape(n, 2, 3, 5)),
        "conv_transpose": _case(
            lambda: torch_cls("ConvTranspose{}d")(4, 6, 3, stride=2, padding=1,
                                                  output_padding=1, groups=2),
            lambda: ConvTransposeNd(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                                    spatial_dims=n),
            _input_shape(n, 2, 4, 4)),
        "conv_transpose_dilated": _case(
            lambda: torch_cls("ConvTranspose{}d")(3, 2, 2, stride=3, output_padding=1,
                                                  bias=False, dilation=2),
            lambda: ConvTransposeNd(3, 2, per_dim(2, 2, 2), stride=3, output_padding=1,
                                    bias=False, dilation=2),
            _input_shape(n, 2, 3, 3)),
        "max_pool": _case(
            lambda: torch_cls("MaxPool{}d")(3, stride=2, padding=1, ceil_mode=True),
            lambda: MaxPoolNd(3, stride=2, padding=1, ceil_mode=True, spatial_dims=n),
            _input_shape(n, 2, 3, 6)),
        "max_pool_dilated_indices": _case(
            lambda: torch_cls("MaxPool{}d")(2, stride=1, dilation=2, return_indices=True),
            lambda: MaxPoolNd(2, stride=1, dilation=2, return_indices=True),
            _input_shape(n, 2, 3, 5)),
        "avg_pool": _case(
            lambda: torch_cls("AvgPool{}d")(3, stride=2, padding=1, ceil_mode=True,
                                            count_include_pad=False),
            lambda: AvgPoolNd(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False,
                              spatial_dims=n),
            _input_shape(n, 2, 3, 6)),
        "adaptive_avg_pool": _case(
            lambda: torch_cls("AdaptiveAvgPool{}d")(per_dim(3, None, 2)),
            lambda: AdaptiveAvgPoolNd(per_dim(3, None, 2)),
            _input_shape(n, 2, 3, 7)),
        "adaptive_max_pool_indices": _case(
            lambda: torch_cls("AdaptiveMaxPool{}d")(3, return_indices=True),
            lambda: AdaptiveMaxPoolNd(3, return_indices=True, spatial_dims=n),
            _input_shape(n, 2, 3, 7)),
        "batch_norm": _case(lambda: torch_cls("BatchNorm{}d")(4),
                            lambda: BatchNormNd(4, spatial_dims=n),
                            _input_shape(n, 3, 4, 4), unbatched=False),
        "batch_norm_cumulative_no_affine": _case(
            lambda: torch_cls("BatchNorm{}d")(4, momentum=None, affine=False),
            lambda: BatchNormNd(4, momentum=None, affine=False),
            _input_shape(n, 3, 4, 4), unbatched=False),
        "upsample_nearest": _case(lambda: nn.Upsample(scale_factor=2),
                                  lambda: UpsampleNd(scale_factor=2, spatial_dims=n),
                                  _input_shape(n, 2, 3, 3), unbatched=False),
        "upsample_linear": _case(
            lambda: nn.Upsample(size=per_dim(5, 7, 4), mode=LINEAR_MODE[n], align_corners=True),
            lambda: UpsampleNd(size=per_dim(5, 7, 4), mode=LINEAR_MODE[n], align_corners=True),
            _input_shape(n, 2, 3, 3), unbatched=False),
        "pad_constant": _case(lambda: torch_cls("ConstantPad{}d")((1, 2, 0, 1, 2, 0)[:2 * n], 1.5),
                              lambda: PadNd((1, 2, 0, 1, 2, 0)[:2 * n], "constant", 1.5),
                              _input_shape(n, 2, 3, 4)),
        "pad_reflect": _case(lambda: torch_cls("ReflectionPad{}d")(2),
                             lambda: PadNd(2, "reflect", spatial_dims=n),
                             _input_shape(n, 2, 3, 4)),
        "pad_replicate": _case(lambda: torch_cls("ReplicationPad{}d")((2, 1, 0, 3, 1, 1)[:2 * n]),
                               lambda: PadNd((2, 1, 0, 3, 1, 1)[:2 * n], "replicate"),
                               _input_shape(n, 2, 3, 4)),
        "pad_circular": _case(lambda: torch_cls("CircularPad{}d")(1),
                              lambda: PadNd(1, "circular", spatial_dims=n),
                              _input_shape(n, 2, 3, 4)),
    }
    if n == 2:  # torch's Unfold/Fold are 2-D only
        cases["unfold"] = _case(
            lambda: nn.Unfold((2, 3), dilation=(1, 2), padding=1, stride=(2, 1)),
            lambda: UnfoldNd((2, 3), dilation=(1, 2), padding=1, stride=(2, 1)),
            (2, 3, 5, 6))
        # Fold's input: (B, C * 2 * 2, L) with L = 3 * 4 blocks for output (5, 6).
        cases["fold"] = _case(lambda: nn.Fold((5, 6), 2, padding=1, stride=2),
                              lambda: FoldNd((5, 6), 2, padding=1, stride=2),
                              (2, 12, 12))
    return cases


CASES = [(name, n) for n in (1, 2, 3) for name in parity_cases(n)]


def _modules(name, n):
    case = parity_cases(n)[name]
    return case["torch"](), case["ndops"](), case


def _assert_outputs_equal(expected, actual, dtype):
    if isinstance(expected, tuple):  # (output, indices)
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for e, a in zip(expected, actual):
            _assert_outputs_equal(e, a, dtype)
        return
    torch.testing.assert_close(actual, expected, **TOLERANCE[dtype])


def _randomize_state(module):
    """Give every parameter and buffer values that differ from the defaults."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                tensor.fill_(3)  # num_batches_tracked
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:
                tensor.copy_(torch.randn_like(tensor))


@pytest.mark.parametrize("name, n", CASES)
def test_same_parameter_and_buffer_names_and_shapes(name, n):
    torch_module, ndops_module, _ = _modules(name, n)

    def described(named):
        return [(key, tuple(t.shape), t.dtype) for key, t in named]

    assert described(ndops_module.named_parameters()) == described(torch_module.named_parameters())
    assert described(ndops_module.named_buffers()) == described(torch_module.named_buffers())
    assert list(ndops_module.state_dict()) == list(torch_module.state_dict())


@pytest.mark.parametrize("ours, theirs", [
    (ConvNd, nn.Conv2d), (ConvTransposeNd, nn.ConvTranspose2d), (MaxPoolNd, nn.MaxPool2d),
    (AvgPoolNd, nn.AvgPool2d), (AdaptiveAvgPoolNd, nn.AdaptiveAvgPool2d),
    (AdaptiveMaxPoolNd, nn.AdaptiveMaxPool2d), (MaxUnpoolNd, nn.MaxUnpool2d),
    (BatchNormNd, nn.BatchNorm2d), (UpsampleNd, nn.Upsample), (UnfoldNd, nn.Unfold),
    (FoldNd, nn.Fold)])
def test_constructor_and_forward_signatures_are_torchs_plus_spatial_dims(ours, theirs):
    keyword_only = inspect.Parameter.KEYWORD_ONLY

    def described(function):
        parameters = inspect.signature(function).parameters.values()
        return [(p.name, p.kind, p.default) for p in parameters]

    ours_init = described(ours.__init__)
    assert ("spatial_dims", keyword_only, None) in ours_init
    theirs_init = described(theirs.__init__)
    # Beyond torch's arguments only keyword-only ones: spatial_dims, ndops' extensions
    # (BatchNormNd's fused activation), and ones torch added recently (BatchNorm's bias).
    assert [p for p in ours_init if p in theirs_init or p[1] != keyword_only] == theirs_init
    assert described(ours.forward) == described(theirs.forward)


@pytest.mark.parametrize("name, n", CASES)
def test_same_seed_gives_bitwise_equal_initial_state(name, n):
    case = parity_cases(n)[name]
    torch.manual_seed(1234)
    torch_state = case["torch"]().state_dict()
    torch_rng_after = torch.get_rng_state()
    torch.manual_seed(1234)
    ndops_state = case["ndops"]().state_dict()
    assert torch.equal(torch.get_rng_state(), torch_rng_after)  # same draws consumed
    assert list(ndops_state) == list(torch_state)
    for key in torch_state:
        assert ndops_state[key].dtype == torch_state[key].dtype
        assert torch.equal(ndops_state[key], torch_state[key]), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("direction", ["torch_to_ndops", "ndops_to_torch"])
@pytest.mark.parametrize("name, n", CASES)
def test_state_dict_loads_strictly_and_outputs_match(name, n, direction, dtype):
    torch_module, ndops_module, case = _modules(name, n)
    torch_module.to(dtype)
    ndops_module.to(dtype)
    source, target = ((torch_module, ndops_module) if direction == "torch_to_ndops"
                      else (ndops_module, torch_module))
    _randomize_state(source)
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(case["shape"], dtype=dtype)
    for training in (True, False):
        torch_module.train(training)
        ndops_module.train(training)
        _assert_outputs_equal(torch_module(x), ndops_module(x), dtype)
        for key, value in torch_module.state_dict().items():  # e.g. updated running stats
            torch.testing.assert_close(ndops_module.state_dict()[key], value,
                                       **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", ndops.BACKENDS)
@pytest.mark.parametrize("name, n", CASES)
def test_every_backend_matches_torch_forward_and_backward(name, n, backend):
    torch_module, ndops_module, case = _modules(name, n)
    torch_module.double()
    ndops_module.double()
    _randomize_state(torch_module)
    ndops_module.load_state_dict(torch_module.state_dict())
    x = torch.randn(case["shape"], dtype=torch.float64, requires_grad=True)
    expected = torch_module(x)
    try:
        with ndops.backend(backend):
            actual = ndops_module(x)
    except RuntimeError as error:
        if "cannot run this call" not in str(error):
            raise
        pytest.skip(f"backend {backend!r} cannot run {name} at N={n}")
    _assert_outputs_equal(expected, actual, torch.float64)
    expected, actual = (expected[0], actual[0]) if isinstance(expected, tuple) else (expected,
                                                                                     actual)
    grad = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [x, *torch_module.parameters()], grad)
    actual_grads = torch.autograd.grad(actual, [x, *ndops_module.parameters()], grad)
    _assert_outputs_equal(expected_grads, actual_grads, torch.float64)


def _takes_unbatched_input(name, n):
    """Torch's module accepts (C, *spatial) and ours knows N (else the input reads as batched)."""
    case = parity_cases(n)[name]
    return case["unbatched"] and case["ndops"]().spatial_dims is not None


@pytest.mark.parametrize("name, n", [case for case in CASES if _takes_unbatched_input(*case)])
def test_unbatched_input_matches_torch(name, n):
    torch_module, ndops_module, case = _modules(name, n)
    ndops_module.load_state_dict(torch_module.state_dict())
    x = torch.randn(case["shape"][1:], dtype=torch.float64)
    torch_module.double()
    ndops_module.double()
    _assert_outputs_equal(torch_module(x), ndops_module(x), torch.float64)


PADDING_CHOICES = [  # (padding, kernel_size, dilation); per-dim tuples are cut to N
    (1, 3, 1),
    ((2, 0, 1), (3, 2, 3), 1),
    ("same", (4, 3, 2), 1),   # even kernels: torch pads one more at the end
    ("same", 2, 3),
    ("same", (3, 4, 3), (2, 1, 2)),
    ("valid", 3, 1),
]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding, kernel_size, dilation", PADDING_CHOICES)
def test_conv_padding_modes_match_torch(n, padding_mode, padding, kernel_size, dilation):
    def cut(v):
        return v[:n] if isinstance(v, tuple) else v

    kwargs = dict(padding=cut(padding), dilation=cut(dilation), padding_mode=padding_mode)
    torch_module = getattr(nn, f"Conv{n}d")(3, 4, cut(kernel_size), **kwargs).double()
    ndops_module = ConvNd(3, 4, cut(kernel_size), **kwargs, spatial_dims=n).double()
    assert (ndops_module._reversed_padding_repeated_twice
            == torch_module._reversed_padding_repeated_twice)
    ndops_module.load_state_dict(torch_module.state_dict())
    x = torch.randn(_input_shape(n, 2, 3, 7), dtype=torch.float64, requires_grad=True)
    expected, actual = torch_module(x), ndops_module(x)
    _assert_outputs_equal(expected, actual, torch.float64)
    grad = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (x, torch_module.weight), grad)
    actual_grads = torch.autograd.grad(actual, (x, ndops_module.weight), grad)
    _assert_outputs_equal(expected_grads, actual_grads, torch.float64)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("extra", ["min", "max", "mixed"])
@pytest.mark.parametrize("with_batch_and_channels", [False, True])
def test_conv_transpose_output_size_matches_torch(n, extra, with_batch_and_channels):
    stride, kernel = (2, 3, 2)[:n], (3, 2, 4)[:n]
    kwargs = dict(stride=stride, padding=1, dilation=(1, 2, 1)[:n])
    torch_module = getattr(nn, f"ConvTranspose{n}d")(3, 2, kernel, **kwargs).double()
    ndops_module = ConvTransposeNd(3, 2, kernel, **kwargs).double()
    ndops_module.load_state_dict(torch_module.state_dict())
    x = torch.randn(_input_shape(n, 2, 3, 4), dtype=torch.float64)
    smallest = torch_module(x).shape[2:]
    added = {"min": [0] * n, "max": [s - 1 for s in stride],
             "mixed": [d % s for d, s in enumerate(stride)]}[extra]
    output_size = [size + a for size, a in zip(smallest, added)]
    if with_batch_and_channels:
        output_size = [2, 2] + output_size
    expected = torch_module(x, output_size=output_size)
    actual = ndops_module(x, output_size=output_size)
    assert actual.shape[-n:] == torch.Size(output_size[-n:])
    _assert_outputs_equal(expected, actual, torch.float64)
    too_big = [size + s for size, s in zip(smallest, stride)]
    for module in (torch_module, ndops_module):
        with pytest.raises(ValueError, match="valid sizes range"):
            module(x, output_size=too_big)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine, track_running_stats", [(True, True), (False, True),
                                                         (True, False)])
def test_batch_norm_training_steps_and_eval_match_torch(n, momentum, affine,
                                                        track_running_stats):
    kwargs = dict(momentum=momentum, affine=affine, track_running_stats=track_running_stats)
    torch_module = getattr(nn, f"BatchNorm{n}d")(3, **kwargs).double()
    ndops_module = BatchNormNd(3, **kwargs, spatial_dims=n).double()
    if affine:
        _randomize_state(torch_module)
        ndops_module.load_state_dict(torch_module.state_dict())

    def compare_steps(steps):
        for _ in range(steps):
            x = (torch.randn(_input_shape(n, 4, 3, 3), dtype=torch.float64) * 2 + 1)
            x.requires_grad_(True)
            expected, actual = torch_module(x), ndops_module(x)
            _assert_outputs_equal(expected, actual, torch.float64)
            grad = torch.randn_like(expected)
            _assert_outputs_equal(torch.autograd.grad(expected, x, grad),
                                  torch.autograd.grad(actual, x, grad), torch.float64)
            for key, value in torch_module.state_dict().items():
                torch.testing.assert_close(ndops_module.state_dict()[key], value,
                                           **TOLERANCE[torch.float64])

    batches_before = int(ndops_module.num_batches_tracked) if track_running_stats else 0
    compare_steps(3)
    if track_running_stats:
        assert int(ndops_module.num_batches_tracked) == batches_before + 3
    torch_module.eval()
    ndops_module.eval()
    compare_steps(2)
    torch_module.reset_running_stats()
    ndops_module.reset_running_stats()
    compare_steps(1)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("kernel_size, stride, padding, ceil_mode",
                         [(2, None, 0, False), (3, 2, 1, True), ((2, 3, 2), (1, 2, 2), 1, False)])
def test_max_pool_indices_and_unpool_round_trip_match_torch(n, kernel_size, stride, padding,
                                                            ceil_mode):
    def cut(v):
        return v[:n] if isinstance(v, tuple) else v

    kernel_size, stride = cut(kernel_size), cut(stride)
    torch_pool = getattr(nn, f"MaxPool{n}d")(kernel_size, stride, padding, return_indices=True,
                                             ceil_mode=ceil_mode)
    ndops_pool = MaxPoolNd(kernel_size, stride, padding, return_indices=True,
                           ceil_mode=ceil_mode, spatial_dims=n)
    torch_unpool = getattr(nn, f"MaxUnpool{n}d")(kernel_size, stride, padding)
    ndops_unpool = MaxUnpoolNd(kernel_size, stride, padding, spatial_dims=n)
    x = torch.rand(_input_shape(n, 2, 3, 6), dtype=torch.float64) + 0.1  # > 0: see below
    pooled, indices = ndops_pool(x)
    expected_pooled, expected_indices = torch_pool(x)
    assert torch.equal(pooled, expected_pooled) and torch.equal(indices, expected_indices)
    assert torch.equal(ndops_unpool(pooled, indices, output_size=x.shape),
                       torch_unpool(pooled, indices, output_size=x.shape))
    try:  # the default output size is not always the input's; the indices may not fit it
        expected = torch_unpool(pooled, indices)
    except RuntimeError:
        with pytest.raises((ValueError, RuntimeError), match="ind"):
            ndops_unpool(pooled, indices)
    else:
        assert torch.equal(ndops_unpool(pooled, indices), expected)
    # Every window holds its maximum at the same place after unpooling, and everything else
    # there is a smaller input value or 0 (< any value of a positive input): pooling again
    # gives the same output and indices.
    unpooled = ndops_unpool(pooled, indices, output_size=x.shape)
    repooled, reindices = ndops_pool(unpooled)
    assert torch.equal(repooled, pooled) and torch.equal(reindices, indices)
