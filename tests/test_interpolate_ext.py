"""interpolate_nd's compiled CPU kernels (csrc/cpu/interpolate.cpp): the ext backend against the
fallback (N = 1..5) and torch (N <= 3), forward and gradients, over randomized sizes, scale
factors, modes and align_corners; dtypes, layouts (non-contiguous, channels-last), zero batch,
gradcheck, thread-count independence and the errors of the op itself."""
import math
import random

import pytest
import torch
import torch.nn.functional as F

import ndops
from helpers.grads import forward_and_grad

F64 = torch.float64
OP = "interpolate_nd"
TORCH_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
SCALES = [0.4, 0.5, 0.6, 0.75, 1.0, 1.3, 1.5, 1.7, 2.0, 2.5, 3.0]

pytestmark = pytest.mark.skipif("ext" not in ndops.available_backends(OP, 4),
                                reason="the compiled interpolate_nd kernel is not built")


def draw_case(rng, n, max_in=6, modes=("nearest", "nearest-exact", "linear", "linear")):
    """(input shape, ndops kwargs, output size, scales setting the coordinates)."""
    while True:
        mode = rng.choice(modes)
        in_size = tuple(rng.randint(1, max_in) for _ in range(n))
        kwargs = {"mode": mode}
        if mode == "linear":
            kwargs["align_corners"] = rng.choice([None, False, True])
        if rng.random() < 0.4:
            out_size = tuple(rng.randint(1, max_in + 3) for _ in range(n))
            kwargs["size"] = out_size
            scales = None
        else:
            factors = tuple(rng.choice(SCALES) for _ in range(n))
            kwargs["scale_factor"] = factors if rng.random() < 0.7 else factors[0]
            kwargs["recompute_scale_factor"] = rng.choice([None, False, True])
            factors = factors if isinstance(kwargs["scale_factor"], tuple) else (factors[0],) * n
            out_size = tuple(math.floor(i * s) for i, s in zip(in_size, factors))
            scales = None if kwargs["recompute_scale_factor"] else factors
        if min(out_size) >= 1:
            shape = (rng.randint(1, 3), rng.randint(1, 3), *in_size)
            return shape, kwargs, out_size, scales


def torch_nearest_differs(kwargs, in_size, out_size, scales):
    """torch's nearest backward (and 2-D CPU forward) copy when out == in and halve when
    out == 2 * in whatever the scale factor; ndops (and torch's 1-D/3-D forward) use it."""
    return kwargs["mode"] == "nearest" and scales is not None and any(
        o in (i, 2 * i) and s not in (1.0, 2.0) for i, o, s in zip(in_size, out_size, scales))


def run(backend, x, kwargs, grad_output=None):
    with ndops.backend(backend):
        return forward_and_grad(lambda t: ndops.interpolate_nd(t, **kwargs), x, grad_output)


@pytest.mark.parametrize("seed", range(30))
def test_matches_fallback(seed):
    rng = random.Random(seed)
    n = 1 + seed % 5
    shape, kwargs, _, _ = draw_case(rng, n, max_in={4: 4, 5: 3}.get(n, 7))
    x = torch.randn(shape, dtype=F64)
    expected, grad, grad_output = run("fallback", x, kwargs)
    out, g, _ = run("ext", x, kwargs, grad_output)
    torch.testing.assert_close(out, expected, msg=f"forward, {kwargs}")
    torch.testing.assert_close(g, grad, msg=f"grad, {kwargs}")


