"""unfold_nd and fold_nd: every backend against torch (N = 2) and the brute-force reference
(N = 1, 3, 4, 5), forward and gradients; adjointness; edge cases and argument errors."""
import math
import random

import pytest
import torch
import torch.nn.functional as F

import ndops
from helpers.errors import raises_test
from reference import fold as ref

F64 = torch.float64


def _per_dim(rng, n, low, high):
    """An int (all dims equal) or a tuple of n ints in [low, high]."""
    if rng.random() < 0.3:
        return rng.randint(low, high)
    return tuple(rng.randint(low, high) for _ in range(n))


def _tuple(value, n):
    return value if isinstance(value, tuple) else (value,) * n


def draw_case(rng, n, max_extra=3):
    """(spatial size, kwargs as tuples, kwargs as drawn): a window with at least one block."""
    drawn = dict(kernel_size=_per_dim(rng, n, 1, 3), dilation=_per_dim(rng, n, 1, 2),
                 padding=_per_dim(rng, n, 0, 2), stride=_per_dim(rng, n, 1, 3))
    if n != 2 and all(isinstance(v, int) for v in drawn.values()):
        drawn["kernel_size"] = _tuple(drawn["kernel_size"], n)  # fold needs one tuple for N
    window = {k: _tuple(v, n) for k, v in drawn.items()}
    spans = [d * (k - 1) + 1 for k, d in zip(window["kernel_size"], window["dilation"])]
    size = tuple(max(1, s - 2 * p) + rng.randint(0, max_extra)
                 for s, p in zip(spans, window["padding"]))
    return size, window, drawn


def columns_shape(batch, channels, size, window):
    blocks = [(i + 2 * p - d * (k - 1) - 1) // s + 1 for i, k, d, p, s in
              zip(size, window["kernel_size"], window["dilation"], window["padding"],
                  window["stride"])]
    return batch, channels * math.prod(window["kernel_size"]), math.prod(blocks)


def backends(op, n):
    """The backends that can run ``op`` at N = ``n``: torch's unfold/fold exist for N = 2 only."""
    return [b for b in ndops.available_backends(op, n) if b != "native" or n == 2]


def forward_and_grad(fn, x, grad_output=None):
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    if grad_output is None:
        grad_output = torch.randn(out.shape, dtype=out.dtype,
                                  generator=torch.Generator().manual_seed(1))
    if out.requires_grad:
        (grad,) = torch.autograd.grad(out, leaf, grad_output)
    else:  # the reference, when every tap falls in the padding
        grad = torch.zeros_like(leaf)
    return out, grad, grad_output


def check_all_backends(op, n, x, expected_fn, ndops_fn):
    expected, grad, grad_output = forward_and_grad(expected_fn, x)
    for name in backends(op, n):
        with ndops.backend(name):
            out, g, _ = forward_and_grad(ndops_fn, x, grad_output)
        torch.testing.assert_close(out, expected, msg=f"{op} {name}: forward")
        torch.testing.assert_close(g, grad, msg=f"{op} {name}: grad")


def _expected_unfold(n, window):
    if n == 2:
        return lambda t: F.unfold(t, **window)
    return lambda t: ref.unfold(t, **window)


def _expected_fold(n, size, window):
    if n == 2:
        return lambda t: F.fold(t, size, **window)
    return lambda t: ref.fold(t, size, **window)


@pytest.mark.parametrize("seed", range(30))
def test_unfold_and_fold_match_torch_or_reference(seed):
    """N = 2 against torch, N = 1, 3, 4, 5 against the reference; every backend."""
    rng = random.Random(seed)
    n = [2, 2, 1, 3, 4, 2, 1, 3, 2, 5][seed % 10]
    size, window, drawn = draw_case(rng, n, max_extra=3 if n <= 3 else 1)
    batch, channels = rng.randint(1, 2), rng.randint(1, 2 if n >= 4 else 3)
    x = torch.randn(batch, channels, *size, dtype=F64)
    check_all_backends("unfold_nd", n, x, _expected_unfold(n, window),
                       lambda t: ndops.unfold_nd(t, **drawn))
    cols = torch.randn(columns_shape(batch, channels, size, window), dtype=F64)
    check_all_backends("fold_nd", n, cols, _expected_fold(n, size, window),
                       lambda t: ndops.fold_nd(t, size, **drawn))


