"""The compiled unfold_nd / fold_nd kernels (torch.ops.ndops, csrc/cpu/fold.cpp): ext against
the fallback at every N, torch at N = 2 and the brute-force reference at N = 1, 3, 4, 5,
forward and gradients; dtypes; layouts; zero batch; gradcheck and gradgradcheck; the errors
of the functional API and the C++ checks.

(tests/test_fold.py runs every backend, ext included, on its random cases; this file adds
what is specific to the kernels: longer rows, both last-dim paths, dtypes, layouts.)"""
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import ndops
from ndops._ext import has_ext_op
from reference import fold as ref
from test_fold import COLS, FOLD_BAD, UNFOLD_BAD, X

pytestmark = pytest.mark.skipif(not has_ext_op("fold_nd"),
                                reason="compiled fold kernels not built")
ops = torch.ops.ndops
F64 = torch.float64


def draw_window(rng, n, max_extra):
    """(size, window as per-dim tuples) with at least one block in every dim."""
    k = tuple(rng.randint(1, 3) for _ in range(n))
    d = tuple(rng.choice([1, 1, 2]) for _ in range(n))
    p = tuple(rng.randint(0, 2) for _ in range(n))
    s = tuple(rng.choice([1, 1, 2, 3]) for _ in range(n))
    size = tuple(max(1, dd * (kk - 1) + 1 - 2 * pp) + rng.randint(0, max_extra)
                 for kk, dd, pp in zip(k, d, p))
    return size, dict(kernel_size=k, dilation=d, padding=p, stride=s)


def blocks_of(size, window):
    return [(i + 2 * p - d * (k - 1) - 1) // s + 1 for i, k, d, p, s in
            zip(size, window["kernel_size"], window["dilation"], window["padding"],
                window["stride"])]


def columns_like(batch, channels, size, window, dtype=F64):
    taps, length = math.prod(window["kernel_size"]), math.prod(blocks_of(size, window))
    return torch.randn(batch, channels * taps, length, dtype=dtype)


def value_and_grad(backend, fn, x, grad_out):
    x = x.detach().requires_grad_()
    with ndops.backend(backend):
        out = fn(x)
    return out, torch.autograd.grad(out, x, grad_out)[0]


def check_ext(fn, x, expected_fn=None, **tolerance):
    """ext equals the fallback (and expected_fn, given), forward and input gradient."""
    with ndops.backend("ext"):
        grad_out = torch.randn_like(fn(x))
    got = value_and_grad("ext", fn, x, grad_out)
    want = value_and_grad("fallback", fn, x, grad_out)
    for g, w in zip(got, want):
        assert_close(g, w, **tolerance)
    if expected_fn is not None:
        leaf = x.detach().requires_grad_()
        out = expected_fn(leaf)
        grad = (torch.autograd.grad(out, leaf, grad_out)[0] if out.requires_grad
                else torch.zeros_like(leaf))  # the reference, when every tap is padding
        assert_close(got[0], out, **tolerance)
        assert_close(got[1], grad, **tolerance)


# ---- random arguments: ext vs fallback at N = 1..5, torch at N = 2 ----------------------------

@pytest.mark.parametrize("seed", range(25))
def test_random_windows_match_fallback_and_torch(seed):
    rng = random.Random(seed)
    n = 1 + seed % 5
    size, window = draw_window(rng, n, {1: 40, 2: 20, 3: 7, 4: 4, 5: 2}[n])
    batch, channels = rng.randint(1, 2), rng.randint(1, 3)
    x = torch.randn(batch, channels, *size, dtype=F64)
    cols = columns_like(batch, channels, size, window)
    unfold = (lambda t: F.unfold(t, **window)) if n == 2 else None
    fold = (lambda t: F.fold(t, size, **window)) if n == 2 else None
    check_ext(lambda t: ndops.unfold_nd(t, **window), x, unfold)
    check_ext(lambda t: ndops.fold_nd(t, size, **window), cols, fold)


@pytest.mark.parametrize("n", [1, 3, 4, 5])
def test_matches_reference(n):
    rng = random.Random(50 + n)
    for _ in range(2):
        size, window = draw_window(rng, n, {1: 6, 3: 2, 4: 1, 5: 1}[n])
        x = torch.randn(2, 2, *size, dtype=F64)
        check_ext(lambda t: ndops.unfold_nd(t, **window), x, lambda t: ref.unfold(t, **window))
        cols = columns_like(2, 2, size, window)
        check_ext(lambda t: ndops.fold_nd(t, size, **window), cols,
                  lambda t: ref.fold(t, size, **window))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_long_rows_both_last_dim_paths(stride):
    """Rows long enough to vectorize; stride 1 copies / adds runs, others step through them;
    padding and dilation put taps off both ends of a row."""
    x = torch.randn(2, 3, 5, 70)
    window = dict(kernel_size=(2, 3), dilation=(1, 2), padding=(1, 2), stride=(1, stride))
    want = F.unfold(x, **window)
    with ndops.backend("ext"):
        got = ndops.unfold_nd(x, **window)
        folded = ndops.fold_nd(want, (5, 70), **window)
    assert torch.equal(got, want)
    # the same summation order as torch's col2im: equal to the last bit
    assert torch.equal(folded, F.fold(want, (5, 70), **window))


