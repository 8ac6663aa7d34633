"""pad_nd on every backend: parity with torch.nn.functional.pad (N <= 3), the brute-force
reference (N = 4, 5), gradients, dtypes, layouts, torch.compile and argument errors."""
import random

import pytest
import torch
import torch.nn.functional as F

import ndops
from ndops.functional.pad import MODES
from reference import pad as ref

OP = "pad_nd"


def backends(n):
    return ndops.available_backends(OP, n)


def run(backend, x, pad, mode="constant", value=None, **kwargs):
    with ndops.backend(backend):
        return ndops.pad_nd(x, pad, mode, value, **kwargs)


def valid_pair(rng, mode, size):
    """A random (left, right) for one dim of ``size`` that torch handles correctly in ``mode``
    (negative pads included), with a non-empty output."""
    while True:
        left, right = rng.randint(-size, size + 1), rng.randint(-size, size + 1)
        cropped = size + min(left, 0) + min(right, 0)
        out = size + left + right
        ok = {"constant": cropped >= 0,
              "reflect": left < size and right < size,
              "replicate": True,
              "circular": max(left, right) <= cropped}[mode]
        if ok and out >= 1:
            return left, right


def random_case(rng, mode, n, batched=None):
    """(input shape, pad) with N = n padded dims, batched or not as torch allows."""
    batched = rng.random() < 0.7 if batched is None else batched
    spatial = [rng.randint(1, 5 if n < 4 else 3) for _ in range(n)]
    shape = ([rng.randint(1, 2)] if batched else []) + [rng.randint(1, 3)] + spatial
    pad = []
    for size in reversed(spatial):  # torch's layout: last dim first
        pad += valid_pair(rng, mode, size)
    return shape, pad


def forward_and_grad(fn, x, grad_out_seed=1):
    x = x.detach().requires_grad_(True)
    y = fn(x)
    g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(grad_out_seed))
    (gx,) = torch.autograd.grad(y, x, g)
    return y, gx, g


# ---- N <= 3: every backend equals torch ---------------------------------------------------

@pytest.mark.parametrize("backend", ndops.BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch(mode, backend):
    if backend not in backends(3):
        pytest.skip(f"{backend} not available")
    rng = random.Random(f"{mode}-{backend}")
    for _ in range(24):
        n = rng.randint(1, 3)
        shape, pad = random_case(rng, mode, n)
        x = torch.randn(shape, dtype=torch.float64)
        y, gx, g = forward_and_grad(lambda t: run(backend, t, pad, mode), x)
        y_torch = F.pad(x, pad, mode)
        (gx_torch,) = torch.autograd.grad(F.pad(x.requires_grad_(), pad, mode), x, g)
        torch.testing.assert_close(y, y_torch, msg=f"{shape} {pad}")
        torch.testing.assert_close(gx, gx_torch, msg=f"{shape} {pad}")


@pytest.mark.parametrize("backend", ndops.BACKENDS)
def test_constant_value_and_partial_dims_match_torch(backend):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    for pad in [(1, 2), (2, -1, -3, 1), (0, 1, 1, 0, 1, 1, -1, 2)]:
        n = len(pad) // 2
        if backend in backends(n):
            torch.testing.assert_close(run(backend, x, pad, value=-2.5),
                                       F.pad(x, pad, value=-2.5))


# ---- N = 4, 5: ext and fallback equal the brute-force reference ---------------------------

@pytest.mark.parametrize("backend", ["ext", "fallback"])
@pytest.mark.parametrize("n", [4, 5])
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference(mode, n, backend):
    if backend not in backends(n):
        pytest.skip(f"{backend} not available")
    rng = random.Random(f"{mode}-{n}")
    for _ in range(3):
        shape, pad = random_case(rng, mode, n)
        x = torch.randn(shape, dtype=torch.float64)
        value = 1.5 if mode == "constant" else None
        y, gx, g = forward_and_grad(lambda t: run(backend, t, pad, mode, value), x)
        torch.testing.assert_close(y, ref.pad(x, pad, mode, value or 0.0), msg=f"{shape} {pad}")
        torch.testing.assert_close(gx, ref.pad_backward(g, shape, pad, mode))


# ---- gradcheck and gradgradcheck -------------------------------------------------------------

# Per dim (left, right) with growth, crop and both; valid for every mode on a size-3 dim.
GRAD_PADS = [(1, 2), (2, -1), (-1, 1), (2, 0)]


@pytest.mark.parametrize("backend", ndops.BACKENDS)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode, n, backend):
    if backend not in backends(n):
        pytest.skip(f"{backend} not available at N={n}")
    pad = [p for pair in GRAD_PADS[:n] for p in pair]
    x = torch.randn(1, 2, *[3] * n, dtype=torch.float64, requires_grad=True)
    fn = lambda t: run(backend, t, pad, mode)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


