"""What a family hands the runner for one case: the work of one call and one zero-argument
callable per method (or the reason the method cannot run)."""
from dataclasses import dataclass, field

import torch


class Unavailable(Exception):
    """The method exists for this case but cannot run here (the report lists the reason)."""


class NotApplicable(Exception):
    """The method does not exist for this case (left out silently, e.g. torch at N = 4)."""


@dataclass
class Plan:
    work: float | None              # FLOPs or bytes of one call (None: time only)
    unit: str | None                # "GFLOP/s" | "GB/s" | None
    runs: dict = field(default_factory=dict)  # method -> callable() -> tuple | Unavailable
    comparable: bool = True         # the methods' results must agree (checked by the runner)
    input_bytes: int = 0


def pass_runner(fn, tensors, grad_positions, grad_output):
    """``run()`` for one pass of ``fn(*tensors)``: the output alone under no_grad (fwd), or the
    output and the gradients of ``tensors[grad_positions]`` for ``grad_output`` (fwd+bwd,
    with torch.autograd.grad: nothing accumulates into ``.grad``)."""
    if grad_output is None:
        def forward():
            with torch.no_grad():
                return (fn(*tensors),)
        return forward
    inputs = [tensors[i] for i in grad_positions]

    def forward_backward():
        out = fn(*tensors)
        return (out.detach(), *torch.autograd.grad(out, inputs, grad_output))
    return forward_backward
