"""interpolate_nd: every backend against torch (N <= 3) and the brute-force reference (N = 4, 5),
forward and gradients; the fallback's separable passes against torch; edge cases and argument
errors. Mode "area" (which runs adaptive_avg_pool_nd) is tested last."""
import math
import random

import pytest
import torch
import torch.nn.functional as F

import ndops
from ndops.fallback import interpolate as fallback
from helpers.errors import raises_test
from helpers.grads import forward_and_grad
from reference import interpolate as ref

F64 = torch.float64
OP = "interpolate_nd"
TORCH_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}
SCALES = [0.5, 0.6, 0.75, 1.3, 1.5, 1.7, 2.0, 2.5, 3.0]


def _nearest_quirk(mode, in_size, out_size, scales):
    """Cases where torch's nearest kernels disagree among themselves: its backward (and its 2-D
    CPU forward for small outputs) copy when out == in and halve when out == 2 * in, while its
    1-D/3-D forward (ndops' rule) uses 1/scale_factor there."""
    if mode != "nearest" or scales is None:
        return False
    return any(o in (i, 2 * i) and s not in (1.0, 2.0)
               for i, o, s in zip(in_size, out_size, scales))


def _torch_antialias_correct(n, in_size, out_size, scales):
    """torch's antialias: N = 2 only; wrong forward on CPU for an output width of 1 (height
    changing), wrong backward for a dim keeping its size under a scale factor != 1."""
    if n != 2 or out_size[-1] == 1:
        return False
    return scales is None or all(i != o or s == 1 for i, o, s in zip(in_size, out_size, scales))


def draw_case(rng, n, modes=("nearest", "nearest-exact", "linear", "linear", "antialias"),
              max_in=6, torch_runs=False):
    """(x, ndops kwargs, torch kwargs, output size, scales used for the source coordinates).

    ``torch_runs``: only cases torch computes correctly (see _torch_antialias_correct).
    """
    while True:
        mode = rng.choice(modes)
        antialias = mode == "antialias"
        mode = "linear" if antialias else mode
        in_size = tuple(rng.randint(1, max_in) for _ in range(n))
        kwargs = {"mode": mode}
        if mode == "linear":
            kwargs["align_corners"] = rng.choice([None, False, True])
            kwargs["antialias"] = antialias
        if rng.random() < 0.4:
            size = tuple(rng.randint(1, max_in + 2) for _ in range(n))
            kwargs["size"] = size if rng.random() < 0.7 else size[0]
            out_size, scales = (_tuple(kwargs["size"], n), None)
        else:
            factor = tuple(rng.choice(SCALES) for _ in range(n))
            kwargs["scale_factor"] = factor if rng.random() < 0.7 else factor[0]
            kwargs["recompute_scale_factor"] = rng.choice([None, False, True])
            factor = _tuple(kwargs["scale_factor"], n)
            out_size = tuple(math.floor(i * s) for i, s in zip(in_size, factor))
            scales = None if kwargs["recompute_scale_factor"] else factor
        if min(out_size) < 1 or _nearest_quirk(mode, in_size, out_size, scales):
            continue
        if torch_runs and antialias and not _torch_antialias_correct(n, in_size, out_size,
                                                                     scales):
            continue
        torch_kwargs = dict(kwargs, mode=TORCH_LINEAR.get(n) if mode == "linear" else mode)
        x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), *in_size, dtype=F64)
        return x, kwargs, torch_kwargs, out_size, scales


def _tuple(value, n):
    return value if isinstance(value, tuple) else (value,) * n


def runnable_backends(n, x, kwargs, out_size, scales):
    """The backends able to run this call: ndops avoids torch's antialias where it is wrong."""
    native = not kwargs.get("antialias") or _torch_antialias_correct(n, x.shape[2:], out_size,
                                                                     scales)
    return [b for b in ndops.available_backends(OP, n) if b != "native" or native]


