"""max_pool_nd and avg_pool_nd: every backend against torch (N <= 3) and the brute-force
reference (N = 4, 5); the fallback's separable passes forced at N = 2, 3; ties and NaNs;
gradcheck; empty batch, non-contiguous and unbatched inputs; dtypes."""
import random

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import ndops
from ndops.fallback import pool as fallback
from helpers.pool import draw_window_case
from reference import pool as ref

from conftest import backends_for

NAN = float("nan")


def torch_avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """torch's avg pool at N <= 3; N = 1 runs as (1, W) 2-D so divisor_override works too."""
    n = x.dim() - 2
    if n == 1:
        return F.avg_pool2d(x.unsqueeze(-2), [1, *k], [1, *s], [0, *p], ceil_mode,
                            count_include_pad, divisor_override).squeeze(-2)
    return getattr(F, f"avg_pool{n}d")(x, k, s, p, ceil_mode, count_include_pad,
                                       divisor_override)


def grads(out, inputs, grad_out):
    return torch.autograd.grad(out, inputs, grad_out)


def check_max(x, case, expected, *, backends):
    """Values, indices and input gradients of every backend equal ``expected``'s."""
    args = (case["k"], case["s"], case["p"], case["d"], case["ceil_mode"])
    grad_out = torch.randn_like(expected[0])
    want_grad = grads(expected[0], x, grad_out)
    for backend in backends:
        with ndops.backend(backend):
            got, index = ndops.max_pool_nd(x, *args, return_indices=True)
            values_only = ndops.max_pool_nd(x, *args)
        assert_close(got, expected[0], rtol=0, atol=0, msg=backend)
        assert_close(values_only, expected[0], rtol=0, atol=0)
        assert torch.equal(index, expected[1]), backend
        assert_close(grads(got, x, grad_out), want_grad)
    n = x.dim() - 2
    for native_max_dims in range(1, min(n, 4)):  # forced separable passes (N = 2, 3: vs torch)
        got, index = fallback.max_pool_nd(x, *args, True, native_max_dims=native_max_dims)
        assert_close(got, expected[0], rtol=0, atol=0)
        assert torch.equal(index, expected[1])
        assert_close(grads(got, x, grad_out), want_grad)


def check_avg(x, args, expected, *, backends):
    grad_out = torch.randn_like(expected)
    want_grad = grads(expected, x, grad_out)
    for backend in backends:
        with ndops.backend(backend):
            got = ndops.avg_pool_nd(x, *args)
        assert_close(got, expected, msg=backend)
        assert_close(grads(got, x, grad_out), want_grad)
    for native_max_dims in range(1, min(x.dim() - 2, 4)):
        got = fallback.avg_pool_nd(x, *args, native_max_dims=native_max_dims)
        assert_close(got, expected)
        assert_close(grads(got, x, grad_out), want_grad)


# ---- N = 1..3 against torch -------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(30))
def test_max_pool_matches_torch(seed):
    rng = random.Random(seed)
    n = 1 + seed % 3
    case = draw_window_case(rng, n)
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), *case["sizes"], dtype=torch.float64,
                    requires_grad=True)
    expected = getattr(F, f"max_pool{n}d")(x, case["k"], case["s"], case["p"], case["d"],
                                           ceil_mode=case["ceil_mode"], return_indices=True)
    check_max(x, case, expected, backends=backends_for("max_pool_nd", n))


@pytest.mark.parametrize("seed", range(30))
def test_avg_pool_matches_torch(seed):
    rng = random.Random(1000 + seed)
    n = 1 + seed % 3
    case = draw_window_case(rng, n, dilation=False)
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), *case["sizes"], dtype=torch.float64,
                    requires_grad=True)
    divisor = rng.choice([None, None, 3, -2])
    args = (case["k"], case["s"], case["p"], case["ceil_mode"], rng.random() < 0.5, divisor)
    small_3d = n == 3 and any(size < kk for size, kk in zip(case["sizes"], case["k"]))
    # torch's avg_pool3d rejects inputs smaller than the kernel; avg_pool1d has no divisor
    expected = ref.avg_pool(x, *args) if small_3d else torch_avg_pool(x, *args)
    backends = backends_for("avg_pool_nd", n)
    if small_3d or (n == 1 and divisor is not None):
        with ndops.backend("native"), pytest.raises(RuntimeError, match="cannot run"):
            ndops.avg_pool_nd(x, *args)
        backends.remove("native")
    check_avg(x, args, expected, backends=backends)


