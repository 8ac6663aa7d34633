"""JAX equivalents (optional: only when ``jax`` is installed; CPU only).

conv: ``jax.lax.conv_general_dilated`` with N spatial dims (precision HIGHEST); max / avg pool
without padding: ``jax.lax.reduce_window``; multilinear up-sampling: ``jax.image.resize``
("linear", half-pixel centres = torch's align_corners=False); batch norm + activation: its
formula in ``jax.numpy``; reflect padding: ``jnp.pad``. Every function is jitted; fwd+bwd is
one jitted ``jax.vjp`` call returning the output and the input gradients. Calls wait with
``block_until_ready``. The arrays are placed on JAX's CPU device (also where JAX has a GPU);
XLA picks its own thread count (torch's setting does not apply).
"""
import torch

from .plan import NotApplicable, Unavailable


def _jax():
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError as exc:
        raise Unavailable(f"jax is not installed ({exc})") from None
    return jax, jnp, lax


def _conv(case, jax, jnp, lax):
    p = case.params
    stride, padding = p.get("stride", 1), p.get("padding", 0)

    def conv(x, w, b):
        out = lax.conv_general_dilated(x, w, (stride,) * case.n, [(padding, padding)] * case.n,
                                       precision=lax.Precision.HIGHEST)
        return out + b.reshape((1, -1) + (1,) * case.n)
    return conv


def _pool(kind):
    def build(case, jax, jnp, lax):
        p = case.params
        if p.get("padding", 0):
            raise NotApplicable("jax")
        k = p["kernel_size"]
        s = p.get("stride") or k
        window, strides = (1, 1) + (k,) * case.n, (1, 1) + (s,) * case.n
        if kind == "max":
            return lambda x: lax.reduce_window(x, -jnp.inf, lax.max, window, strides, "VALID")
        return lambda x: lax.reduce_window(x, 0.0, lax.add, window, strides, "VALID") / k ** case.n
    return build


def _interpolate(case, jax, jnp, lax):
    if case.params["mode"] != "linear":
        raise NotApplicable("jax")
    factor = case.params["scale_factor"]

    def resize(x):
        shape = x.shape[:2] + tuple(int(s * factor) for s in x.shape[2:])
        return jax.image.resize(x, shape, method="linear")
    return resize


def _batch_norm_act(case, jax, jnp, lax):
    activation = case.params["activation"]
    if activation not in ("none", "relu"):
        raise NotApplicable("jax")
    axes = (0,) + tuple(range(2, case.n + 2))
    per_channel = (1, -1) + (1,) * case.n

    def batch_norm(x, weight, bias, running_mean, running_var):
        mean = x.mean(axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axes, keepdims=True)
        y = (x - mean) * lax.rsqrt(var + 1e-5) * weight.reshape(per_channel)
        y = y + bias.reshape(per_channel)
        return jnp.maximum(y, 0) if activation == "relu" else y
    return batch_norm


def _pad(case, jax, jnp, lax):
    widths = [(0, 0), (0, 0)] + [(1, 2)] * case.n
    return lambda x: jnp.pad(x, widths, mode=case.params["mode"])


BUILDERS = {"conv": _conv, "max_pool": _pool("max"), "avg_pool": _pool("avg"),
             "interpolate": _interpolate, "batch_norm_act": _batch_norm_act, "pad": _pad}


def build(case, tensors, grad_positions, grad_output, device):
    """``run()`` for one pass of the JAX version of ``case`` (see ``pass_runner``)."""
    if case.family not in BUILDERS:
        raise NotApplicable("jax")
    if torch.device(device).type != "cpu":
        raise Unavailable("the JAX rows run on the CPU only")
    jax, jnp, lax = _jax()
    fn = BUILDERS[case.family](case, jax, jnp, lax)
    try:
        cpu = jax.devices("cpu")[0]  # committed arrays: the jitted calls run on the CPU
    except RuntimeError as exc:  # e.g. JAX_PLATFORMS leaves the CPU out
        raise Unavailable(f"JAX has no CPU device ({exc})") from None
    arrays = [jax.device_put(t.detach().cpu().numpy(), cpu) for t in tensors]
    if grad_output is None:
        forward = jax.jit(fn)
        return lambda: (_done(forward(*arrays)),)

    def forward_backward(args, cotangent):
        def of_differentiable(*values):
            full = list(args)
            for i, value in zip(grad_positions, values):
                full[i] = value
            return fn(*full)
        out, vjp = jax.vjp(of_differentiable, *(args[i] for i in grad_positions))
        return (out, *vjp(cotangent))
    jitted = jax.jit(forward_backward)
    cotangent = jax.device_put(grad_output.detach().cpu().numpy(), cpu)
    return lambda: tuple(_done(o) for o in jitted(arrays, cotangent))


def _done(array):
    """``array`` once computed (the runner converts results to torch only to compare them)."""
    return array.block_until_ready()