def check_every_backend(n, x, kwargs, out_size, scales, expected_fn):
    """Every backend able to run ``interpolate_nd(x, **kwargs)`` equals ``expected_fn(x)``,
    forward and gradient."""
    expected, grad, grad_output = forward_and_grad(expected_fn, x)
    for name in runnable_backends(n, x, kwargs, out_size, scales):
        with ndops.backend(name):
            out, g, _ = forward_and_grad(lambda t: ndops.interpolate_nd(t, **kwargs), x,
                                         grad_output)
        torch.testing.assert_close(out, expected, msg=f"{name}: forward, {kwargs}")
        torch.testing.assert_close(g, grad, msg=f"{name}: grad, {kwargs}")


@pytest.mark.parametrize("seed", range(36))
def test_matches_torch(seed):
    rng = random.Random(seed)
    n = 1 + seed % 3
    x, kwargs, torch_kwargs, out_size, scales = draw_case(rng, n, torch_runs=True)
    check_every_backend(n, x, kwargs, out_size, scales,
                        lambda t: F.interpolate(t, **torch_kwargs))


@pytest.mark.parametrize("seed", range(24))
def test_separable_passes_match_torch(seed):
    """The fallback resampling 1 or 2 dims per torch call equals torch's one 2-D/3-D call."""
    rng = random.Random(100 + seed)
    n = 2 + seed % 2
    x, _, torch_kwargs, out_size, scales = draw_case(rng, n, modes=("linear", "antialias"),
                                                     torch_runs=True)
    antialias = torch_kwargs["antialias"]
    align_corners = bool(torch_kwargs["align_corners"])
    expected, grad, grad_output = forward_and_grad(lambda t: F.interpolate(t, **torch_kwargs), x)
    for native_max_dims in range(1, n):
        out, g, _ = forward_and_grad(
            lambda t: fallback.interpolate_nd(t, out_size, scales, "linear", align_corners,
                                              antialias, native_max_dims=native_max_dims),
            x, grad_output)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(g, grad)


@pytest.mark.parametrize("seed", range(6))
def test_reference_matches_torch(seed):
    """The brute-force reference itself agrees with torch where torch exists."""
    rng = random.Random(200 + seed)
    n = 1 + seed % 3
    x, kwargs, torch_kwargs, out_size, scales = draw_case(rng, n, torch_runs=True)
    expected = F.interpolate(x, **torch_kwargs)
    actual = ref.interpolate(x, out_size, kwargs["mode"], scales,
                             bool(kwargs.get("align_corners")), kwargs.get("antialias", False))
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("seed", range(16))
def test_matches_reference(seed):
    """N = 4, 5 (and antialias at N = 1, 3): every backend against the brute-force reference."""
    rng = random.Random(300 + seed)
    n = [4, 5, 1, 3][seed % 4]
    modes = ("antialias",) if n in (1, 3) else ("nearest", "nearest-exact", "linear",
                                                "antialias")
    x, kwargs, _, out_size, scales = draw_case(rng, n, modes, max_in={4: 3, 5: 2}.get(n, 6))
    mode, align_corners = kwargs["mode"], bool(kwargs.get("align_corners"))
    check_every_backend(n, x, kwargs, out_size, scales,
                        lambda t: ref.interpolate(t, out_size, mode, scales, align_corners,
                                                  kwargs.get("antialias", False)))


@pytest.mark.parametrize("kwargs,out_size,scales", [
    (dict(size=(6, 1)), (6, 1), None),                       # torch: wrong forward
    (dict(scale_factor=(1.3, 0.5)), (3, 2), (1.3, 0.5)),      # torch: wrong backward
])
def test_antialias_where_torch_is_wrong(kwargs, out_size, scales):
    """At N = 2 ndops routes these to its fallback, which agrees with the reference."""
    x = torch.randn(2, 2, 3, 5, dtype=F64)
    expected, grad, grad_output = forward_and_grad(
        lambda t: ref.interpolate(t, out_size, "linear", scales, antialias=True), x)
    out, g, _ = forward_and_grad(
        lambda t: ndops.interpolate_nd(t, mode="bilinear", antialias=True, **kwargs), x,
        grad_output)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(g, grad)