def test_padding_wider_than_the_image():
    """Whole rows and tiles of taps in the padding, blocks that read nothing."""
    x = torch.randn(2, 2, 2, 3, dtype=F64)
    window = dict(kernel_size=(3, 2), dilation=(4, 1), padding=(5, 4), stride=(2, 3))
    check_ext(lambda t: ndops.unfold_nd(t, **window), x, lambda t: F.unfold(t, **window))
    cols = columns_like(2, 2, (2, 3), window)
    check_ext(lambda t: ndops.fold_nd(t, (2, 3), **window), cols,
              lambda t: F.fold(t, (2, 3), **window))
    x3 = torch.randn(1, 2, 3, 1, 2, dtype=F64)
    check_ext(lambda t: ndops.unfold_nd(t, 2, padding=(3, 2, 4), dilation=3, stride=2), x3)


def test_single_threaded_result_is_identical():
    x = torch.randn(2, 3, 9, 8, 7, 6)
    cols = ops.unfold_nd(x, [3, 2, 3, 2], [1, 2, 1, 1], [1, 1, 0, 1], [1, 2, 1, 1])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.fold_nd(cols, [9, 8, 7, 6], [3, 2, 3, 2], [1, 2, 1, 1], [1, 1, 0, 1],
                          [1, 2, 1, 1])
    finally:
        torch.set_num_threads(threads)
    many = ops.fold_nd(cols, [9, 8, 7, 6], [3, 2, 3, 2], [1, 2, 1, 1], [1, 1, 0, 1], [1, 2, 1, 1])
    assert torch.equal(one, many)


# ---- dtypes and layouts ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16,
                                   torch.complex64])
@pytest.mark.parametrize("n", [2, 4])
def test_dtypes(dtype, n):
    size = (7, 9, 5, 6)[:n]
    window = dict(kernel_size=(3, 2, 2, 3)[:n], dilation=(1, 2, 1, 1)[:n],
                  padding=(1, 0, 1, 1)[:n], stride=(2, 1, 1, 2)[:n])
    x = torch.randn(2, 3, *size, dtype=dtype, requires_grad=True)
    cols = columns_like(2, 3, size, window, dtype).requires_grad_()
    with ndops.backend("ext"):
        unfolded = ndops.unfold_nd(x, **window)
        folded = ndops.fold_nd(cols, size, **window)
    (grad_x,) = torch.autograd.grad(unfolded, x, cols)  # = fold(cols)
    (grad_cols,) = torch.autograd.grad(folded, cols, x)  # = unfold(x)
    assert unfolded.dtype == folded.dtype == grad_x.dtype == grad_cols.dtype == dtype
    with ndops.backend("fallback"):  # a copy: exact in every dtype
        want_unfolded = ndops.unfold_nd(x.detach(), **window)
    assert torch.equal(unfolded, want_unfolded) and torch.equal(grad_cols, want_unfolded)
    # fold sums in float (double for float64): compare with a float64 sum rounded once
    wide = torch.complex128 if dtype.is_complex else F64
    with ndops.backend("fallback"):
        want_folded = ndops.fold_nd(cols.detach().to(wide), size, **window).to(dtype)
    tolerance = {} if dtype in (torch.float32, torch.complex64) else dict(rtol=1e-2, atol=1e-2)
    assert_close(folded, want_folded, **tolerance)
    assert_close(grad_x, want_folded, **tolerance)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_non_contiguous_and_channels_last(n):
    base = torch.randn(3, 4, *(8,) * n, dtype=F64)
    views = [base.transpose(0, 1)[..., 1::2], base.movedim(1, -1).contiguous().movedim(-1, 1)]
    if n in (2, 3):
        fmt = torch.channels_last if n == 2 else torch.channels_last_3d
        views.append(base.contiguous(memory_format=fmt))
    window = dict(kernel_size=3, dilation=1, padding=1, stride=2)
    for x in views:
        with ndops.backend("ext"):
            assert torch.equal(ndops.unfold_nd(x, **window),
                               ndops.unfold_nd(x.contiguous(), **window))
    cols = ops.unfold_nd(base, [3] * n, [1] * n, [1] * n, [2] * n)
    strided = torch.cat([cols, cols], 2)[..., ::2]
    for c in [cols.transpose(1, 2).contiguous().transpose(1, 2), strided]:
        assert not c.is_contiguous()
        with ndops.backend("ext"):
            assert torch.equal(ndops.fold_nd(c, (8,) * n, **window),
                               ndops.fold_nd(c.contiguous(), (8,) * n, **window))