@pytest.mark.parametrize("seed", range(24))
def test_matches_torch(seed):
    rng = random.Random(100 + seed)
    n = 1 + seed % 3
    while True:
        shape, kwargs, out_size, scales = draw_case(rng, n, max_in=9)
        if not torch_nearest_differs(kwargs, shape[2:], out_size, scales):
            break
    torch_kwargs = dict(kwargs, mode=TORCH_MODE[n] if kwargs["mode"] == "linear" else
                        kwargs["mode"])
    x = torch.randn(shape, dtype=F64)
    expected, grad, grad_output = forward_and_grad(lambda t: F.interpolate(t, **torch_kwargs), x)
    out, g, _ = run("ext", x, kwargs, grad_output)
    torch.testing.assert_close(out, expected, msg=f"forward, {kwargs}")
    torch.testing.assert_close(g, grad, msg=f"grad, {kwargs}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_dtypes(dtype, mode):
    """Low precision: the float64 result of the same values, within the dtype's rounding."""
    x = torch.randn(2, 3, 5, 4, 6, dtype=F64).to(dtype)
    kwargs = dict(mode=mode, scale_factor=(1.5, 2.0, 0.7))
    expected, grad, grad_output = run("fallback", x.double(), kwargs)
    out, g, _ = run("ext", x, kwargs, grad_output.to(dtype))
    assert out.dtype == g.dtype == dtype
    tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(g.double(), grad, rtol=tol, atol=4 * tol)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_uint8(mode):
    x = torch.randint(0, 255, (2, 3, 5, 4, 3), dtype=torch.uint8)
    with ndops.backend("ext"):
        out = ndops.interpolate_nd(x, size=(7, 9, 2), mode=mode)
    assert torch.equal(out, F.interpolate(x, size=(7, 9, 2), mode=mode))


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("mode", ["nearest-exact", "linear"])
def test_non_contiguous(n, mode):
    base = torch.randn(3, 2, *[5] * n, dtype=F64)
    x = base.transpose(0, 1)[..., 1:]
    assert not x.is_contiguous()
    kwargs = dict(mode=mode, scale_factor=1.5)
    expected, grad, grad_output = run("ext", x.contiguous(), kwargs)
    out, g, _ = run("ext", x, kwargs, grad_output.transpose(0, 1).contiguous().transpose(0, 1))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(g, grad, rtol=0, atol=0)
    torch.testing.assert_close(out, run("fallback", x, kwargs)[0])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_channels_last(n, mode):
    """A channels-last input gives a channels-last output, and a channels-last grad_output a
    channels-last grad_input; values as for the contiguous tensors."""
    x = torch.randn(2, *[4, 3, 5, 3][:n], 3, dtype=F64).movedim(-1, 1)
    kwargs = dict(mode=mode, scale_factor=(2.0, 0.6, 1.5, 1.0)[:n])
    expected, grad, grad_output = run("fallback", x.contiguous(), kwargs)
    grad_output_cl = grad_output.movedim(1, -1).contiguous().movedim(-1, 1)
    out, g, _ = run("ext", x, kwargs, grad_output_cl)
    assert out.movedim(1, -1).is_contiguous() and g.movedim(1, -1).is_contiguous()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(g, grad)
    _, g_from_contiguous, _ = run("ext", x, kwargs, grad_output)
    torch.testing.assert_close(g_from_contiguous, grad)


@pytest.mark.parametrize("n", [3, 4, 5])
@pytest.mark.parametrize("scale", [3.0, 5.5])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_many_readers(n, scale, mode):
    """Large upscales: more than four output rows read one input row, so the backward's
    gathered level takes its extra passes; N = 3 writes that level, N >= 4 adds it into the
    next outer one (N = 5 also flushes a level above)."""
    x = torch.randn(2, 2, *[3, 2, 4, 2, 3][:n], dtype=F64)
    kwargs = dict(mode=mode, scale_factor=scale)
    expected, grad, grad_output = run("fallback", x, kwargs)
    out, g, _ = run("ext", x, kwargs, grad_output)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(g, grad)


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("last", [8, 11])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("kwargs", [
    dict(mode="nearest"), dict(mode="nearest-exact"), dict(mode="linear"),
    dict(mode="linear", align_corners=True),
], ids=["nearest", "nearest-exact", "linear", "linear-corners"])
def test_upsample_2x_last_dim(n, last, dtype, kwargs):
    """A 2x upsample of a last dim of >= 8: the backward takes that dim's fixed stencil
    (interp_levels.h, Stencil) over many rows at once, but for the edge coordinates (and not at
    all with align_corners). An inf and a NaN in grad_output spread as in the fallback."""
    x = torch.randn(2, 3, *[3, 2, 2][:n - 1], last, dtype=dtype)
    kwargs = dict(kwargs, scale_factor=2.0)
    expected, grad, grad_output = run("fallback", x, kwargs)
    out, g, _ = run("ext", x, kwargs, grad_output)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(g, grad)
    if not kwargs.get("align_corners"):
        grad_output.view(-1)[[1, 2 * last + 4]] = torch.tensor([math.inf, math.nan], dtype=dtype)
        _, grad, _ = run("fallback", x, kwargs, grad_output)
        _, g, _ = run("ext", x, kwargs, grad_output)
        torch.testing.assert_close(g, grad, equal_nan=True)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_zero_batch(n, mode):
    x = torch.randn(0, 2, *[3] * n, requires_grad=True)
    with ndops.backend("ext"):
        out = ndops.interpolate_nd(x, scale_factor=2, mode=mode)
    assert out.shape == (0, 2, *[6] * n)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("kwargs", [
    dict(mode="nearest", scale_factor=1.7),
    dict(mode="nearest-exact", size=5),
    dict(mode="linear", scale_factor=(1.3, 0.6, 2.0, 1.5)),
    dict(mode="linear", size=(2, 5, 1, 4), align_corners=True),
], ids=["nearest", "nearest-exact", "linear", "linear-corners"])
def test_gradcheck(n, kwargs):
    kwargs = {k: v[:n] if isinstance(v, tuple) else v for k, v in kwargs.items()}
    x = torch.randn(1, 2, *[4, 3, 3, 3][:n], dtype=F64, requires_grad=True)
    with ndops.backend("ext"):
        assert torch.autograd.gradcheck(lambda t: ndops.interpolate_nd(t, **kwargs), (x,))


def test_gradgradcheck():
    x = torch.randn(1, 2, 3, 4, 3, dtype=F64, requires_grad=True)
    with ndops.backend("ext"):
        assert torch.autograd.gradgradcheck(
            lambda t: ndops.interpolate_nd(t, scale_factor=(1.5, 0.8, 2.0), mode="linear"), (x,))


@pytest.mark.parametrize("shape,scale", [
    ((1, 1, 2, 1024, 1024), (1.5, 2.0, 2.0)),  # a 48 MiB output (huge pages)
    ((1, 1, 9, 40, 30, 50), (2.0, 1.5, 2.0, 0.7)),
])
def test_threads_split_planes(shape, scale):
    """Tasks that split planes: equal to the fallback, and the same bits on 1 and 2 threads."""
    x = torch.randn(shape)
    kwargs = dict(mode="linear", scale_factor=scale)
    expected, grad, grad_output = run("fallback", x, kwargs)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out2, g2, _ = run("ext", x, kwargs, grad_output)
        torch.set_num_threads(1)
        out1, g1, _ = run("ext", x, kwargs, grad_output)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out2, expected)
    torch.testing.assert_close(g2, grad, rtol=1e-4, atol=1e-4)
    assert torch.equal(out1, out2) and torch.equal(g1, g2)