@pytest.mark.parametrize("n,mode", [(2, "bilinear"), (3, "trilinear")])
def test_linear_aliases(n, mode):
    x = torch.randn(1, 2, *[3] * n, dtype=F64)
    expected = F.interpolate(x, scale_factor=1.5, mode=mode)
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            torch.testing.assert_close(ndops.interpolate_nd(x, scale_factor=1.5, mode=mode),
                                       expected)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("kwargs", [
    dict(mode="nearest", scale_factor=1.5),
    dict(mode="nearest-exact", size=3),
    dict(mode="linear", scale_factor=1.3),
    dict(mode="linear", size=3, align_corners=True),
    dict(mode="linear", scale_factor=0.7, antialias=True),
    dict(mode="area", size=2),
], ids=["nearest", "nearest-exact", "linear", "linear-corners", "antialias", "area"])
def test_gradcheck(n, kwargs):
    x = torch.randn(1, 2, *[4, 3, 3, 3][:n], dtype=F64, requires_grad=True)
    for name in ndops.available_backends(OP, n):
        if name == "native" and kwargs.get("antialias") and n != 2:
            continue
        with ndops.backend(name):
            assert torch.autograd.gradcheck(lambda t: ndops.interpolate_nd(t, **kwargs), (x,),
                                            fast_mode=True)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["nearest", "linear", "area"])
def test_zero_batch(n, mode):
    x = torch.randn(0, 2, *[3] * n, requires_grad=True)
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            out = ndops.interpolate_nd(x, scale_factor=2, mode=mode)
        assert out.shape == (0, 2, *[6] * n)
        out.sum().backward()


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("mode", ["nearest-exact", "linear", "area"])
def test_non_contiguous(n, mode):
    base = torch.randn(3, 2, *[5] * n, dtype=F64)
    x = base.transpose(0, 1)[..., 1:]
    assert not x.is_contiguous()
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            out = ndops.interpolate_nd(x, scale_factor=1.5, mode=mode)
            expected = ndops.interpolate_nd(x.contiguous(), scale_factor=1.5, mode=mode)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unbatched(n):
    x = torch.randn(2, *[4] * n, dtype=F64)
    expected = F.interpolate(x.unsqueeze(0), scale_factor=1.5, mode=TORCH_LINEAR[n])[0]
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            out = ndops.interpolate_nd(x, scale_factor=(1.5,) * n, mode="linear")
            out2 = ndops.interpolate_nd(x, scale_factor=1.5, mode="linear", spatial_dims=n)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(out2, expected)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_uint8_nearest(mode):
    x = torch.randint(0, 255, (2, 3, 5, 4), dtype=torch.uint8)
    expected = F.interpolate(x, size=(7, 9), mode=mode)
    for name in ndops.available_backends(OP, 2):
        with ndops.backend(name):
            assert torch.equal(ndops.interpolate_nd(x, size=(7, 9), mode=mode), expected)


def test_float32_matches_torch():
    x = torch.randn(2, 3, 6, 5, 4)
    for mode, kwargs in [("trilinear", dict(scale_factor=(1.3, 0.6, 2.5))),
                         ("nearest", dict(size=(7, 3, 9))),
                         ("nearest-exact", dict(scale_factor=(1.3, 0.6, 2.5)))]:
        expected = F.interpolate(x, mode=mode, **kwargs)
        with ndops.backend("fallback"):
            torch.testing.assert_close(ndops.interpolate_nd(x, mode=mode, **kwargs), expected)


