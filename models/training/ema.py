"""Exponential moving average (EMA) of a model's weights."""
import copy

import torch

_WHERE = "ndops.models.training.EMA"


class EMA:
    """Keeps ``module``, a frozen copy of a model whose floating-point parameters follow
    ``ema = decay_n * ema + (1 - decay_n) * weights`` after every optimizer step; buffers
    (e.g. BatchNorm running statistics) are copied as they are.

    With ``warmup`` the decay ramps up as ``decay_n = min(decay, (1 + n) / (10 + n))`` over the
    first updates n (as TensorFlow's ExponentialMovingAverage with ``num_updates``), so the
    average is not dominated by the random initial weights in short runs.

    Under DistributedDataParallel every process holds identical weights after each step
    (gradients are averaged before the update), so every process updating its own EMA from
    them keeps all EMA copies identical; pass the unwrapped model (``ddp.module``).
    """

    def __init__(self, model, decay=0.999, warmup=True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"{_WHERE}: decay must be in [0, 1), got {decay!r}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def current_decay(self):
        """The decay the next :meth:`update` uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model):
        """Moves the average towards ``model``'s current weights."""
        decay = self.current_decay()
        averaged, current = [], []
        for (name, ema_p), (_, p) in zip(self.module.named_parameters(),
                                         model.named_parameters()):
            if ema_p.shape != p.shape:
                raise ValueError(f"{_WHERE}: parameter {name} changed shape from "
                                 f"{tuple(ema_p.shape)} to {tuple(p.shape)}")
            if ema_p.is_floating_point():
                averaged.append(ema_p)
                current.append(p.detach())
            else:
                ema_p.copy_(p)
        if averaged:
            torch._foreach_lerp_(averaged, current, 1.0 - decay)
        for ema_b, b in zip(self.module.buffers(), model.buffers()):
            ema_b.copy_(b)
        self.num_updates += 1

    def state_dict(self):
        return {"module": self.module.state_dict(), "num_updates": self.num_updates,
                "decay": self.decay, "warmup": self.warmup}

    def load_state_dict(self, state):
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