def test_antialias_runs_fallback():
    x = torch.randn(1, 2, 6, 5, 4, 3, dtype=F64)
    kwargs = dict(mode="linear", scale_factor=0.6, antialias=True)
    expected, grad, grad_output = run("fallback", x, kwargs)
    out, g, _ = run("ext", x, kwargs, grad_output)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(g, grad)


X = torch.randn(1, 2, 5, 5)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(size=3, scale_factor=2), ValueError, "exactly one of size or scale_factor"),
    (dict(size=(3, -1)), ValueError, "size must be > 0"),
    (dict(scale_factor=0.1), ValueError, "output would be empty"),
    (dict(size=3, mode="bicubic"), ValueError, "mode must be one of"),
    (dict(size=3, mode="nearest", align_corners=False), ValueError, "align_corners"),
])
def test_bad_arguments(kwargs, error, match):
    with ndops.backend("ext"), pytest.raises(error, match=match):
        ndops.interpolate_nd(X, **kwargs)


@pytest.mark.parametrize("args,match", [
    ((X, [3, 3], None, "cubic", False, False), "mode must be"),
    ((X, [3, 3], None, "linear", False, True), "antialias"),
    ((X, [3, 3, 3, 3, 3], None, "linear", False, False), "output_size must have"),
    ((X, [3, 0], None, "linear", False, False), "sizes must be > 0"),
    ((X, [3, 3], [2.0], "linear", False, False), "scales must have"),
    ((X.long(), [3, 3], None, "nearest", False, False), "must be float16"),
    ((X.to(torch.uint8), [3, 3], None, "linear", False, False), "must be float16"),
])
def test_op_errors(args, match):
    """The op's own checks (direct torch.ops calls skip the functional wrapper's)."""
    with pytest.raises(RuntimeError, match=match):
        torch.ops.ndops.interpolate_nd(*args)


def test_backward_op_errors():
    with pytest.raises(RuntimeError, match="grad_output has shape"):
        torch.ops.ndops._interpolate_nd_backward(torch.randn(1, 2, 4, 4), [3, 3], [1, 2, 5, 5],
                                                 None, "linear", False)
