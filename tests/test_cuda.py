"""CUDA kernels of pad_nd, interpolate_nd, batch_norm_act_nd, the pooling ops, the convolutions
(conv_nd, conv_bias_act_nd, conv_transpose_nd) and unfold_nd / fold_nd (csrc/cuda/).

Without a GPU only test_cuda_kernels_registered runs (for an extension built with CUDA: every
op of these families has a CUDA kernel). With one: parity with the CPU kernels (forward and
backward, float64/float32/float16/bfloat16, non-contiguous inputs, zero-size batch),
gradcheck in float64, opcheck on the CPU samples moved to the GPU, and tensors whose index
space passes 2^31 elements.
"""
import importlib

import pytest
import torch

import ndops
from ndops import _ext
from opcheck_samples import sample_arguments

FAMILIES = ["pad", "interpolate", "batch_norm", "pool", "conv", "fold"]
SAMPLES = {family: importlib.import_module(f"opcheck_samples.{family}").SAMPLES
           for family in FAMILIES}

needs_gpu = pytest.mark.skipif(
    not (_ext.cuda_build_version() and torch.cuda.is_available()),
    reason="needs a GPU and an extension built with CUDA (NDOPS_WITH_CUDA=1)")

TOLERANCE = {torch.float64: 1e-7, torch.float32: 1e-4, torch.float16: 1e-2,
             torch.bfloat16: 3e-2}
DTYPES = list(TOLERANCE)


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_kernels_registered(family):
    if _ext.cuda_build_version() is None:
        pytest.skip(f"extension not built with CUDA ({_ext.load_error() or 'CPU-only build'})")
    missing = [op for op in SAMPLES[family]
               if not torch._C._dispatch_has_kernel_for_dispatch_key(f"ndops::{op}", "CUDA")]
    assert not missing, f"ops without a CUDA kernel: {missing}"


# ---- parity with the CPU kernels ------------------------------------------------------------
# Each case: (make(dtype) -> list of float64-seeded CPU inputs, fn(*inputs) -> output tensor).
# Only the first input is cast to the dtype under test (the others are parameters).

def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def pool_unpool(x, window, output_size):
    values, indices = ndops.max_pool_nd(x, *window, return_indices=True)
    return ndops.max_unpool_nd(values, indices, *window, output_size=output_size)


def bn(shape, activation, training, affine=True, tracked=True):
    """A batch norm case; the running statistics live in the closure (never differentiated)."""
    generator = torch.Generator().manual_seed(0)
    stats = {}

    def make():
        c = shape[1]
        stats["mean"] = torch.randn(c, dtype=torch.float64, generator=generator)
        stats["var"] = torch.rand(c, dtype=torch.float64, generator=generator) + 0.5
        return [rand(*shape)] + ([rand(c), rand(c)] if affine else [])

    def fn(x, weight=None, bias=None):
        stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        rm, rv = ((stats["mean"].to(x.device, stat_dtype), stats["var"].to(x.device, stat_dtype))
                  if tracked else (None, None))
        return ndops.batch_norm_act_nd(x, rm, rv, weight, bias, training=training, eps=1e-3,
                                       activation=activation, negative_slope=0.2)
    return make, fn


def one(shape):
    return lambda s=shape: [rand(*s)]


def conv(x_shape, w_shape, activation="none", padding_mode="zeros", **kwargs):
    """A conv_bias_act_nd case (activation "none": a plain conv with a padding mode); the
    weight and bias follow the input's dtype."""
    def make():
        return [rand(*x_shape), rand(*w_shape), rand(w_shape[0])]

    def fn(x, weight, bias):
        return ndops.conv_bias_act_nd(x, weight.to(x.dtype), bias.to(x.dtype),
                                      activation=activation, negative_slope=0.2,
                                      padding_mode=padding_mode, **kwargs)
    return make, fn


def conv_transpose(x_shape, w_shape, **kwargs):
    def make():
        return [rand(*x_shape), rand(*w_shape), rand(w_shape[1] * kwargs.get("groups", 1))]

    def fn(x, weight, bias):
        return ndops.conv_transpose_nd(x, weight.to(x.dtype), bias.to(x.dtype), **kwargs)
    return make, fn