@pytest.mark.parametrize("n", [2, 3])
def test_max_pool_ties_and_nans_match_torch(n):
    # Integer-valued inputs tie everywhere; NaNs, several per window, must win (the last one).
    x = torch.randint(0, 3, (2, 3) + (7, 6, 5)[:n]).double()
    for plane, positions in ((x[0, 0], [3]), (x[1, 2], [7, 9, 20])):
        plane.view(-1)[positions] = NAN
    x.requires_grad_()
    for k, s, p, d, ceil_mode in [(3, 2, 1, 1, True), (2, 1, 1, 2, False), (4, 3, 2, 1, True)]:
        case = dict(k=[k] * n, s=[s] * n, p=[p] * n, d=[d] * n, ceil_mode=ceil_mode)
        expected = getattr(F, f"max_pool{n}d")(x, k, s, p, d, ceil_mode, return_indices=True)
        for backend in backends_for("max_pool_nd", n):
            with ndops.backend(backend):
                got, index = ndops.max_pool_nd(x, k, s, p, d, ceil_mode, return_indices=True)
            assert_close(got, expected[0], equal_nan=True)
            assert torch.equal(index, expected[1])
        for native_max_dims in range(1, n):
            got, index = fallback.max_pool_nd(x, case["k"], case["s"], case["p"], case["d"],
                                              ceil_mode, True, native_max_dims=native_max_dims)
            assert_close(got, expected[0], equal_nan=True)
            assert torch.equal(index, expected[1])


def test_max_pool_all_minus_inf_window_picks_first_element():
    x = torch.full((1, 1, 4, 4, 4, 4), float("-inf"))
    values, index = ndops.max_pool_nd(x, 3, 1, 1, return_indices=True)
    expected = ref.max_pool(x.double(), (3,) * 4, (1,) * 4, (1,) * 4, (1,) * 4, False)
    assert torch.equal(index, expected[1]) and (values == float("-inf")).all()


# ---- N = 4, 5 against the brute-force reference -----------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_reference_agrees_with_torch(seed):
    """The reference's definitions reproduce torch at N <= 3, so they can judge N = 4, 5."""
    rng = random.Random(7000 + seed)
    n = 1 + seed % 3
    case = draw_window_case(rng, n)
    x = torch.randint(0, 3, (2, 2, *case["sizes"])).double()  # ties everywhere
    args = (case["k"], case["s"], case["p"], case["d"], case["ceil_mode"])
    want = getattr(F, f"max_pool{n}d")(x, *args, return_indices=True)
    got = ref.max_pool(x, *args)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    avg_args = (case["k"], case["s"], case["p"], case["ceil_mode"], seed % 2 == 0,
                [None, 3][seed % 3 == 0])
    if not (n == 3 and any(size < kk for size, kk in zip(case["sizes"], case["k"]))):
        assert_close(ref.avg_pool(x, *avg_args), torch_avg_pool(x, *avg_args))


@pytest.mark.parametrize("seed", range(6))
def test_max_pool_matches_reference_high_n(seed):
    rng = random.Random(2000 + seed)
    n = 4 + seed % 2
    case = draw_window_case(rng, n, max_size=5 if n == 4 else 3)
    x = torch.randn(1, 2, *case["sizes"], dtype=torch.float64, requires_grad=True)
    if seed == 0:  # ties and NaNs at high N too
        x = torch.randint(0, 2, x.shape).double()
        x[0, 1].view(-1)[[1, 5]] = NAN
        x.requires_grad_()
    expected = ref.max_pool(x, case["k"], case["s"], case["p"], case["d"], case["ceil_mode"])
    if seed == 0:
        for backend in backends_for("max_pool_nd", n):
            with ndops.backend(backend):
                got, index = ndops.max_pool_nd(x, case["k"], case["s"], case["p"], case["d"],
                                               case["ceil_mode"], True)
            assert_close(got, expected[0], equal_nan=True)
            assert torch.equal(index, expected[1])
    else:
        check_max(x, case, expected, backends=backends_for("max_pool_nd", n))


@pytest.mark.parametrize("seed", range(6))
def test_avg_pool_matches_reference_high_n(seed):
    rng = random.Random(3000 + seed)
    n = 4 + seed % 2
    case = draw_window_case(rng, n, max_size=5 if n == 4 else 3, dilation=False)
    x = torch.randn(1, 2, *case["sizes"], dtype=torch.float64, requires_grad=True)
    args = (case["k"], case["s"], case["p"], case["ceil_mode"], seed % 3 != 0,
            [None, 5][seed % 4 == 1])
    check_avg(x, args, ref.avg_pool(x, *args), backends=backends_for("avg_pool_nd", n))


# ---- gradcheck --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gradcheck(n):
    x = torch.randn(1, 2, *(4 if n < 3 else 3,) * n, dtype=torch.float64, requires_grad=True)
    for backend in backends_for("max_pool_nd", n):
        with ndops.backend(backend):
            assert torch.autograd.gradcheck(
                lambda t: ndops.max_pool_nd(t, 2, 1, 1, 1, True), (x,), fast_mode=True)
            assert torch.autograd.gradcheck(
                lambda t: ndops.avg_pool_nd(t, 3, 2, 1, True, False), (x,), fast_mode=True)