def test_reference_matches_torch():
    rng = random.Random(99)
    for _ in range(3):
        size, window, _ = draw_case(rng, 2)
        x = torch.randn(2, 2, *size, dtype=F64)
        torch.testing.assert_close(ref.unfold(x, **window), F.unfold(x, **window))
        cols = torch.randn(columns_shape(2, 2, size, window), dtype=F64)
        torch.testing.assert_close(ref.fold(cols, size, **window), F.fold(cols, size, **window))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_adjoint(n):
    """<unfold(x), y> == <x, fold(y)> for every backend."""
    rng = random.Random(10 + n)
    size, window, _ = draw_case(rng, n)
    x = torch.randn(2, 3, *size, dtype=F64)
    y = torch.randn(columns_shape(2, 3, size, window), dtype=F64)
    for name in backends("unfold_nd", n):
        with ndops.backend(name):
            lhs = (ndops.unfold_nd(x, **window) * y).sum()
            rhs = (x * ndops.fold_nd(y, size, **window)).sum()
        torch.testing.assert_close(lhs, rhs)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gradcheck(n):
    size, window = (4, 3, 3, 3)[:n], dict(kernel_size=2, dilation=1, padding=1, stride=2)
    x = torch.randn(1, 2, *size, dtype=F64, requires_grad=True)
    cols = torch.randn(columns_shape(1, 2, size, {k: _tuple(v, n) for k, v in window.items()}),
                       dtype=F64, requires_grad=True)
    for name in backends("unfold_nd", n):
        with ndops.backend(name):
            assert torch.autograd.gradcheck(
                lambda t: ndops.unfold_nd(t, **window, spatial_dims=n), (x,), fast_mode=True)
            assert torch.autograd.gradcheck(
                lambda t: ndops.fold_nd(t, size, **window), (cols,), fast_mode=True)


@pytest.mark.parametrize("n", [2, 4])
def test_zero_batch(n):
    x = torch.randn(0, 2, *[4] * n, requires_grad=True)
    cols = torch.randn(0, 2 * 2**n, 3**n, requires_grad=True)
    for name in backends("unfold_nd", n):
        with ndops.backend(name):
            out = ndops.unfold_nd(x, 2)
            folded = ndops.fold_nd(cols, (4,) * n, 2)
        assert out.shape == (0, 2 * 2**n, 3**n)
        assert folded.shape == (0, 2, *[4] * n)
        (out.sum() + folded.sum()).backward()


@pytest.mark.parametrize("n", [2, 3])
def test_non_contiguous(n):
    x = torch.randn(3, 2, *[6] * n, dtype=F64).transpose(0, 1)[..., 1:]
    cols = torch.randn(2 * 2**n, 3, 3**n, dtype=F64).transpose(0, 1)
    assert not x.is_contiguous() and not cols.is_contiguous()
    for name in backends("unfold_nd", n):
        with ndops.backend(name):
            torch.testing.assert_close(ndops.unfold_nd(x, 2, stride=2),
                                       ndops.unfold_nd(x.contiguous(), 2, stride=2))
            torch.testing.assert_close(ndops.fold_nd(cols, (6,) * n, 2, stride=2),
                                       ndops.fold_nd(cols.contiguous(), (6,) * n, 2, stride=2))


def test_unbatched_like_torch():
    x = torch.randn(3, 5, 6, dtype=F64)
    cols = F.unfold(x, (2, 3), padding=1)
    for name in backends("unfold_nd", 2):
        with ndops.backend(name):
            torch.testing.assert_close(ndops.unfold_nd(x, (2, 3), padding=1), cols)
            torch.testing.assert_close(ndops.unfold_nd(x, 2, spatial_dims=2), F.unfold(x, 2))
            torch.testing.assert_close(ndops.fold_nd(cols, (5, 6), (2, 3), padding=1),
                                       F.fold(cols, (5, 6), (2, 3), padding=1))


