"""conv_bias_act_nd (functional) and ConvNd's activation= and padding_mode: every backend
against torch (F.pad with the mode, conv, activation; N <= 3) and the brute-force references
(N = 4, 5), forward and gradients; ConvNd against nn.Conv{1,2,3}d for every padding mode; the
compiled path pads in its gather (no padded copy); edge cases and argument errors."""
import pickle
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ndops
from ndops.nn import ConvNd
from helpers.grads import assert_all_close, forward_and_grads
from reference import conv as ref_conv
from reference import pad as ref_pad

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

F64 = torch.float64
OP = "conv_bias_act_nd"
MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS = {  # name: torch's function of (z, negative_slope)
    "none": lambda z, s: z,
    "relu": lambda z, s: F.relu(z),
    "leaky_relu": lambda z, s: F.leaky_relu(z, s),
    "silu": lambda z, s: F.silu(z),
    "gelu": lambda z, s: F.gelu(z),
    "gelu_tanh": lambda z, s: F.gelu(z, approximate="tanh"),
}


def bias_act_case(rng, n, max_extra=3):
    """Random (x, w, b, kwargs) for conv_bias_act_nd: every padding kind, mode, activation."""
    groups = rng.choice([1, 1, 2])
    kernel = [rng.randint(1, 3) for _ in range(n)]
    dilation = tuple(rng.randint(1, 2) for _ in range(n))
    padding = rng.choice(["same", "valid", "int", "int"])
    if padding == "int":
        padding = tuple(rng.randint(0, 2) for _ in range(n))
    stride = 1 if padding == "same" else tuple(rng.randint(1, 2) for _ in range(n))
    size = [max(d * (k - 1) + 1, 3) + rng.randint(0, max_extra) for k, d in zip(kernel, dilation)]
    x = torch.randn(rng.randint(1, 2), groups * rng.randint(1, 2), *size, dtype=F64)
    w = torch.randn(groups * rng.randint(1, 2), x.shape[1] // groups, *kernel, dtype=F64)
    b = torch.randn(w.shape[0], dtype=F64) if rng.random() < 0.7 else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                         activation=rng.choice(list(ACTIVATIONS)),
                         negative_slope=rng.choice([0.01, 0.2, -0.5]),
                         padding_mode=rng.choice(MODES))


def pad_pairs(x, w, padding, dilation):
    """(before, after) per spatial dim, torch's rule for 'same' included."""
    n = w.dim() - 2
    if padding == "valid":
        return [(0, 0)] * n
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(w.shape[2:], dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in padding]


def torch_bias_act(x, w, b, stride, padding, dilation, groups, activation, negative_slope,
                   padding_mode):
    """What nn.Conv{n}d(padding_mode=...) followed by the activation computes (N <= 3)."""
    n = w.dim() - 2
    if padding_mode != "zeros":
        pad = [v for p in reversed(pad_pairs(x, w, padding, dilation)) for v in p]
        x, padding = F.pad(x, pad, mode=padding_mode), 0
    z = getattr(F, f"conv{n}d")(x, w, b, stride, padding, dilation, groups)
    return ACTIVATIONS[activation](z, negative_slope)


def on(backend, fn=ndops.conv_bias_act_nd):
    def call(*args, **kwargs):
        with ndops.backend(backend):
            return fn(*args, **kwargs)
    return call


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_backend_matches_torch(n):
    rng = random.Random(f"bias act torch {n}")
    for _ in range(24):
        x, w, b, kwargs = bias_act_case(rng, n)
        expected, grad_output = forward_and_grads(torch_bias_act, x, w, b, kwargs)
        for backend in ndops.available_backends(OP, n):
            actual, _ = forward_and_grads(on(backend), x, w, b, kwargs, grad_output)
            assert_all_close(actual, expected, f"{backend} {tuple(x.shape)} {tuple(w.shape)} "
                                               f"{kwargs}")


def reference_bias_act(x, w, b, stride, padding, dilation, groups, activation, negative_slope,
                       padding_mode, grad_output):
    """Brute force: pad (tests/reference/pad.py), conv (tests/reference/conv.py), then the
    activation, whose derivative comes from torch autograd on the pre-activation."""
    pairs = pad_pairs(x, w, padding, dilation)
    pad = [v for p in reversed(pairs) for v in p]
    mode = "constant" if padding_mode == "zeros" else padding_mode
    padded = ref_pad.pad(x, pad, mode)
    z = ref_conv.conv_nd(padded, w, b, stride, 0, dilation, groups).requires_grad_()
    out = ACTIVATIONS[activation](z, negative_slope)
    (grad_z,) = torch.autograd.grad(out, z, grad_output)
    _, grad_padded, grad_w, grad_b = ref_conv.conv_nd(padded, w, b, stride, 0, dilation, groups,
                                                      grad_output=grad_z)
    grad_x = ref_pad.pad_backward(grad_padded, x.shape, pad, mode)
    return out.detach(), grad_x, grad_w, grad_b


