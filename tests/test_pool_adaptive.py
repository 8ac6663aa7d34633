"""adaptive_avg_pool_nd, adaptive_max_pool_nd and max_unpool_nd: every backend against torch
(N <= 3) and the brute-force reference (N = 4, 5); forced separable passes; ties and NaNs;
gradcheck; empty batch, non-contiguous and unbatched inputs."""
import random

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import ndops
from ndops.fallback import adaptive_pool as fallback
from reference import pool as ref

from conftest import backends_for


def grads(out, inputs, grad_out):
    return torch.autograd.grad(out, inputs, grad_out)


def draw_adaptive_case(rng, n, max_size=7):
    sizes = [rng.randint(1, max_size) for _ in range(n)]
    output_size = [rng.choice([1, 2, 3, size, size + 2]) for size in sizes]
    return sizes, output_size


def check_adaptive(x, output_size, expected_avg, expected_max, *, n):
    grad_avg, grad_max = torch.randn_like(expected_avg), torch.randn_like(expected_max[0])
    want_avg = grads(expected_avg, x, grad_avg)
    want_max = grads(expected_max[0], x, grad_max)
    for backend in backends_for("adaptive_avg_pool_nd", n):
        with ndops.backend(backend):
            avg = ndops.adaptive_avg_pool_nd(x, output_size)
            values, index = ndops.adaptive_max_pool_nd(x, output_size, True)
            assert_close(ndops.adaptive_max_pool_nd(x, output_size), values)
        assert_close(avg, expected_avg, msg=backend)
        assert_close(grads(avg, x, grad_avg), want_avg)
        assert_close(values, expected_max[0], rtol=0, atol=0)
        assert torch.equal(index, expected_max[1]), backend
        assert_close(grads(values, x, grad_max), want_max)
    for native_max_dims in range(1, min(n, 4)):  # forced separable passes (N = 2, 3: vs torch)
        avg = fallback.adaptive_avg_pool_nd(x, output_size, native_max_dims=native_max_dims)
        assert_close(avg, expected_avg)
        assert_close(grads(avg, x, grad_avg), want_avg)
        values, index = fallback.adaptive_max_pool_nd(x, output_size, True,
                                                      native_max_dims=native_max_dims)
        assert_close(values, expected_max[0], rtol=0, atol=0)
        assert torch.equal(index, expected_max[1])
        assert_close(grads(values, x, grad_max), want_max)


@pytest.mark.parametrize("seed", range(24))
def test_adaptive_matches_torch(seed):
    rng = random.Random(4000 + seed)
    n = 1 + seed % 3
    sizes, output_size = draw_adaptive_case(rng, n)
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), *sizes, dtype=torch.float64,
                    requires_grad=True)
    expected_avg = getattr(F, f"adaptive_avg_pool{n}d")(x, output_size)
    expected_max = getattr(F, f"adaptive_max_pool{n}d")(x, output_size, True)
    if seed < 6:  # the reference's definitions reproduce torch, so they can judge N = 4, 5
        assert_close(ref.adaptive_avg_pool(x, output_size), expected_avg)
        assert torch.equal(ref.adaptive_max_pool(x, output_size)[1], expected_max[1])
    check_adaptive(x, output_size, expected_avg, expected_max, n=n)


