"""Op families: how a case's inputs are built, how each method calls the op, and the work one
call does (FLOPs for convolutions, bytes moved for memory-bound ops).

Methods (``ndops.bench.methods``): ``ext`` / ``fallback`` run the ndops op with that backend
forced; ``torch`` calls ``torch.nn.functional`` directly (N <= 3; batch norm at any N);
``loop-conv3d`` the baselines of ``ndops.bench.baselines`` (N >= 4); ``jax`` the JAX
equivalents of ``ndops.bench.jax_ops``.

Work counted per call (4 bytes per fp32 element):
* conv: 2 * B * C_out * C_in/groups * prod(kernel) * prod(output spatial) FLOPs for the forward
  (conv_transpose: the same with input and output swapped); fwd+bwd counts 3x (grad input and
  grad weight each cost one forward).
* memory-bound ops: the forward reads the input and writes the output; the backward reads
  grad_output and writes grad_input; max-type pools also write (forward) and read (backward)
  8-byte indices when a backward follows. Batch norm: 2 passes over x forward (read x, write
  y), 5 for fwd+bwd (+ read x, read grad_output, write grad_input), as in the anchors.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import ndops

from . import baselines, jax_ops, models
from .plan import NotApplicable, Plan, Unavailable, pass_runner


_ACTIVATIONS = {"none": lambda z: z, "relu": F.relu, "silu": F.silu, "gelu": F.gelu}


def _size_text(size):
    return f"{size[0]}^{len(size)}" if len(set(size)) == 1 else "x".join(map(str, size))


def _window_text(p):
    text = f" k{p['kernel_size']}"
    for key, short in (("stride", "s"), ("padding", "p"), ("output_padding", "op")):
        if p.get(key):
            text += f" {short}{p[key]}"
    return text


@dataclass(frozen=True)
class OpFamily:
    """How to build and call one functional op family (see the module docstring)."""
    name: str
    op: str                        # ndops op whose backends are offered
    unit: str                      # "GFLOP/s" or "GB/s"
    inputs: object                 # (case, device) -> (tensors, positions needing grad)
    ndops_call: object             # (case, *tensors) -> output, under the forced backend
    torch_call: object = None      # (case, *tensors) -> output, torch.nn.functional
    torch_dims: object = lambda n: n <= 3
    loop_call: object = None       # (case, *tensors) -> output, N >= 4
    work: object = None            # (case, tensors, output) -> FLOPs or bytes
    describe: object = None        # (case) -> text after "B.. C.." in the case's name
    backend_call: object = None    # (case) -> the `call` of ndops.available_backends, if used

    def default_backend(self, case, device):
        """The backend ndops runs ``case`` on by default."""
        call = self.backend_call(case) if self.backend_call else None
        return ndops.available_backends(self.op, case.n, device, math.prod(case.shape),
                                        call=call)[0]

    def method_call(self, method, case, device):
        """``f(*tensors) -> output`` for ``method``; raises Unavailable / NotApplicable."""
        if method in ("ext", "fallback"):
            if method not in ndops.available_backends(self.op, case.n, device):
                error = "" if ndops.has_extension() else f" ({ndops.load_error()})"
                raise Unavailable(f"no {method} kernel for {self.op} at N={case.n} on "
                                  f"{torch.device(device).type}{error}")
            def forced(*tensors):
                with ndops.backend(method):
                    return self.ndops_call(case, *tensors)
            return forced
        if method == "torch" and self.torch_call and self.torch_dims(case.n):
            return lambda *tensors: self.torch_call(case, *tensors)
        if method == "loop-conv3d" and self.loop_call and case.n >= 4:
            return lambda *tensors: self.loop_call(case, *tensors)
        raise NotApplicable(method)

    def plan(self, case, device, methods):
        """Build the inputs (seeded), and a ``pass_runner`` per method (see ``Plan``)."""
        torch.manual_seed(0)
        tensors, grad_positions = self.inputs(case, device)
        with torch.no_grad(), ndops.backend("fallback"):
            out = self.ndops_call(case, *tensors)
        grad_output = None
        if case.passes != "fwd":
            # Contiguous, like the output of every method timed: randn_like would copy the
            # fallback's layout (its interpolation returns a permuted view), and a kernel fed a
            # permuted grad_output pays a full copy first.
            grad_output = torch.randn(out.shape, dtype=out.dtype, device=out.device)
            for i in grad_positions:
                tensors[i].requires_grad_()
        plan = Plan(self.work(case, tensors, out), self.unit,
                    input_bytes=sum(t.numel() * t.element_size() for t in tensors))
        del out
        for method in methods:
            try:
                if method == "jax":
                    plan.runs[method] = jax_ops.build(case, tensors, grad_positions,
                                                      grad_output, device)
                else:
                    fn = self.method_call(method, case, device)
                    plan.runs[method] = pass_runner(fn, tensors, grad_positions, grad_output)
            except NotApplicable:
                continue
            except Unavailable as exc:
                plan.runs[method] = exc
        return plan


# ---- convolutions ---------------------------------------------------------------------------

def _conv_inputs(transpose):
    def build(case, device):
        p = case.params
        c_in, c_out, k = case.channels, p["out_channels"], p["kernel_size"]
        x = torch.randn(case.shape, device=device)
        w_shape = (c_in, c_out) if transpose else (c_out, c_in)
        fan_in = c_in * k ** case.n
        w = torch.randn(*w_shape, *(k,) * case.n, device=device) / math.sqrt(fan_in)
        return (x, w, torch.randn(c_out, device=device)), (0, 1, 2)
    return build


def _conv_args(case):
    p = case.params
    return p.get("stride", 1), p.get("padding", 0)


def _conv_backend_call(case):
    """conv_nd's backend rule reads the input, weight, stride and dilation (shapes only)."""
    x, w, _ = _conv_inputs(False)(case, "meta")[0]
    stride = _conv_args(case)[0]
    stride = (stride,) * case.n if isinstance(stride, int) else tuple(stride)
    return dict(input=x, weight=w, stride=stride, dilation=(1,) * case.n)