# ---- shapes, layouts and dtypes ---------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 4])
def test_zero_batch(n):
    x = torch.randn(0, 3, *(5,) * n, requires_grad=True)
    for backend in backends_for("max_pool_nd", n):
        with ndops.backend(backend):
            values, index = ndops.max_pool_nd(x, 2, return_indices=True)
            avg = ndops.avg_pool_nd(x, 3, 2, 1)
        assert values.shape == index.shape == (0, 3, *(2,) * n)
        assert avg.shape == (0, 3, *(3,) * n)
        (values.sum() + avg.sum()).backward()
        assert x.grad.shape == x.shape


@pytest.mark.parametrize("n", [2, 3, 4])
def test_non_contiguous_input(n):
    base = torch.randn(3, 2, *(9,) * n, dtype=torch.float64)
    x = base.transpose(0, 1)[..., ::2]  # channels-first view, strided last dim
    assert not x.is_contiguous()
    for backend in backends_for("max_pool_nd", n):
        with ndops.backend(backend):
            got = ndops.max_pool_nd(x, 3, 2, 1, return_indices=True)
            want = ndops.max_pool_nd(x.contiguous(), 3, 2, 1, return_indices=True)
            assert_close(got, want)
            assert_close(ndops.avg_pool_nd(x, 2, 1, 1, False, False),
                         ndops.avg_pool_nd(x.contiguous(), 2, 1, 1, False, False))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unbatched_like_torch(n):
    x = torch.randn(3, *(6,) * n)
    want = getattr(F, f"max_pool{n}d")(x, 2, return_indices=True)
    for backend in backends_for("max_pool_nd", n):
        with ndops.backend(backend):
            got = ndops.max_pool_nd(x, (2,) * n, return_indices=True)
            assert_close(got, want)
            assert_close(ndops.max_pool_nd(x, (2,) * n, stride=()), want[0])  # torch: default
            assert_close(ndops.avg_pool_nd(x, 3, 1, 1, spatial_dims=n),
                         torch_avg_pool(x.unsqueeze(0), [3] * n, [1] * n, [1] * n, False,
                                        True, None)[0])


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_max_pool_integer_dtypes(n, dtype):
    x = torch.randint(0, 5, (2, 2, *(5,) * n)).to(dtype)
    want = ref.max_pool(x.double(), (3,) * n, (2,) * n, (1,) * n, (1,) * n, True)
    for backend in backends_for("max_pool_nd", n):
        with ndops.backend(backend):
            values, index = ndops.max_pool_nd(x, 3, 2, 1, 1, True, True)
            assert values.dtype == dtype and torch.equal(values.double(), want[0])
            assert torch.equal(index, want[1])
            assert torch.equal(ndops.max_pool_nd(x, 3, 2, 1, 1, True), values)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_reduced_precision_is_close_to_float32(n, dtype):
    x = torch.randn(2, 3, *(6,) * n)
    for backend in ndops.available_backends("avg_pool_nd", n):
        native_3d = backend == "native" and n == 3  # torch's avg_pool3d has no float16 on CPU
        with ndops.backend(backend):
            if not native_3d:
                got = ndops.avg_pool_nd(x.to(dtype), 3, 2, 1, True, False)
                assert got.dtype == dtype
                assert_close(got.float(), ndops.avg_pool_nd(x.to(dtype).float(), 3, 2, 1, True,
                                                             False), atol=1e-2, rtol=1e-2)
            values = ndops.max_pool_nd(x.to(dtype), 3, 2, 1)
            assert torch.equal(values, ndops.max_pool_nd(x.to(dtype).float(), 3, 2, 1).to(dtype))
    if n == 3:  # the default choice avoids the native op that cannot run this call
        assert ndops.avg_pool_nd(x.to(dtype), 2).dtype == dtype
        with ndops.backend("native"), pytest.raises(RuntimeError, match="cannot run"):
            ndops.avg_pool_nd(x.to(dtype), 2)


def test_avg_pool_3d_input_smaller_than_kernel_uses_fallback():
    x = torch.randn(1, 2, 2, 5, 5, dtype=torch.float64)
    want = ref.avg_pool(x, (3, 3, 3), (1, 1, 1), (1, 1, 1), False, True, None)
    assert_close(ndops.avg_pool_nd(x, 3, 1, 1), want)
    with ndops.backend("native"), pytest.raises(RuntimeError, match="cannot run"):
        ndops.avg_pool_nd(x, 3, 1, 1)