@pytest.mark.parametrize("seed", range(6))
def test_adaptive_matches_reference_high_n(seed):
    rng = random.Random(5000 + seed)
    n = 4 + seed % 2
    sizes, output_size = draw_adaptive_case(rng, n, max_size=5 if n == 4 else 3)
    x = torch.randn(1, 2, *sizes, dtype=torch.float64, requires_grad=True)
    check_adaptive(x, output_size, ref.adaptive_avg_pool(x, output_size),
                   ref.adaptive_max_pool(x, output_size), n=n)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_adaptive_max_ties_nans_and_minus_inf(n):
    x = torch.randint(0, 3, (2, 3) + (7, 6, 5, 4)[:n]).double()
    x[0, 0].view(-1)[[3, 4]] = float("nan")
    x[1, 1] = float("-inf")
    for output_size in [(3, 4, 2, 3)[:n], (7, 6, 5, 4)[:n], (2, 1, 4, 1)[:n]]:
        expected = ref.adaptive_max_pool(x, output_size)
        if n <= 3:
            torch_result = getattr(F, f"adaptive_max_pool{n}d")(x, output_size, True)
            assert torch.equal(torch_result[1], expected[1])
        for backend in backends_for("adaptive_max_pool_nd", n):
            with ndops.backend(backend):
                values, index = ndops.adaptive_max_pool_nd(x, output_size, True)
            assert_close(values, expected[0], equal_nan=True)
            assert torch.equal(index, expected[1])
        for native_max_dims in range(1, min(n, 4)):
            values, index = fallback.adaptive_max_pool_nd(x, output_size, True,
                                                          native_max_dims=native_max_dims)
            assert_close(values, expected[0], equal_nan=True)
            assert torch.equal(index, expected[1])


def test_adaptive_output_size_none_and_zero_like_torch():
    x = torch.randn(2, 3, 5, 6, 4)
    assert_close(ndops.adaptive_avg_pool_nd(x, (None, 2, None)),
                 F.adaptive_avg_pool3d(x, (None, 2, None)))
    for backend in backends_for("adaptive_max_pool_nd", 3):
        with ndops.backend(backend):
            assert ndops.adaptive_max_pool_nd(x, (0, 2, 2)).shape == (2, 3, 0, 2, 2)
    with ndops.backend("fallback"):
        y = torch.randn(1, 2, 3, 4, 5, 2)
        assert ndops.adaptive_avg_pool_nd(y, (None, 0, 1, None)).shape == (1, 2, 3, 0, 1, 2)


# ---- max_unpool -------------------------------------------------------------------------------