def _conv_ndops(case, x, w, b):
    stride, padding = _conv_args(case)
    out = ndops.conv_nd(x, w, b, stride=stride, padding=padding)
    return _ACTIVATIONS[case.params.get("activation", "none")](out)


def _conv_torch(case, x, w, b):
    stride, padding = _conv_args(case)
    out = getattr(F, f"conv{case.n}d")(x, w, b, stride, padding)
    return _ACTIVATIONS[case.params.get("activation", "none")](out)


def _conv_loop(case, x, w, b):
    stride, padding = _conv_args(case)
    out = baselines.conv_loop_of_conv3d(x, w, b, stride, padding)
    return _ACTIVATIONS[case.params.get("activation", "none")](out)


def _conv_bias_act_ndops(case, x, w, b):
    stride, padding = _conv_args(case)
    return ndops.conv_bias_act_nd(x, w, b, stride, padding,
                                  activation=case.params["activation"])


def _transpose_args(case):
    p = case.params
    return p.get("stride", 1), p.get("padding", 0), p.get("output_padding", 0)


def _conv_transpose_ndops(case, x, w, b):
    stride, padding, output_padding = _transpose_args(case)
    return ndops.conv_transpose_nd(x, w, b, stride, padding, output_padding)


def _conv_transpose_torch(case, x, w, b):
    stride, padding, output_padding = _transpose_args(case)
    return getattr(F, f"conv_transpose{case.n}d")(x, w, b, stride, padding, output_padding)


def _conv_transpose_loop(case, x, w, b):
    return baselines.conv_transpose_loop_of_conv3d(x, w, b, *_transpose_args(case))


def _conv_flops(transpose):
    def count(case, tensors, out):
        x = tensors[0]
        positions = math.prod(x.shape[2:] if transpose else out.shape[2:])
        taps = case.params["kernel_size"] ** case.n
        flops = 2 * x.shape[0] * case.channels * case.params["out_channels"] * taps * positions
        return flops * (3 if case.passes != "fwd" else 1)
    return count


def _describe_conv(case):
    act = case.params.get("activation")
    return (f"->{case.params['out_channels']} {_size_text(case.size)}{_window_text(case.params)}"
            + (f" +bias+{act}" if act else ""))


# ---- memory-bound ops -----------------------------------------------------------------------

def _x_only(case, device):
    return (torch.randn(case.shape, device=device),), (0,)


def _bytes(index_bytes=0):
    """Bytes moved (module docstring); ``index_bytes`` per output element for max-type pools."""
    def count(case, tensors, out):
        size = tensors[0].element_size()
        inp, outp = tensors[0].numel() * size, out.numel() * size
        if case.passes == "fwd":
            return inp + outp
        index = index_bytes * out.numel()
        return (inp + outp + index) + (outp + index + inp)
    return count


def _batch_norm_bytes(case, tensors, out):
    return tensors[0].numel() * tensors[0].element_size() * (2 if case.passes == "fwd" else 5)


def _pool(kind):
    def ndops_call(case, x):
        return getattr(ndops, f"{kind}_pool_nd")(x, case.params["kernel_size"])

    def torch_call(case, x):
        return getattr(F, f"{kind}_pool{case.n}d")(x, case.params["kernel_size"])
    return ndops_call, torch_call


def _adaptive(kind):
    def ndops_call(case, x):
        return getattr(ndops, f"adaptive_{kind}_pool_nd")(x, case.params["output_size"])

    def torch_call(case, x):
        return getattr(F, f"adaptive_{kind}_pool{case.n}d")(x, case.params["output_size"])
    return ndops_call, torch_call


_TORCH_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _interpolate_ndops(case, x):
    return ndops.interpolate_nd(x, scale_factor=case.params["scale_factor"],
                                mode=case.params["mode"])


def _interpolate_torch(case, x):
    mode = case.params["mode"]
    mode = _TORCH_LINEAR[case.n] if mode == "linear" else mode
    return F.interpolate(x, scale_factor=case.params["scale_factor"], mode=mode)