def test_backward_with_expanded_grad():
    """out.sum().backward() hands each op a zero-stride grad."""
    x = torch.randn(2, 3, 6, 5, 4, dtype=F64, requires_grad=True)
    with ndops.backend("ext"):
        ndops.unfold_nd(x, 2, padding=1).sum().backward()
        counts = ndops.fold_nd(torch.ones(2, 24, 7 * 6 * 5, dtype=F64), (6, 5, 4), 2, padding=1)
    assert torch.equal(x.grad, counts)  # each element's grad: the number of blocks it is in


@pytest.mark.parametrize("n", [1, 4])
def test_zero_batch(n):
    x = torch.randn(0, 3, *(5,) * n, requires_grad=True)
    cols = torch.randn(0, 3 * 2**n, 4**n, requires_grad=True)
    with ndops.backend("ext"):
        out = ndops.unfold_nd(x, 2, spatial_dims=n)
        folded = ndops.fold_nd(cols, 5, 2, spatial_dims=n)
    assert out.shape == (0, 3 * 2**n, 4**n) and folded.shape == (0, 3, *(5,) * n)
    (out.sum() + folded.sum()).backward()
    assert x.grad.shape == x.shape and cols.grad.shape == cols.shape


# ---- gradients -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gradcheck_and_gradgradcheck(n):
    size = (5, 4, 3, 3)[:n]
    window = ([2, 3, 2, 2][:n], [1, 1, 2, 1][:n], [1, 1, 0, 1][:n], [2, 1, 1, 2][:n])
    x = torch.randn(1, 2, *size, dtype=F64, requires_grad=True)
    cols = ops.unfold_nd(x.detach(), *window).normal_().requires_grad_()
    for fn, arg in [(lambda t: ops.unfold_nd(t, *window), x),
                    (lambda t: ops.fold_nd(t, list(size), *window), cols)]:
        assert torch.autograd.gradcheck(fn, (arg,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (arg,), fast_mode=True)


# ---- errors: the functional API's (checked before the backend) and the C++ checks -------------

@pytest.mark.parametrize("kwargs,error,match", UNFOLD_BAD)
def test_unfold_bad_arguments(kwargs, error, match):
    with ndops.backend("ext"), pytest.raises(error, match=match):
        ndops.unfold_nd(X, **kwargs)


@pytest.mark.parametrize("kwargs,error,match", FOLD_BAD)
def test_fold_bad_arguments(kwargs, error, match):
    with ndops.backend("ext"), pytest.raises(error, match=match):
        ndops.fold_nd(COLS, **kwargs)


def test_kernel_argument_checks():
    x, cols = torch.randn(2, 3, 6, 6), torch.randn(2, 12, 25)
    window = ([2, 2], [1, 1], [0, 0], [1, 1])
    cases = [
        (lambda: ops.unfold_nd(torch.randn(3, 4), [2], [1], [0], [1]), "input"),
        (lambda: ops.unfold_nd(x, [2], [1], [0], [1]), "kernel_size"),
        (lambda: ops.unfold_nd(x, [2, 0], [1, 1], [0, 0], [1, 1]), "kernel_size"),
        (lambda: ops.unfold_nd(x, [2, 2], [1, 1], [0, -1], [1, 1]), "padding"),
        (lambda: ops.unfold_nd(x, [2, 2], [1, 1], [0, 0], [0, 1]), "stride"),
        (lambda: ops.unfold_nd(x, [2, 2], [0, 1], [0, 0], [1, 1]), "dilation"),
        (lambda: ops.unfold_nd(x, [7, 2], [1, 1], [0, 0], [1, 1]), "empty"),
        (lambda: ops.fold_nd(cols[0], [6, 6], *window), "input"),
        (lambda: ops.fold_nd(cols, [6, 6, 6], *window), "kernel_size"),
        (lambda: ops.fold_nd(cols, [6, 0], *window), "output_size"),
        (lambda: ops.fold_nd(torch.randn(2, 10, 25), [6, 6], *window), "multiple"),
        (lambda: ops.fold_nd(cols, [6, 7], *window), "sliding blocks"),
    ]
    for call, match in cases:
        with pytest.raises(RuntimeError, match=match):
            call()