# ---- dtypes, layouts, sizes -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", MODES)
def test_dtypes_on_ext(mode, dtype):
    if "ext" not in backends(2):
        pytest.skip("extension not built")
    for n, shape in [(2, (2, 3, 4, 5)), (4, (1, 2, 3, 2, 3, 4))]:
        pad = [1, 2, 2, -1, -1, 1, 2, 0][:2 * n]
        x = torch.randn(shape, dtype=torch.float64)
        y, gx, g = forward_and_grad(lambda t: run("ext", t, pad, mode), x.to(dtype))
        assert y.dtype == dtype and gx.dtype == dtype
        torch.testing.assert_close(y, ref.pad(x, pad, mode).to(dtype), rtol=0, atol=0)
        # The backward sums in float32 for reduced precision, so it is the rounded exact sum.
        expected = ref.pad_backward(g.double(), shape, pad, mode).to(dtype)
        torch.testing.assert_close(gx, expected)


@pytest.mark.parametrize("backend", ["ext", "fallback"])
def test_integer_bool_and_complex_inputs(backend):
    if backend not in backends(4):
        pytest.skip(f"{backend} not available")
    x = torch.randint(-9, 9, (1, 2, 3, 2, 3, 2))
    pad = [1, 0, 2, 1, -1, 1, 1, 1]
    torch.testing.assert_close(run(backend, x, pad, value=7), ref.pad(x, pad, value=7).long())
    for mode in ("reflect", "replicate", "circular"):
        torch.testing.assert_close(run(backend, x.int(), pad, mode),
                                   ref.pad(x, pad, mode).int())
        b = x > 0
        torch.testing.assert_close(run(backend, b, pad, mode), ref.pad(b, pad, mode) > 0)
        z = torch.randn(x.shape, dtype=torch.complex128)
        expected = torch.complex(ref.pad(z.real, pad, mode), ref.pad(z.imag, pad, mode))
        torch.testing.assert_close(run(backend, z, pad, mode), expected)


def test_bool_and_empty_channels_with_reflect_beyond_torch():
    # torch's reflect/replicate reject these; ndops routes them to ext/fallback instead.
    b = torch.rand(2, 3, 4, 5) > 0.5
    expected = F.pad(b.double(), (1, 2, 2, 1), "reflect") > 0.5
    assert torch.equal(ndops.pad_nd(b, (1, 2, 2, 1), "reflect"), expected)
    empty = ndops.pad_nd(torch.randn(2, 0, 4, 5), (1, 1, 1, 1), "replicate")
    assert empty.shape == (2, 0, 6, 7)
    x = torch.randn(2, 3, 5, requires_grad=True)
    y = ndops.pad_nd(x, (-3, -2), "reflect")
    assert y.shape == (2, 3, 0)
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("n", [2, 4])
def test_non_contiguous_input(n):
    base = torch.randn(2, 3, *[4] * n, dtype=torch.float64)
    # transposed, sliced (offset and gaps) and unbatched-from-a-channel-last-view inputs
    views = [base.transpose(-1, -2), base[..., 1:], base.movedim(1, -1)[..., 0]]
    pad = [1, 2, 2, -1, -1, 1, 2, 0][:2 * n]
    for mode in MODES:
        for backend in backends(n):
            for view in views:
                assert not view.is_contiguous()
                torch.testing.assert_close(run(backend, view, pad, mode),
                                           ref.pad(view, pad, mode))


@pytest.mark.parametrize("n", [2, 4])
def test_zero_size_batch(n):
    x = torch.randn(0, 2, *[3] * n, requires_grad=True)
    pad = [1, 2] * n
    for mode in MODES:
        for backend in backends(n):
            y = run(backend, x, pad, mode)
            assert y.shape == (0, 2, *[6] * n)
            y.sum().backward()
            assert x.grad.shape == x.shape


def test_unbatched_matches_batched():
    x = torch.randn(2, 3, 2, 3, 2)
    pad = [1, 1, 2, 0, 0, 1, 1, 2]
    for mode in MODES:
        for backend in backends(4):
            torch.testing.assert_close(run(backend, x, pad, mode),
                                       run(backend, x[None], pad, mode)[0])