X = torch.randn(1, 2, 5, 5)
BAD_INPUTS = [
    (dict(size=3, scale_factor=2), ValueError, "exactly one of size or scale_factor"),
    (dict(), ValueError, "exactly one of size or scale_factor"),
    (dict(size=(3, 3), spatial_dims=1), ValueError, "size"),
    (dict(size=(3, 3, 3, 3)), ValueError, r"spatial dims \(rank 6 or 5\)"),
    (dict(scale_factor=(2.0, 2.0, 2.0), spatial_dims=2), ValueError, "scale_factor"),
    (dict(size=0), ValueError, "size must be > 0"),
    (dict(size=(3, -1)), ValueError, "size must be > 0"),
    (dict(size=(3, 2.5)), ValueError, "size must be an int"),
    (dict(scale_factor=0.0), ValueError, "scale_factor must be finite and > 0"),
    (dict(scale_factor=(2.0, -1.0)), ValueError, "scale_factor must be finite and > 0"),
    (dict(scale_factor=float("inf")), ValueError, "scale_factor must be finite and > 0"),
    (dict(scale_factor=float("nan")), ValueError, "scale_factor must be finite and > 0"),
    (dict(scale_factor="2"), ValueError, "scale_factor must be a number"),
    (dict(scale_factor=0.1), ValueError, "output would be empty"),
    (dict(size=3, mode="bicubic"), ValueError, "mode must be one of"),
    (dict(size=3, mode="foo"), ValueError, "mode must be one of"),
    (dict(size=3, mode="trilinear"), ValueError, "mode='trilinear' needs N=3"),
    (dict(size=3, mode="nearest", align_corners=False), ValueError, "align_corners"),
    (dict(size=3, mode="area", align_corners=True), ValueError, "align_corners"),
    (dict(size=3, mode="nearest", antialias=True), ValueError, "antialias"),
    (dict(size=3, recompute_scale_factor=True), ValueError, "recompute_scale_factor"),
]


test_bad_arguments = raises_test(lambda kwargs: ndops.interpolate_nd(X, **kwargs), BAD_INPUTS)
test_bad_inputs = raises_test(lambda x_mode: ndops.interpolate_nd(x_mode[0], size=3,
                                                                  mode=x_mode[1]), [
    ((torch.ones(1, 2, 4, 4, dtype=torch.int64), "nearest"), RuntimeError, "dtype"),
    ((torch.ones(1, 2, 4, 4, dtype=torch.uint8), "linear"), RuntimeError, "dtype"),
    ((torch.ones(1, 2, 4, 4, dtype=torch.complex64), "nearest"), RuntimeError, "dtype"),
    ((torch.ones(1, 0, 4, 4), "nearest"), ValueError, "input must have channels"),
    ((torch.ones(1, 2, 0, 4), "linear"), ValueError, "input must have channels"),
    ((torch.ones(4, 4), "nearest"), ValueError, "input must have shape"),
])


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_every_backend_returns_a_contiguous_output_for_a_contiguous_input(mode):
    x = torch.randn(1, 2, 3, 4, 3, 2)
    for name in ndops.available_backends("interpolate_nd", 4):
        with ndops.backend(name):
            assert ndops.interpolate_nd(x, scale_factor=2, mode=mode).is_contiguous(), name


def test_forced_native_above_three_dims_raises():
    with ndops.backend("native"), pytest.raises(RuntimeError, match="cannot run"):
        ndops.interpolate_nd(torch.randn(1, 1, 2, 2, 2, 2), size=3)


# ---- mode "area" (adaptive average pooling, computed by adaptive_avg_pool_nd) -------------

@pytest.mark.parametrize("seed", range(9))
def test_area_matches_torch_and_reference(seed):
    rng = random.Random(400 + seed)
    n = 1 + seed % 5
    x, kwargs, torch_kwargs, out_size, scales = draw_case(rng, n, modes=("area",),
                                                          max_in=6 if n <= 3 else 3)
    check_every_backend(n, x, kwargs, out_size, scales,
                        (lambda t: F.interpolate(t, **torch_kwargs)) if n <= 3 else
                        (lambda t: ref.interpolate(t, out_size, "area")))