@pytest.mark.parametrize("n", [4, 5])
def test_every_backend_matches_the_reference(n):
    rng = random.Random(f"bias act reference {n}")
    for _ in range(4 if n == 4 else 2):
        x, w, b, kwargs = bias_act_case(rng, n, max_extra=1 if n == 4 else 0)
        for backend in ndops.available_backends(OP, n):
            actual, grad_output = forward_and_grads(on(backend), x, w, b, kwargs)
            expected = reference_bias_act(x, w, b, **kwargs, grad_output=grad_output)
            assert_all_close(actual, expected, f"{backend} {tuple(x.shape)} {kwargs}")


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gradcheck(n):
    x = torch.randn(1, 2, *[3] * n, dtype=F64, requires_grad=True)
    w = torch.randn(2, 1, *[2] * n, dtype=F64, requires_grad=True)
    b = torch.randn(2, dtype=F64, requires_grad=True)
    kwargs = dict(stride=2, padding=1, groups=2, activation="silu", padding_mode="reflect")
    for backend in ndops.available_backends(OP, n):
        fn = on(backend)
        assert torch.autograd.gradcheck(lambda *t: fn(*t, **kwargs), (x, w, b),
                                        fast_mode=n >= 3)


@pytest.mark.parametrize("n", [2, 4])
def test_zero_batch_unbatched_and_non_contiguous(n):
    w = torch.randn(4, 2, *[3] * n, dtype=F64, requires_grad=True)
    b = torch.randn(4, dtype=F64, requires_grad=True)
    kwargs = dict(padding=1, groups=2, activation="gelu", padding_mode="circular")
    x = torch.randn(2, *[5] * n, 6, dtype=F64).movedim(-1, 1)[:, 1:5]  # channels-last, sliced
    expected = [on("fallback")(t, w, b, **kwargs) for t in (x.contiguous(), x[0].contiguous())]
    for backend in ndops.available_backends(OP, n):
        fn = on(backend)
        out = fn(torch.randn(0, 4, *[5] * n, dtype=F64), w, b, **kwargs)
        assert out.shape == (0, 4, *[5] * n)
        out.sum().backward()
        assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros(4))
        w.grad = b.grad = None
        torch.testing.assert_close(fn(x, w, b, **kwargs), expected[0])
        torch.testing.assert_close(fn(x[0], w, b, **kwargs), expected[1])  # unbatched


def _bad_calls(n):
    x, w = torch.randn(2, 4, *[4] * n), torch.randn(6, 4, *[3] * n)
    return [
        ({"activation": "tanh"}, ValueError, "activation must be one of"),
        ({"activation": None}, ValueError, "activation must be one of"),
        ({"activation": "leaky_relu", "negative_slope": "0.1"}, ValueError, "negative_slope"),
        ({"padding_mode": "constant"}, ValueError, "padding_mode must be one of"),
        ({"padding": 4, "padding_mode": "reflect"}, ValueError, "padding_mode='reflect' needs"),
        ({"padding": 5, "padding_mode": "circular"}, ValueError, "padding_mode='circular' "
         "needs"),
        ({"padding": -1}, ValueError, "padding must be >= 0"),
        ({"groups": 3}, ValueError, "groups=3 must divide"),
        ({"stride": 2, "padding": "same"}, ValueError, "padding='same' needs stride 1"),
    ], x, w


@pytest.mark.parametrize("n", [2, 4])
def test_bad_arguments_raise_for_every_backend(n):
    calls, x, w = _bad_calls(n)
    for kwargs, error, match in calls:
        for backend in ndops.available_backends(OP, n):
            with ndops.backend(backend), pytest.raises(error, match=f"ndops.{OP}: .*{match}"):
                ndops.conv_bias_act_nd(x, w, **kwargs)
    with pytest.raises(RuntimeError, match=f"ndops.{OP}: weight has dtype"):
        ndops.conv_bias_act_nd(x, w.double())


# ---- ndops.nn.ConvNd: activation= and padding_mode -------------------------------------

