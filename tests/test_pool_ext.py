"""The compiled pooling kernels (torch.ops.ndops, csrc/cpu/pool*.cpp): ext against the
fallback at every N and against torch at N <= 3, over random arguments, forward, indices and
gradients; ties, NaNs and signed zeros; dtypes; layouts; double backward; the C++ checks.

(tests/test_pool.py, test_pool_adaptive.py and test_pool_errors.py run every backend, ext
included, against torch and the brute-force reference; this file adds what is specific to the
kernels.)"""
import random

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import ndops
from ndops._ext import has_ext_op
from helpers.pool import draw_window_case
from reference import pool as ref

pytestmark = pytest.mark.skipif(not has_ext_op("max_pool_nd"),
                                reason="compiled pooling kernels not built")
ops = torch.ops.ndops


def run(backend, fn, x, grad_out=None):
    """fn(x) on `backend` and, given grad_out, the gradient of the first output wrt x."""
    x = x.detach().requires_grad_(grad_out is not None)
    with ndops.backend(backend):
        out = fn(x)
    first = out[0] if isinstance(out, tuple) else out
    grad = torch.autograd.grad(first, x, grad_out)[0] if grad_out is not None else None
    return out, grad


def same_as_fallback(fn, x, *, exact, native=False):
    """ext equals the fallback (and torch when `native`), outputs and input gradients."""
    with ndops.backend("ext"):
        out = fn(x)
    first = out[0] if isinstance(out, tuple) else out
    grad_out = torch.randn_like(first) if x.is_floating_point() else None
    got, got_grad = run("ext", fn, x, grad_out)
    for backend in ["fallback"] + (["native"] if native else []):
        want, want_grad = run(backend, fn, x, grad_out)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            exact_here = exact or not g.is_floating_point()
            assert_close(g, w, equal_nan=True, **(dict(rtol=0, atol=0) if exact_here else {}))
        if grad_out is not None and x.dtype in (torch.float16, torch.bfloat16):
            # ext sums overlapping windows' grads in float, so judge it against float64
            _, want_grad = run(backend, fn, x.double(), grad_out.double())
            assert_close(got_grad.double(), want_grad, rtol=1e-2, atol=1e-2)
        elif grad_out is not None:
            assert_close(got_grad, want_grad)


# ---- random arguments: N = 1..5, ext vs fallback (and torch for N <= 3) ---------------------

@pytest.mark.parametrize("seed", range(30))
def test_max_pool_random(seed):
    rng = random.Random(seed)
    n = 1 + seed % 5
    sizes, k, s, p, d, ceil_mode = draw_window_case(rng, n, 9 if n <= 3 else 5).values()
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), *sizes, dtype=torch.float64)
    fn = lambda t: ndops.max_pool_nd(t, k, s, p, d, ceil_mode, return_indices=True)  # noqa
    same_as_fallback(fn, x, exact=True, native=n <= 3)


@pytest.mark.parametrize("seed", range(30))
def test_avg_pool_random(seed):
    rng = random.Random(100 + seed)
    n = 1 + seed % 5
    sizes, k, s, p, _, ceil_mode = draw_window_case(rng, n, 9 if n <= 3 else 5,
                                                   dilation=False).values()
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), *sizes, dtype=torch.float64)
    divisor = rng.choice([None, None, 3, -2])
    args = (k, s, p, ceil_mode, rng.random() < 0.5, divisor)
    native = n == 2 or (n == 3 and all(a >= b for a, b in zip(sizes, k))) or (
        n == 1 and divisor is None)
    same_as_fallback(lambda t: ndops.avg_pool_nd(t, *args), x, exact=False, native=native)


@pytest.mark.parametrize("seed", range(20))
def test_adaptive_random(seed):
    rng = random.Random(200 + seed)
    n = 1 + seed % 5
    sizes = [rng.randint(1, 9 if n <= 3 else 5) for _ in range(n)]
    out = [rng.choice([1, 2, 3, size, size + 2]) for size in sizes]
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), *sizes, dtype=torch.float64)
    same_as_fallback(lambda t: ndops.adaptive_avg_pool_nd(t, out), x, exact=False,
                     native=n <= 3)
    same_as_fallback(lambda t: ndops.adaptive_max_pool_nd(t, out, True), x, exact=True,
                     native=n <= 3)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_max_unpool_random(n):
    x = torch.randn(2, 3, *(6, 5, 4, 4, 3)[:n], dtype=torch.float64)
    values, indices = ndops.max_pool_nd(x, 2, return_indices=True)
    size = list(x.shape[2:])
    grad_out = torch.randn(x.shape, dtype=torch.float64)
    results = {}
    for backend in ndops.available_backends("max_unpool_nd", n):
        v = values.detach().requires_grad_()
        with ndops.backend(backend):
            out = ndops.max_unpool_nd(v, indices, 2, output_size=size)
        results[backend] = (out, torch.autograd.grad(out, v, grad_out)[0])
    for out, grad in results.values():
        assert_close(out, results["ext"][0], rtol=0, atol=0)
        assert_close(grad, results["ext"][1], rtol=0, atol=0)