@pytest.mark.parametrize("n", [1, 3, 4])
def test_unbatched_any_n(n):
    x = torch.randn(2, *[4] * n, dtype=F64)
    cols = torch.randn(2 * 2**n, 3**n, dtype=F64)
    for name in backends("unfold_nd", n):
        with ndops.backend(name):
            torch.testing.assert_close(ndops.unfold_nd(x, 2, spatial_dims=n),
                                       ndops.unfold_nd(x[None], 2)[0])
            torch.testing.assert_close(ndops.fold_nd(cols, 4, 2, spatial_dims=n),
                                       ndops.fold_nd(cols[None], 4, 2, spatial_dims=n)[0])


X = torch.randn(1, 2, 5, 5)
UNFOLD_BAD = [
    (dict(kernel_size=0), ValueError, "kernel_size must be > 0"),
    (dict(kernel_size=2, stride=(1, 0)), ValueError, "stride must be > 0"),
    (dict(kernel_size=2, dilation=0), ValueError, "dilation must be > 0"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding must be >= 0"),
    (dict(kernel_size=6), ValueError, "sliding blocks would be empty"),
    (dict(kernel_size=(2, 2), stride=(1, 1, 1)), ValueError, "stride"),
    (dict(kernel_size=(2, 2, 2, 2)), ValueError, r"rank 6 or 5"),
    (dict(kernel_size=2.5), ValueError, "kernel_size must be an int"),
]


test_unfold_bad_arguments = raises_test(lambda kwargs: ndops.unfold_nd(X, **kwargs),
                                        UNFOLD_BAD)
test_unfold_bad_inputs = raises_test(lambda x: ndops.unfold_nd(x, 2), [
    (torch.ones(1, 2, 4, 4, dtype=torch.int64), RuntimeError, "floating-point"),
    (torch.ones(1, 0, 4, 4), ValueError, "input must have channels"),
    (torch.ones(1, 2, 0, 4), ValueError, "input must have channels"),
    (torch.ones(4, 4), ValueError, "input must have shape"),
])


COLS = torch.randn(1, 8, 16)  # C = 2, kernel (2, 2), output (5, 5): 4 * 4 blocks
FOLD_BAD = [
    (dict(output_size=5, kernel_size=2), ValueError, "pass spatial_dims=N"),
    (dict(output_size=(5, 5), kernel_size=(2, 2, 2)), ValueError, "conflicting"),
    (dict(output_size=5, kernel_size=2, spatial_dims=0), ValueError, "spatial_dims"),
    (dict(output_size=(5, 5), kernel_size=(0, 2)), ValueError, "kernel_size must be > 0"),
    (dict(output_size=(5, 5), kernel_size=2, stride=0), ValueError, "stride must be > 0"),
    (dict(output_size=(5, 5), kernel_size=2, dilation=(1, -1)), ValueError,
     "dilation must be > 0"),
    (dict(output_size=(5, 5), kernel_size=2, padding=-1), ValueError, "padding must be >= 0"),
    (dict(output_size=(0, 5), kernel_size=2), ValueError, "output_size must be > 0"),
    (dict(output_size=(1, 1), kernel_size=2), ValueError, "sliding blocks would be empty"),
    (dict(output_size=(5, 5), kernel_size=3), ValueError, "positive multiple of"),
    (dict(output_size=(6, 5), kernel_size=2), ValueError, r"number of sliding blocks 5 \* 4"),
    (dict(output_size=(5, 5), kernel_size=2, stride=2), ValueError, "L"),
]


test_fold_bad_arguments = raises_test(lambda kwargs: ndops.fold_nd(COLS, **kwargs), FOLD_BAD)
test_fold_bad_inputs = raises_test(lambda cols: ndops.fold_nd(cols, (5, 5), 2), [
    (torch.ones(1, 8, 16, dtype=torch.int64), RuntimeError, "floating-point"),
    (torch.ones(8), ValueError, "input must have shape"),
    (torch.ones(1, 1, 8, 16), ValueError, "input must have shape"),
    (torch.ones(1, 0, 16), ValueError, "positive multiple of"),
    (torch.ones(1, 8, 0), ValueError, "sliding blocks"),
])


def test_forced_native_beyond_two_dims_raises():
    with ndops.backend("native"), pytest.raises(RuntimeError, match="cannot run"):
        ndops.unfold_nd(torch.randn(1, 1, 4, 4, 4), 2)