def _unpool_case(rng, n, max_size):
    """A pooled tensor, its (unique) indices and unpool arguments from a max pool, float64."""
    while True:
        sizes = [rng.randint(2, max_size) for _ in range(n)]
        k = [rng.randint(1, 3) for _ in range(n)]
        s = [kk + rng.randint(0, 1) for kk in k]  # stride >= kernel: every index distinct
        p = [rng.randint(0, kk // 2) for kk in k]
        if all(ref.window_starts(*a, 1, False) for a in zip(sizes, k, s, p)):
            break
    x = torch.randn(rng.randint(1, 2), 2, *sizes, dtype=torch.float64)
    values, index = ref.max_pool(x, k, s, p, [1] * n, False)
    default = [(o - 1) * ss + kk - 2 * pp for o, kk, ss, pp in zip(values.shape[2:], k, s, p)]
    # the pooled input's own size where torch allows it (within one stride of the default)
    output_size = [size if dflt - ss < size < dflt + ss else dflt
                   for dflt, size, ss in zip(default, sizes, s)]
    return values.detach().requires_grad_(), index, k, s, p, output_size


@pytest.mark.parametrize("seed", range(24))
def test_max_unpool_matches_torch_and_reference(seed):
    rng = random.Random(6000 + seed)
    n = 1 + seed % 5
    values, index, k, s, p, output_size = _unpool_case(rng, n, 6 if n <= 3 else 3)
    if index.max() >= torch.tensor(output_size).prod():
        pytest.skip("drawn output size cannot hold the indices")
    if n <= 3:
        expected = getattr(F, f"max_unpool{n}d")(values, index, k, s, p, output_size)
    else:
        expected = ref.max_unpool(values, index, output_size)
    grad_out = torch.randn_like(expected)
    want = grads(expected, values, grad_out)
    full_size = list(values.shape[:2]) + output_size  # torch also takes (B, C, *spatial)
    for backend in backends_for("max_unpool_nd", n):
        with ndops.backend(backend):
            got = ndops.max_unpool_nd(values, index, k, s, p, output_size)
            assert_close(ndops.max_unpool_nd(values, index, k, s, p, full_size), got)
        assert_close(got, expected, rtol=0, atol=0)
        assert_close(grads(got, values, grad_out), want)


def test_max_unpool_inverts_max_pool_at_high_n():
    x = torch.randn(2, 3, 4, 6, 4, 5)
    values, index = ndops.max_pool_nd(x, 2, return_indices=True)
    restored = ndops.max_unpool_nd(values, index, 2, output_size=x.shape)
    kept = restored != 0
    assert torch.equal(restored[kept], x[kept]) and kept.sum() == values.numel()


def test_max_unpool_duplicate_indices_like_torch():
    values = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    index = torch.zeros(1, 2, 3, 3, dtype=torch.int64)
    expected = F.max_unpool2d(values, index, 2)
    grad_out = torch.randn_like(expected)
    with ndops.backend("fallback"):
        got = ndops.max_unpool_nd(values, index, 2)
    assert_close(got, expected)
    assert_close(grads(got, values, grad_out), grads(expected, values, grad_out))


# ---- gradcheck, shapes and layouts ------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gradcheck(n):
    x = torch.randn(1, 2, *(5 if n < 3 else 3,) * n, dtype=torch.float64, requires_grad=True)
    values, index = ndops.max_pool_nd(x.detach(), 2, return_indices=True)
    values.requires_grad_()
    unpool = lambda t: ndops.max_unpool_nd(t, index, 2, output_size=x.shape)  # noqa: E731
    for backend in backends_for("adaptive_avg_pool_nd", n):
        with ndops.backend(backend):
            for fn, arg in [(lambda t: ndops.adaptive_avg_pool_nd(t, 2), x),
                            (lambda t: ndops.adaptive_max_pool_nd(t, 2), x), (unpool, values)]:
                assert torch.autograd.gradcheck(fn, (arg,), fast_mode=True)


@pytest.mark.parametrize("n", [2, 4])
def test_zero_batch(n):
    x = torch.randn(0, 3, *(5,) * n, requires_grad=True)
    for backend in backends_for("adaptive_max_pool_nd", n):
        with ndops.backend(backend):
            values, index = ndops.adaptive_max_pool_nd(x, 2, True)
            avg = ndops.adaptive_avg_pool_nd(x, 3)
            unpooled = ndops.max_unpool_nd(values, index, 2, output_size=(5,) * n)
        assert values.shape == index.shape == (0, 3, *(2,) * n)
        assert avg.shape == (0, 3, *(3,) * n) and unpooled.shape == x.shape
        (values.sum() + avg.sum() + unpooled.sum()).backward()


def channels_major(t):
    """The same tensor stored channel-major: a non-contiguous view."""
    return t.transpose(0, 1).contiguous().transpose(0, 1)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_non_contiguous_input(n):
    x = torch.randn(3, 2, *(9,) * n, dtype=torch.float64).transpose(0, 1)[..., 1::2]
    values, index = ndops.max_pool_nd(x.contiguous(), 2, return_indices=True)
    for backend in backends_for("adaptive_avg_pool_nd", n):
        with ndops.backend(backend):
            assert_close(ndops.adaptive_avg_pool_nd(x, 3),
                         ndops.adaptive_avg_pool_nd(x.contiguous(), 3))
            assert_close(ndops.adaptive_max_pool_nd(x, 3, True),
                         ndops.adaptive_max_pool_nd(x.contiguous(), 3, True))
            assert_close(ndops.max_unpool_nd(channels_major(values), channels_major(index), 2,
                                             output_size=x.shape),
                         ndops.max_unpool_nd(values, index, 2, output_size=x.shape))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unbatched_like_torch(n):
    x = torch.randn(3, *(6,) * n)
    values, index = getattr(F, f"max_pool{n}d")(x, 2, return_indices=True)
    for backend in backends_for("adaptive_avg_pool_nd", n):
        with ndops.backend(backend):
            assert_close(ndops.adaptive_avg_pool_nd(x, (4,) * n),
                         getattr(F, f"adaptive_avg_pool{n}d")(x, 4))
            assert_close(ndops.adaptive_max_pool_nd(x, 4, True, spatial_dims=n),
                         getattr(F, f"adaptive_max_pool{n}d")(x, 4, True))
            assert_close(ndops.max_unpool_nd(values, index, (2,) * n),
                         getattr(F, f"max_unpool{n}d")(values, index, 2))
