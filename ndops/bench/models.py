"""End-to-end families: a UNet training step and a ResNet forward (``ndops.models``).

Methods: ``auto`` (ndops' default backend choice, what a user gets) and ``fallback`` (every ndops
op forced onto the pure-PyTorch fallback). At N <= 3 the models are built from torch's own
layers, so both rows mostly time torch. Each method gets its own copy of one seeded model.

* ``unet_train``: ``UNet(N, C, 2, channels=widths)``, one step = MSE loss against a fixed
  target, backward, plain SGD update ``p -= 1e-3 * p.grad``, gradients reset to None.
  Results are not compared between methods (the weights move with every step).
* ``resnet_fwd``: ``ResNet(N, C, num_classes, preset, widths=...)`` in eval mode under no_grad;
  the logits are compared between methods.
"""
import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import ndops

from .plan import NotApplicable, Plan, Unavailable

METHODS = ("auto", "fallback")


def _import(module, name):
    try:
        return getattr(__import__(f"ndops.models.{module}", fromlist=[name]), name)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"ndops.models.{module}.{name} is not available yet "
                          f"({type(exc).__name__}: {exc})") from None


def _with_backend(method, fn):
    forced = None if method == "auto" else method

    def run():
        with ndops.backend(forced):
            return fn()
    return run


def _size_text(size):
    return f"{size[0]}^{len(size)}" if len(set(size)) == 1 else "x".join(map(str, size))


@dataclass(frozen=True)
class ModelFamily:
    name: str
    build: object      # (case, device) -> (model, make_run(model) -> run(), comparable)
    describe: object
    unit = None
    op = None
    methods = METHODS

    def plan(self, case, device, methods):
        torch.manual_seed(0)
        plan = Plan(None, None)
        try:
            model, make_run, plan.comparable = self.build(case, device)
        except Unavailable as exc:
            for method in methods:
                if method in METHODS:
                    plan.runs[method] = exc
            return plan
        plan.input_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        for method in methods:
            if method not in METHODS:
                continue
            plan.runs[method] = _with_backend(method, make_run(copy.deepcopy(model)))
        return plan

    def method_call(self, method, case, device):
        raise NotApplicable(method)


def _unet(case, device):
    UNet = _import("unet", "UNet")
    model = UNet(case.n, case.channels, 2, channels=case.params["widths"]).to(device)
    x = torch.randn(case.shape, device=device)
    target = torch.randn(case.batch, 2, *case.size, device=device)

    def make_run(net):
        params = list(net.parameters())

        def step():
            loss = F.mse_loss(net(x), target)
            loss.backward()
            with torch.no_grad():
                for p in params:
                    if p.grad is not None:
                        p.sub_(1e-3 * p.grad)
                        p.grad = None
            return (loss.detach(),)
        return step
    return model, make_run, False


def _resnet(case, device):
    ResNet = _import("resnet", "ResNet")
    p = case.params
    model = ResNet(case.n, case.channels, p["num_classes"], preset=p["preset"],
                   widths=p["widths"]).to(device).eval()
    x = torch.randn(case.shape, device=device)

    def make_run(net):
        def forward():
            with torch.no_grad():
                return (net(x),)
        return forward
    return model, make_run, True


FAMILIES = {
    "unet_train": ModelFamily(
        "unet_train", _unet,
        lambda c: f" {_size_text(c.size)} channels {'-'.join(map(str, c.params['widths']))}"),
    "resnet_fwd": ModelFamily(
        "resnet_fwd", _resnet,
        lambda c: f" {_size_text(c.size)} {c.params['preset']} width {c.params['widths'][0]}"),
}