# ---- max rule: ties, NaNs, signed zeros, all -inf; vectorized runs ---------------------------

@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_max_ties_nans_and_signed_zeros(n):
    """Integer-valued input (ties everywhere), zeros of both signs, several NaNs per window."""
    g = torch.Generator().manual_seed(n)
    sizes = {2: (9, 8), 3: (7, 6, 5), 4: (5, 5, 4, 4), 5: (4, 4, 3, 3, 3)}[n]
    x = torch.randint(-1, 2, (2, 3, *sizes), generator=g).double()
    x = torch.where(torch.rand(x.shape, generator=g) < 0.5, x, -x)  # half the zeros are -0.0
    flat = x.view(2, 3, -1)
    flat[0, 0, [3, 4, 11]] = float("nan")
    flat[1, 2, ::5] = float("nan")
    for k, s, p, d, ceil_mode in [(3, 2, 1, 1, True), (2, 1, 1, 2, False), (2, 2, 0, 1, False)]:
        expected = ref.max_pool(x, (k,) * n, (s,) * n, (p,) * n, (d,) * n, ceil_mode)
        for return_indices in (True, False):
            values, index = ops.max_pool_nd(x, [k] * n, [s] * n, [p] * n, [d] * n, ceil_mode,
                                            return_indices)
            assert_close(values, expected[0], equal_nan=True, rtol=0, atol=0)
            assert torch.equal(values.signbit(), expected[0].signbit())  # the same zero wins
            if return_indices:
                assert torch.equal(index, expected[1])
            else:
                assert index.numel() == 0