def test_compile_through_ext_op():
    if "ext" not in backends(4):
        pytest.skip("extension not built")
    pad = [1, 1, 2, 0, 0, 1, 1, 1]

    def padded_twice(t):
        return torch.ops.ndops.pad_nd(t, pad, "reflect", 0.0) * 2

    # aot_eager runs dynamo, the fake kernels and AOT autograd without inductor's codegen time.
    fn = torch.compile(padded_twice, fullgraph=True, backend="aot_eager")
    x = torch.randn(1, 2, 3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    y = fn(x)
    y.sum().backward()
    torch.testing.assert_close(y, 2 * ref.pad(x, pad, "reflect"))
    torch.testing.assert_close(x.grad, ref.pad_backward(2 * torch.ones(y.shape), x.shape, pad,
                                                        "reflect"))


# ---- bad arguments: the same ValueError on every backend -------------------------------------

BAD = [  # (input shape, pad, mode, value, extra kwargs, match)
    ((1, 2, 5), (1, 1, 1), "constant", None, {}, "pad must have an even length"),
    ((2, 5), (1, 1, 1, 1, 1, 1), "constant", None, {}, "pad has 3"),
    ((1, 2, 5), (1.0, 1), "constant", None, {}, "pad must be a tuple of ints"),
    ((1, 2, 5), 2, "constant", None, {}, "pad must be a tuple of ints"),
    ((1, 2, 5), (1, 1), "wrap", None, {}, "mode must be one of"),
    ((1, 2, 5), (1, 1), "reflect", 1.0, {}, "value is only used by mode='constant'"),
    ((1, 2, 5), (1, 1), "constant", "1", {}, "value must be a real number"),
    ((1, 2, 5), (1, 1), "constant", None, {"spatial_dims": 2}, "spatial_dims=2 conflicts"),
    ((1, 2, 5), (-4, -2), "constant", None, {}, "negative pad crops more"),
    ((1, 2, 5), (5, 0), "reflect", None, {}, r"mode='reflect' needs each pad < .*pad \(5, 0\)"),
    ((1, 2, 5), (0, 6), "circular", None, {}, "mode='circular' needs each pad <="),
    ((1, 2, 5), (-2, 4), "circular", None, {}, "mode='circular' needs each pad <="),
    ((1, 2, 5), (-3, -3), "replicate", None, {}, "negative pad leaves the output with -1"),
    ((1, 2, 0), (1, 1), "replicate", None, {}, "cannot pad an empty dim"),
    ((1, 1, 2, 5), (1, 1), "reflect", None, {}, "must have rank 3 or 2"),
    ((5,), (1, 1), "circular", None, {}, "must have rank 3 or 2"),
    ((1, 2, 3, 3, 3, 3), (1, 1, 1, 1), "replicate", None, {}, "must have rank 4 or 3"),
    ((1, 2, 3, 3, 3, 3), (1, 1, 1, 1, 3, 1, 1, 1), "reflect", None, {}, r"pad \(3, 1\)"),
]


@pytest.mark.parametrize("shape,pad,mode,value,kwargs,match", BAD)
def test_bad_arguments(shape, pad, mode, value, kwargs, match):
    x = torch.randn(shape)
    n = len(pad) // 2 if isinstance(pad, tuple) and len(pad) >= 2 else 1
    for backend in backends(n):
        with pytest.raises(ValueError, match=match):
            run(backend, x, pad, mode, value, **kwargs)


def test_value_zero_with_reflect_is_accepted_like_torch():
    x = torch.randn(1, 2, 5)
    for backend in backends(1):
        torch.testing.assert_close(run(backend, x, (2, 1), "reflect", 0.0),
                                   F.pad(x, (2, 1), "reflect", 0.0))


def test_ext_op_checks_its_arguments():
    if "ext" not in backends(1):
        pytest.skip("extension not built")
    x = torch.randn(1, 2, 5)
    with pytest.raises(RuntimeError, match="even length"):
        torch.ops.ndops.pad_nd(x, [1, 1, 1], "constant", 0.0)
    with pytest.raises(RuntimeError, match="mode must be"):
        torch.ops.ndops.pad_nd(x, [1, 1], "wrap", 0.0)
    with pytest.raises(RuntimeError, match="reflect needs each pad"):
        torch.ops.ndops.pad_nd(x, [5, 0], "reflect", 0.0)
    with pytest.raises(RuntimeError, match="wrap around at most once"):
        torch.ops.ndops.pad_nd(x, [-2, 4], "circular", 0.0)
    with pytest.raises(RuntimeError, match="grad_output has shape"):
        torch.ops.ndops._pad_nd_backward(torch.randn(1, 2, 6), [1, 2, 5], [1, 1], "constant")