def _batch_norm_inputs(case, device):
    c = case.channels
    tensors = (torch.randn(case.shape, device=device), torch.rand(c, device=device) + 0.5,
               torch.randn(c, device=device), torch.zeros(c, device=device),
               torch.ones(c, device=device))
    return tensors, (0, 1, 2)


def _batch_norm_ndops(case, x, weight, bias, running_mean, running_var):
    return ndops.batch_norm_act_nd(x, running_mean, running_var, weight, bias, True,
                                   activation=case.params["activation"])


def _batch_norm_torch(case, x, weight, bias, running_mean, running_var):
    out = F.batch_norm(x, running_mean, running_var, weight, bias, True)
    return _ACTIVATIONS[case.params["activation"]](out)


def _pad_widths(case):
    return (1, 2) * case.n


def _fold_inputs(case, device):
    p = case.params
    k, stride, padding = p["kernel_size"], p.get("stride", 1), p.get("padding", 0)
    blocks = math.prod((s + 2 * padding - k) // stride + 1 for s in case.size)
    columns = torch.randn(case.batch, case.channels * k ** case.n, blocks, device=device)
    return (columns,), (0,)


def _window_kwargs(case):
    p = case.params
    return dict(kernel_size=p["kernel_size"], padding=p.get("padding", 0),
                stride=p.get("stride", 1))


FAMILIES = {
    "conv": OpFamily(
        "conv", "conv_nd", "GFLOP/s", _conv_inputs(False), _conv_ndops, _conv_torch,
        loop_call=_conv_loop, work=_conv_flops(False), describe=_describe_conv,
        backend_call=_conv_backend_call),
    "conv_transpose": OpFamily(
        "conv_transpose", "conv_transpose_nd", "GFLOP/s", _conv_inputs(True),
        _conv_transpose_ndops, _conv_transpose_torch, loop_call=_conv_transpose_loop,
        work=_conv_flops(True), describe=_describe_conv),
    "conv_bias_act": OpFamily(
        "conv_bias_act", "conv_bias_act_nd", "GFLOP/s", _conv_inputs(False),
        _conv_bias_act_ndops, _conv_torch, loop_call=_conv_loop, work=_conv_flops(False),
        describe=_describe_conv),
    "max_pool": OpFamily(
        "max_pool", "max_pool_nd", "GB/s", _x_only, *_pool("max"), work=_bytes(8),
        describe=lambda c: f" {_size_text(c.size)}{_window_text(c.params)}"),
    "avg_pool": OpFamily(
        "avg_pool", "avg_pool_nd", "GB/s", _x_only, *_pool("avg"), work=_bytes(),
        describe=lambda c: f" {_size_text(c.size)}{_window_text(c.params)}"),
    "adaptive_avg_pool": OpFamily(
        "adaptive_avg_pool", "adaptive_avg_pool_nd", "GB/s", _x_only, *_adaptive("avg"),
        work=_bytes(), describe=lambda c: f" {_size_text(c.size)}->{c.params['output_size']}"),
    "adaptive_max_pool": OpFamily(
        "adaptive_max_pool", "adaptive_max_pool_nd", "GB/s", _x_only, *_adaptive("max"),
        work=_bytes(8), describe=lambda c: f" {_size_text(c.size)}->{c.params['output_size']}"),
    "interpolate": OpFamily(
        "interpolate", "interpolate_nd", "GB/s", _x_only, _interpolate_ndops,
        _interpolate_torch, work=_bytes(),
        describe=lambda c: (f" {_size_text(c.size)} x{c.params['scale_factor']} "
                            f"{c.params['mode']}")),
    "batch_norm_act": OpFamily(
        "batch_norm_act", "batch_norm_act_nd", "GB/s", _batch_norm_inputs, _batch_norm_ndops,
        _batch_norm_torch, torch_dims=lambda n: True, work=_batch_norm_bytes,
        describe=lambda c: f" {_size_text(c.size)} +{c.params['activation']} train"),
    "pad": OpFamily(
        "pad", "pad_nd", "GB/s", _x_only,
        lambda c, x: ndops.pad_nd(x, _pad_widths(c), mode=c.params["mode"]),
        lambda c, x: F.pad(x, _pad_widths(c), mode=c.params["mode"]), work=_bytes(),
        describe=lambda c: f" {_size_text(c.size)} {c.params['mode']} (1,2)"),
    "unfold": OpFamily(
        "unfold", "unfold_nd", "GB/s", _x_only,
        lambda c, x: ndops.unfold_nd(x, **_window_kwargs(c)),
        lambda c, x: F.unfold(x, **_window_kwargs(c)), torch_dims=lambda n: n == 2,
        work=_bytes(), describe=lambda c: f" {_size_text(c.size)}{_window_text(c.params)}"),
    "fold": OpFamily(
        "fold", "fold_nd", "GB/s", _fold_inputs,
        lambda c, x: ndops.fold_nd(x, c.size, **_window_kwargs(c)),
        lambda c, x: F.fold(x, c.size, **_window_kwargs(c)), torch_dims=lambda n: n == 2,
        work=_bytes(), describe=lambda c: f" {_size_text(c.size)}{_window_text(c.params)}"),
}
FAMILIES.update(models.FAMILIES)