@pytest.mark.parametrize("n", [2, 3])
def test_signed_zero_ties_like_torch(n):
    x = torch.zeros(1, 1, *(4,) * n)
    x.view(-1)[torch.randperm(x.numel())[: x.numel() // 2]] = -0.0
    want = getattr(F, f"max_pool{n}d")(x, 2, 1, 1, return_indices=True)
    got = ops.max_pool_nd(x, [2] * n, [1] * n, [1] * n, [1] * n, False, True)
    assert torch.equal(got[1], want[1])
    assert torch.equal(got[0].signbit(), want[0].signbit())


def test_all_minus_inf_window_takes_first_element_in_range():
    x = torch.full((1, 2, 5, 5, 5, 5), float("-inf"))
    values, index = ops.max_pool_nd(x, [3] * 4, [2] * 4, [1] * 4, [2, 1, 1, 2], True, True)
    expected = ref.max_pool(x.double(), (3,) * 4, (2,) * 4, (1,) * 4, (2, 1, 1, 2), True)
    assert torch.equal(index, expected[1]) and (values == float("-inf")).all()


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_long_rows_exercise_vectorized_runs(stride):
    """Rows long enough for the vectorized loops (strides 1, 2 and a runtime one), with
    border windows on both sides."""
    x = torch.randint(0, 4, (2, 3, 5, 4, 70), dtype=torch.float32)
    k, p = [2, 3, 3], [1, 1, 1]
    for ceil_mode in (False, True):
        want = F.max_pool3d(x, k, stride, p, 1, ceil_mode, return_indices=True)
        with ndops.backend("ext"):
            got = ndops.max_pool_nd(x, k, stride, p, ceil_mode=ceil_mode, return_indices=True)
            avg = ndops.avg_pool_nd(x, k, stride, p, ceil_mode, False)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert_close(avg, F.avg_pool3d(x, k, stride, p, ceil_mode, False))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_windows_that_tile_long_rows(k, dtype):
    """Non-overlapping windows (stride = kernel = 2 or 3 along a long last dim) take the
    one-pass tiled loops: values, zero signs and indices on ties, signed zeros and NaNs, with
    and without indices, and the average's forward and backward."""
    g = torch.Generator().manual_seed(k)
    x = torch.randint(-1, 2, (2, 3, 4, 5, 7 * 8 * k + 1), generator=g).to(dtype)
    x = torch.where(torch.rand(x.shape, generator=g) < 0.5, x, -x)  # half the zeros are -0.0
    x.view(-1)[torch.randperm(x.numel(), generator=g)[:40]] = float("nan")
    expected = ref.max_pool(x.double(), (k,) * 3, (k,) * 3, (0,) * 3, (1,) * 3, False)
    for return_indices in (True, False):
        values, index = ops.max_pool_nd(x, [k] * 3, [k] * 3, [0] * 3, [1] * 3, False,
                                        return_indices)
        assert_close(values.double(), expected[0], equal_nan=True, rtol=0, atol=0)
        assert torch.equal(values.signbit(), expected[0].signbit())
        if return_indices:
            assert torch.equal(index, expected[1])
    same_as_fallback(lambda t: ndops.avg_pool_nd(t, k), x.nan_to_num(0.0), exact=False,
                     native=True)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_avg_backward_with_unread_elements(n):
    """Strides larger than the kernel leave input rows, columns and whole slabs that no window
    reads: the backward (written per input slab) must store zeros there."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(2, 3, *(7,) * n, dtype=torch.float64, generator=g)
    for k, s, p, ceil_mode in [(2, 3, 0, False), (1, 3, 0, True), (3, 4, 1, True)]:
        fn = lambda t: ndops.avg_pool_nd(t, k, s, p, ceil_mode, False)  # noqa: E731
        same_as_fallback(fn, x, exact=False, native=n <= 3)


@pytest.mark.parametrize("n", [2, 4])
def test_max_values_only_equals_indexed_values(n):
    """The values-only forward (no indices wanted) folds in another order than the indexed one:
    the same values and the same zeros, on ties everywhere."""
    g = torch.Generator().manual_seed(10 + n)
    x = torch.randint(-1, 2, (2, 3, *(9,) * n), generator=g).float()
    x = torch.where(torch.rand(x.shape, generator=g) < 0.5, x, -x)
    for k, s, p in [(2, 2, 0), (3, 1, 1), (3, 2, 1)]:
        with_index = ops.max_pool_nd(x, [k] * n, [s] * n, [p] * n, [1] * n, False, True)[0]
        values = ops.max_pool_nd(x, [k] * n, [s] * n, [p] * n, [1] * n, False, False)[0]
        assert torch.equal(values, with_index)
        assert torch.equal(values.signbit(), with_index.signbit())


# ---- dtypes and layouts ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_floating_dtypes(dtype):
    x = torch.randn(2, 3, 6, 5, 7, 4).to(dtype)
    window = ([3, 2, 2, 3], [2, 1, 2, 2], [1, 1, 0, 1], [1, 1, 1, 1], True)
    same_as_fallback(lambda t: ndops.max_pool_nd(t, *window, return_indices=True), x,
                     exact=True)
    args = ([3, 2, 2, 3], [2, 1, 2, 2], [1, 1, 0, 1], True, False, None)
    same_as_fallback(lambda t: ndops.avg_pool_nd(t, *args), x, exact=False)
    same_as_fallback(lambda t: ndops.adaptive_avg_pool_nd(t, [4, 3, 2, 3]), x, exact=False)
    same_as_fallback(lambda t: ndops.adaptive_max_pool_nd(t, [4, 3, 2, 3], True), x,
                     exact=True)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.int8])
def test_max_pool_integer_dtypes(dtype):
    x = torch.randint(0, 100, (2, 3, 5, 6, 4, 5)).to(dtype)
    same_as_fallback(lambda t: ndops.max_pool_nd(t, 2, 1, 1, return_indices=True), x,
                     exact=True)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_non_contiguous_and_channels_last(n):
    base = torch.randn(3, 4, *(9,) * n, dtype=torch.float64)
    views = [base.transpose(0, 1)[..., 1::2], base.movedim(1, -1).contiguous().movedim(-1, 1)]
    if n in (2, 3):
        fmt = torch.channels_last if n == 2 else torch.channels_last_3d
        views.append(base.contiguous(memory_format=fmt))
    for x in views:
        dense = x.contiguous()
        for fn in [lambda t: ndops.max_pool_nd(t, 3, 2, 1, return_indices=True),
                   lambda t: ndops.avg_pool_nd(t, 3, 2, 1, True, False),
                   lambda t: ndops.adaptive_avg_pool_nd(t, 4),
                   lambda t: ndops.adaptive_max_pool_nd(t, 4, True)]:
            with ndops.backend("ext"):
                assert_close(fn(x), fn(dense), rtol=0, atol=0)


@pytest.mark.parametrize("n", [1, 4])
def test_zero_batch(n):
    x = torch.randn(0, 3, *(6,) * n, requires_grad=True)
    with ndops.backend("ext"):
        values, index = ndops.max_pool_nd(x, 2, return_indices=True)
        avg = ndops.avg_pool_nd(x, 3, 2, 1)
        adaptive = ndops.adaptive_max_pool_nd(x, 2) + ndops.adaptive_avg_pool_nd(x, 2)
        unpooled = ndops.max_unpool_nd(values, index, 2)
    assert values.shape == index.shape == (0, 3, *(3,) * n) and avg.shape == values.shape
    assert adaptive.shape == (0, 3, *(2,) * n) and unpooled.shape == x.shape
    (values.sum() + avg.sum() + adaptive.sum() + unpooled.sum()).backward()
    assert x.grad.shape == x.shape


# ---- gradients -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gradcheck_and_gradgradcheck(n):
    size = (6, 5, 4, 3)[:n]
    x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
    values, index = ops.max_pool_nd(x.detach(), [2] * n, [2] * n, [0] * n, [1] * n, False, True)
    v = values.detach().requires_grad_()
    fns = [
        (lambda t: ops.max_pool_nd(t, [3] * n, [2] * n, [1] * n, [1] * n, True, True)[0], x),
        (lambda t: ops.max_pool_nd(t, [2] * n, [1] * n, [0] * n, [1] * n, False, False)[0], x),
        (lambda t: ops.avg_pool_nd(t, [3] * n, [2] * n, [1] * n, True, False, None), x),
        (lambda t: ops.adaptive_avg_pool_nd(t, [2] * n), x),
        (lambda t: ops.adaptive_max_pool_nd(t, [2] * n, False)[0], x),
        (lambda t: ops.max_unpool_nd(t, index, list(size)), v),
    ]
    for fn, arg in fns:
        assert torch.autograd.gradcheck(fn, (arg,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (arg,), fast_mode=True)


def test_grad_without_forward_indices_recomputes_them():
    """return_indices=False skips the indices; a backward through it still works."""
    x = torch.randn(2, 3, 5, 6, 4, 5, requires_grad=True)
    window = ([3, 2, 2, 2], [2, 2, 1, 2], [1, 0, 1, 1], [1, 1, 1, 1], True)
    values, index = ops.max_pool_nd(x, *window, False)
    assert index.numel() == 0
    grad = torch.randn_like(values)
    (got,) = torch.autograd.grad(values, x, grad)
    (want,) = torch.autograd.grad(ops.max_pool_nd(x, *window, True)[0], x, grad)
    assert_close(got, want, rtol=0, atol=0)


def test_backward_in_bfloat16_accumulates_in_float():
    """Overlapping windows send many grads to one element; bfloat16 sums them in float."""
    x = torch.zeros(1, 1, 8, 8, 8, 8, dtype=torch.bfloat16)
    x[..., 4, 4, 4, 4] = 1
    grad = torch.full((1, 1, 8, 8, 8, 8), 0.01, dtype=torch.bfloat16)
    values, index = ops.max_pool_nd(x, [5] * 4, [1] * 4, [2] * 4, [1] * 4, False, True)
    summed = ops._max_pool_nd_backward(grad, index, list(x.shape))
    assert summed[..., 4, 4, 4, 4].item() == pytest.approx(0.01 * 5 ** 4, rel=1e-2)


# ---- the C++ checks (direct op calls; ndops.functional checks first) ---------------------------

def test_kernel_argument_checks():
    x = torch.randn(2, 3, 6, 6)
    cases = [
        (lambda: ops.max_pool_nd(x, [2], [2], [0], [1], False), "kernel_size"),
        (lambda: ops.max_pool_nd(x, [2, 2], [0, 2], [0, 0], [1, 1], False), "stride"),
        (lambda: ops.max_pool_nd(x, [2, 2], [2, 2], [2, 0], [1, 1], False), "padding"),
        (lambda: ops.max_pool_nd(x, [7, 7], [1, 1], [0, 0], [1, 1], False), "empty"),
        (lambda: ops.max_pool_nd(torch.randn(1, 1, 2), [2], [1], [1], [3], False),
         "pools no input element"),
        (lambda: ops.avg_pool_nd(x, [2, 2], [2, 2], [0, 0], False, True, 0), "divisor"),
        (lambda: ops.max_pool_nd(torch.randn(3, 4), [2], [2], [0], [1], False), "input"),
        (lambda: ops.adaptive_avg_pool_nd(x, [2, -1]), "output_size"),
        (lambda: ops.max_unpool_nd(x, torch.full(x.shape, 99), [3, 3]), "out of range"),
        (lambda: ops.max_unpool_nd(x, torch.zeros(x.shape, dtype=torch.int32), [6, 6]),
         "int64"),
        (lambda: ops._max_pool_nd_backward(x, torch.full(x.shape, -1), [2, 3, 6, 6]),
         "out of range"),
        (lambda: ops._max_unpool_nd_backward(x, torch.full((2, 3, 2, 2), 40)), "out of range"),
        (lambda: ops._avg_pool_nd_backward(x, [2, 3, 6, 6], [2, 2], [2, 2], [0, 0], False, True,
                                           None), "grad_output"),
    ]
    for call, match in cases:
        with pytest.raises(RuntimeError, match=match):
            call()