CASES = {
    "pad_constant_3d": (one((2, 3, 5, 6, 4)), lambda x: ndops.pad_nd(x, [1, 2, -1, 1, 2, 0],
                                                                     value=0.5)),
    "pad_reflect_2d": (one((2, 3, 6, 7)), lambda x: ndops.pad_nd(x, [2, 1, 3, 2], "reflect")),
    "pad_replicate_4d": (one((1, 2, 3, 4, 3, 5)),
                         lambda x: ndops.pad_nd(x, [1, 1, 2, 0, 0, 1, 2, 1], "replicate")),
    "pad_circular_3d": (one((1, 2, 4, 5, 6)),
                        lambda x: ndops.pad_nd(x, [-1, 2, 3, 0, 1, 1], "circular")),
    "interp_linear_2d": (one((2, 3, 5, 7)),
                         lambda x: ndops.interpolate_nd(x, size=(9, 4), mode="bilinear")),
    "interp_linear_3d_corners": (one((1, 2, 4, 3, 5)), lambda x: ndops.interpolate_nd(
        x, scale_factor=(1.7, 2.0, 0.6), mode="trilinear", align_corners=True)),
    "interp_linear_4d": (one((1, 2, 3, 4, 3, 2)), lambda x: ndops.interpolate_nd(
        x, size=(5, 3, 6, 4), mode="linear", spatial_dims=4)),
    "interp_nearest_3d": (one((2, 2, 3, 4, 3)),
                          lambda x: ndops.interpolate_nd(x, scale_factor=2.0, mode="nearest")),
    "interp_nearest_exact_2d": (one((1, 3, 7, 5)), lambda x: ndops.interpolate_nd(
        x, size=(4, 9), mode="nearest-exact")),
    "max_pool_2d": (one((2, 3, 9, 8)), lambda x: ndops.max_pool_nd(
        x, 3, 2, 1, ceil_mode=True, return_indices=True)),
    "max_pool_4d_dilated": (one((2, 2, 5, 6, 4, 5)), lambda x: ndops.max_pool_nd(
        x, [2, 3, 2, 2], [2, 1, 2, 2], [1, 1, 0, 1], [1, 1, 2, 1], ceil_mode=True,
        return_indices=True)),
    "avg_pool_3d": (one((2, 3, 7, 6, 5)), lambda x: ndops.avg_pool_nd(
        x, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
    "avg_pool_2d_divisor": (one((1, 2, 7, 6)), lambda x: ndops.avg_pool_nd(
        x, [3, 2], [2, 1], [1, 1], divisor_override=5)),
    "adaptive_avg_3d": (one((2, 3, 5, 6, 7)), lambda x: ndops.adaptive_avg_pool_nd(x, (3, 2, 4))),
    "adaptive_max_4d": (one((1, 2, 5, 4, 3, 6)), lambda x: ndops.adaptive_max_pool_nd(
        x, (2, 3, 2, 4), return_indices=True)),
    "max_unpool_2d": (one((2, 3, 8, 6)), lambda x: pool_unpool(x, ([2, 2], [2, 2]), (9, 7))),
    "bn_train_relu_2d": bn((3, 4, 5, 6), "relu", True),
    "bn_train_gelu_3d": bn((2, 3, 4, 3, 5), "gelu", True, affine=False, tracked=False),
    "bn_eval_silu_1d": bn((2, 3, 7), "silu", False),
    "bn_train_leaky_4d": bn((2, 2, 3, 2, 3, 4), "leaky_relu", True),
    "bn_train_gelu_tanh_2d": bn((4, 3, 33, 40), "gelu_tanh", True),
    "conv_2d_native": conv((2, 3, 7, 6), (4, 3, 3, 2), stride=(2, 1), padding=1),
    "conv_3d_reflect": conv((1, 2, 5, 4, 6), (3, 2, 3, 3, 2), padding_mode="reflect",
                            padding=(1, 1, 0)),
    "conv_4d_groups_relu": conv((2, 4, 4, 3, 5, 4), (6, 2, 2, 3, 1, 3), "relu", groups=2,
                                stride=(1, 2, 1, 1), padding=(1, 0, 0, 1), dilation=(2, 1, 1, 1)),
    "conv_4d_circular_gelu": conv((1, 3, 4, 5, 3, 4), (2, 3, 3, 2, 2, 3), "gelu",
                                  padding_mode="circular", padding=(1, 1, 1, 1)),
    "conv_5d_silu": conv((1, 2, 3, 4, 3, 3, 4), (3, 2, 2, 2, 1, 2, 3), "silu", padding=1),
    "conv_5d_replicate_leaky": conv((2, 1, 3, 3, 4, 2, 3), (2, 1, 2, 1, 3, 2, 2), "leaky_relu",
                                    padding_mode="replicate", padding=(0, 1, 1, 1, 0)),
    "conv_transpose_4d": conv_transpose((2, 4, 3, 2, 3, 2), (4, 1, 2, 3, 1, 2), stride=(2, 1, 1, 2),
                                        padding=(1, 0, 0, 1), output_padding=(1, 0, 0, 0),
                                        groups=2, dilation=(1, 1, 2, 1)),
    "conv_transpose_5d": conv_transpose((1, 2, 2, 3, 2, 2, 3), (2, 3, 2, 2, 1, 2, 2),
                                        stride=2, padding=1),
    "unfold_3d": (one((2, 3, 5, 6, 4)), lambda x: ndops.unfold_nd(x, (2, 3, 2), dilation=(1, 2, 1),
                                                                  padding=1, stride=(2, 1, 1))),
    "fold_4d": (one((2, 3 * 4, 24)), lambda x: ndops.fold_nd(
        x, (3, 4, 3, 5), (2, 2, 1, 1), padding=(0, 1, 0, 1), stride=(2, 2, 2, 2))),
}


def run(fn, inputs):
    """Output (values of a (values, indices) pair), indices or None, and the input grads."""
    inputs = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    with ndops.backend("ext"):
        out = fn(*inputs)
        indices = None
        if isinstance(out, tuple):
            out, indices = out
        grad_out = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
        differentiable = [t for t in inputs if t.requires_grad]
        grads = torch.autograd.grad(out, differentiable, grad_out.to(out), allow_unused=True)
    return out, indices, grads


def compare(cpu, cuda, dtype):
    tol = TOLERANCE[dtype]
    out, indices, grads = cuda
    torch.testing.assert_close(out.cpu(), cpu[0], rtol=tol, atol=tol)
    if indices is not None:
        torch.testing.assert_close(indices.cpu(), cpu[1], rtol=0, atol=0)
    for g_cuda, g_cpu in zip(grads, cpu[2]):
        if g_cpu is not None:
            torch.testing.assert_close(g_cuda.cpu(), g_cpu, rtol=tol, atol=tol)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_cpu(case, dtype):
    make, fn = CASES[case]
    inputs = make()
    inputs[0] = inputs[0].to(dtype)
    if dtype != torch.float64:  # parameters in the input's dtype (or float32 for half types)
        inputs[1:] = [t.to(torch.float32) for t in inputs[1:]]
    compare(run(fn, inputs), run(fn, [t.cuda() for t in inputs]), dtype)


@needs_gpu
@pytest.mark.parametrize("case", list(CASES))
def test_non_contiguous(case):
    make, fn = CASES[case]
    inputs = [t.float() for t in make()]
    x = inputs[0]
    # the same values, stored with the last two dims swapped (and a stride-2 batch)
    wide = torch.zeros(x.shape[0] * 2, *x.shape[1:-2], x.shape[-1], x.shape[-2])
    wide[::2] = x.transpose(-1, -2)
    strided = [t.cuda() for t in inputs]
    strided[0] = wide.cuda()[::2].transpose(-1, -2)
    assert not strided[0].is_contiguous()
    compare(run(fn, inputs), run(fn, strided), torch.float32)


@needs_gpu
@pytest.mark.parametrize("case", list(CASES))
def test_zero_batch(case):
    make, fn = CASES[case]
    inputs = make()
    inputs[0] = inputs[0][:0]
    cpu, cuda = run(fn, inputs), run(fn, [t.cuda() for t in inputs])
    assert cuda[0].shape == cpu[0].shape
    compare(cpu, cuda, torch.float64)


@needs_gpu
@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck(case):
    make, fn = CASES[case]
    inputs = [t.cuda().requires_grad_() for t in make()]

    def values(*args):
        with ndops.backend("ext"):
            out = fn(*args)
        return out[0] if isinstance(out, tuple) else out
    assert torch.autograd.gradcheck(values, inputs, fast_mode=True)


# ---- opcheck on the CPU kernels' samples, moved to the GPU -----------------------------------

OPCHECK = [(family, op, i) for family in FAMILIES for op, samples in SAMPLES[family].items()
           for i in range(len(samples))]


@needs_gpu
@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("family,op,index", OPCHECK, ids=[f"{op}-{i}" for _, op, i in OPCHECK])
def test_opcheck_cuda(family, op, index, requires_grad):
    args = sample_arguments(SAMPLES[family][op][index], requires_grad, device="cuda")
    torch.library.opcheck(getattr(torch.ops.ndops, op).default, args)


# ---- index spaces past 2^31 elements ---------------------------------------------------------

BIG = 2**31 + 70


@pytest.fixture
def big_memory():
    if not (_ext.cuda_build_version() and torch.cuda.is_available()):
        pytest.skip("needs a GPU and an extension built with CUDA")
    if torch.cuda.get_device_properties(0).total_memory < 60 * 2**30:
        pytest.skip("needs a GPU with 60 GiB")
    yield
    torch.cuda.empty_cache()


@pytest.mark.slow
def test_large_pad(big_memory):
    ops = torch.ops.ndops
    x = torch.randint(0, 100, (1, BIG - 8), dtype=torch.uint8, device="cuda")
    out = ops.pad_nd(x, [3, 5], "constant", 7.0)
    assert out.shape == (1, BIG)
    assert torch.equal(out[:, 3:-5], x) and (out[:, :3] == 7).all() and (out[:, -5:] == 7).all()
    del x, out
    grad = torch.randn(1, BIG, dtype=torch.float16, device="cuda")
    grad_input = ops._pad_nd_backward(grad, [1, BIG - 4], [2, 2], "reflect")
    # reflect: input coordinates 1 and n - 2 also receive the mirrored border values
    expected = grad[:, 2:-2].clone()
    expected[:, 1:3] += grad[:, 0:2].flip(-1)
    expected[:, -3:-1] += grad[:, -2:].flip(-1)
    torch.testing.assert_close(grad_input, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_large_pool(big_memory):
    ops = torch.ops.ndops
    x = torch.randn(1, 1, BIG, dtype=torch.float16, device="cuda")
    values, indices = ops.max_pool_nd(x, [2], [2], [0], [1], False, True)
    pairs = x.view(-1, 2)
    expected, which = pairs.max(dim=1)
    assert torch.equal(values.view(-1), expected)
    ties = pairs[:, 0] == pairs[:, 1]  # torch's rule: the first maximum
    expected_index = torch.arange(0, BIG, 2, device="cuda") + torch.where(ties, 0, which)
    assert torch.equal(indices.view(-1), expected_index)
    grad = ops._max_pool_nd_backward(torch.ones_like(values), indices, [1, 1, BIG])
    assert grad.sum().item() == values.numel() and grad.view(-1)[indices.view(-1)].eq(1).all()
    del grad, indices, which, expected
    averages = ops.avg_pool_nd(x, [2], [2], [0], False, True, None)
    torch.testing.assert_close(averages.view(-1), pairs.float().mean(dim=1).half())


@pytest.mark.slow
def test_large_unfold_fold(big_memory):
    ops = torch.ops.ndops
    x = torch.randn(1, 1, BIG // 2 + 1, dtype=torch.float16, device="cuda")
    columns = ops.unfold_nd(x, [2], [1], [0], [1])  # (1, 2, BIG // 2): past 2^31 elements
    assert columns.numel() > 2**31
    assert torch.equal(columns[0, 0], x[0, 0, :-1]) and torch.equal(columns[0, 1], x[0, 0, 1:])
    image = ops.fold_nd(columns, [BIG // 2 + 1], [2], [1], [0], [1])
    assert torch.equal(image[0, 0, [0, -1]], x[0, 0, [0, -1]])
    torch.testing.assert_close(image[0, 0, -1000:-1], 2 * x[0, 0, -1000:-1])


@pytest.mark.slow
def test_large_interpolate_and_batch_norm(big_memory):
    planes = torch.randint(0, 255, (BIG // 2, 1, 1), dtype=torch.uint8, device="cuda")
    out = torch.ops.ndops.interpolate_nd(planes, [2], None, "nearest", False, False)
    assert torch.equal(out[..., 0], planes[..., 0]) and torch.equal(out[..., 1], planes[..., 0])
    del planes, out
    x = torch.randn(1, 2, BIG // 2, dtype=torch.float16, device="cuda")
    y, mean, invstd, _, _ = torch.ops.ndops.batch_norm_act_nd(
        x, None, None, None, None, True, 0.1, 1e-5, "none", 0.0)
    for c in range(2):
        var, expected_mean = torch.var_mean(x[0, c].float(), correction=0)
        torch.testing.assert_close(mean[c], expected_mean, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(invstd[c], (var + 1e-5).rsqrt(), rtol=1e-4, atol=1e-4)
    tail = x[0, :, -1000:].float()
    expected_tail = (tail - mean[:, None]) * invstd[:, None]
    torch.testing.assert_close(y[0, :, -1000:].float(), expected_tail, rtol=1e-2, atol=1e-2)