def _module_pair(n, padding_mode, seed):
    """An nn.Conv{n}d and the ConvNd with the same arguments and state."""
    rng = random.Random(seed)
    kernel = tuple(rng.randint(1, 4) for _ in range(n))
    kwargs = dict(stride=tuple(rng.randint(1, 2) for _ in range(n)),
                  padding=tuple(rng.randint(0, 2) for _ in range(n)),
                  dilation=tuple(rng.randint(1, 2) for _ in range(n)), groups=rng.choice([1, 2]),
                  bias=rng.random() < 0.7, padding_mode=padding_mode)
    if rng.random() < 0.3:
        kwargs.update(padding="same", stride=1)
    torch_module = getattr(nn, f"Conv{n}d")(4, 6, kernel, **kwargs).double()
    module = ConvNd(4, 6, kernel, **kwargs, spatial_dims=n).double()
    module.load_state_dict(torch_module.state_dict())
    return torch_module, module


def module_results(module, x, grad_output=None, backend=None):
    """The module's output and the gradients of sum(out * grad_output) for x and parameters."""
    x = x.detach().clone().requires_grad_()
    with ndops.backend(backend):
        out = module(x)
    if grad_output is None:
        grad_output = torch.randn(out.shape, dtype=out.dtype,
                                  generator=torch.Generator().manual_seed(1))
    return (out, *torch.autograd.grad(out, [x, *module.parameters()], grad_output)), grad_output


@pytest.mark.parametrize("padding_mode", MODES)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_module_matches_torch_for_every_padding_mode(n, padding_mode):
    for seed in range(3):
        torch_module, module = _module_pair(n, padding_mode, f"{n} {padding_mode} {seed}")
        x = torch.randn(2, 4, *[7] * n, dtype=F64)
        expected, grad_output = module_results(torch_module, x)
        for backend in ndops.available_backends(OP, n):
            actual, _ = module_results(module, x, grad_output, backend)
            assert_all_close(actual, expected, f"{backend} {module}")


def test_ext_pads_in_its_gather(monkeypatch):
    """ConvNd's padding modes on the compiled path never make a padded copy of the input."""
    if "ext" not in ndops.available_backends(OP, 4):
        pytest.skip("no compiled conv_bias_act_nd")

    def forbidden(*args, **kwargs):
        raise AssertionError("a padded copy was made")

    for target in ("torch.nn.functional.pad", "ndops.functional.pad_nd",
                   "ndops.fallback.pad.pad_nd"):
        monkeypatch.setattr(target, forbidden)
    for n, mode in [(4, "reflect"), (2, "circular"), (3, "replicate")]:
        module = ConvNd(3, 4, 3, padding=(1, 2, 1, 0)[:n], padding_mode=mode, spatial_dims=n,
                        activation="silu")
        x = torch.randn(2, 3, *[5] * n, requires_grad=True)
        with ndops.backend("ext"):
            module(x).sum().backward()
        assert x.grad.shape == x.shape


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "none"])
def test_conv_module_activation(activation):
    kwargs = dict(padding=(1, 0, 1, 1), stride=(1, 2, 1, 1), padding_mode="replicate")
    plain = ConvNd(3, 4, 3, **kwargs, spatial_dims=4).double()
    fused = ConvNd(3, 4, 3, **kwargs, spatial_dims=4, activation=activation,
                   negative_slope=0.2).double()
    fused.load_state_dict(plain.state_dict())
    assert list(fused.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 3, 5, 4, 5, 5, dtype=F64)
    for backend in ndops.available_backends(OP, 4):
        with ndops.backend(backend):
            torch.testing.assert_close(fused(x), ACTIVATIONS[activation](plain(x), 0.2))
    assert f"activation='{activation}'" in repr(fused)
    assert ("negative_slope=0.2" in repr(fused)) == (activation == "leaky_relu")


def test_conv_module_activation_arguments_and_pickling():
    assert ConvNd(2, 2, 3, spatial_dims=2, activation="none").activation is None
    with pytest.raises(ValueError, match="ndops.nn.ConvNd: activation must be None or one of"):
        ConvNd(2, 2, 3, spatial_dims=2, activation="tanh")
    module = ConvNd(2, 3, 3, padding=1, spatial_dims=2, activation="relu")
    clone = pickle.loads(pickle.dumps(module))
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(clone(x), module(x))
    state = module.__dict__.copy()
    del state["activation"], state["negative_slope"]  # pickled before activation= existed
    old = ConvNd.__new__(ConvNd)
    old.__setstate__(state)
    torch.testing.assert_close(old(x), F.conv2d(x, module.weight, module.bias, padding=1))
