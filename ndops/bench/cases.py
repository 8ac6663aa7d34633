"""THE list of benchmark cases, shared by ``ndops-bench`` and the pytest-benchmark files in
``benchmarks/`` (one list, not two).

A case is one call to time: an op family (``ndops.bench.families``), N, batch, channels,
spatial size, the family's keyword parameters, the pass ("fwd" or "fwd+bwd"; for the UNet a
"train step"), tags and, for the rows of issue 3, the targets ndops' compiled kernels must meet.
Cases tagged "quick" make ``ndops-bench --quick`` (< 2 min on the 2-core project machine);
``--full`` runs every case. ``case.at_scale("tiny")`` shrinks a case for the test suite.
"""
from dataclasses import dataclass, field, replace

PASSES = ("fwd", "fwd+bwd")

# Largest spatial edge per N at the "tiny" scale (tests: every case in milliseconds).
_TINY_EDGE = {1: 32, 2: 8, 3: 5, 4: 4, 5: 3}


@dataclass(frozen=True)
class Speedup:
    """ndops ext must be at least ``factor`` times faster than ``method``."""
    method: str
    factor: float

    def describe(self, labels):
        return f">= {self.factor:g}x {labels.get(self.method, self.method)}"


@dataclass(frozen=True)
class Limit:
    """ndops ext must reach ``fraction`` of the machine's limit (GEMM peak or copy bandwidth)."""
    fraction: float

    def describe(self, labels):
        return f">= {100 * self.fraction:g} % of limit"


@dataclass(frozen=True, eq=False)
class BenchCase:
    """One call to time (see the module docstring); compared by identity."""
    family: str
    n: int
    batch: int
    channels: int
    size: tuple                       # spatial sizes
    passes: str = "fwd"               # "fwd" | "fwd+bwd" | "train" (models)
    params: dict = field(default_factory=dict)
    tags: frozenset = frozenset()
    targets: tuple = ()               # Speedup / Limit, checked on the "ext" row
    note: str = ""                    # e.g. "first layer", "UNet-like"

    @property
    def shape(self):
        return (self.batch, self.channels, *self.size)

    @property
    def name(self):
        """Readable and unique, e.g. "conv 4-D B2 C16->16 16^4 k3 p1 [fwd+bwd]"."""
        from .families import FAMILIES
        return (f"{self.family} {self.n}-D B{self.batch} C{self.channels}"
                f"{FAMILIES[self.family].describe(self)} [{self.passes}]")

    @property
    def id(self):
        """The name as a pytest id / file-name-safe token."""
        return (self.name.replace(" [", "-").replace("]", "").replace(" ", "-")
                .replace("->", "to").replace("^", "pow").replace("(", "").replace(")", "")
                .replace(",", "x"))

    def at_scale(self, scale):
        """This case at ``scale``: "normal" (itself) or "tiny" (edge, batch, channels capped)."""
        if scale == "normal":
            return self
        edge = _TINY_EDGE[self.n]
        if self.family == "unet_train":  # one halving per level: keep a 2^N bottleneck
            edge = max(edge, 2 ** len(self.params["widths"]))
        params = dict(self.params)
        if "out_channels" in params:
            params["out_channels"] = min(params["out_channels"], 3)
        if "output_size" in params:
            params["output_size"] = min(params["output_size"], edge)
        if "widths" in params:
            params["widths"] = tuple(min(w, 4) for w in params["widths"])
        return replace(self, batch=min(self.batch, 2), channels=min(self.channels, 3),
                       size=tuple(min(s, edge) for s in self.size), params=params)


def _cube(n, edge):
    return (edge,) * n


def _case(family, n, batch, channels, edge, passes=PASSES, tags=(), targets=(),
          target_passes=("fwd+bwd",), note="", **params):
    """One case per pass; ``targets`` go to the passes in ``target_passes``."""
    passes = (passes,) if isinstance(passes, str) else passes
    return [BenchCase(family, n, batch, channels, _cube(n, edge), p, params, frozenset(tags),
                      tuple(targets) if p in target_passes else (), note) for p in passes]


# Issue 3's targets (fp32, 2 threads, THP_MEM_ALLOC_ENABLE=1 for the bandwidth rows).
_CONV_UNET = (Speedup("fallback", 1.3), Limit(0.75))
_BANDWIDTH = dict(target_passes=PASSES)  # the bandwidth targets hold for fwd and fwd+bwd
_K3P1 = dict(kernel_size=3, padding=1)

CASES = [
    # convolution: UNet-like layers, first layers (few input channels), N = 1..5
    *_case("conv", 4, 2, 16, 16, targets=_CONV_UNET, tags={"target"}, note="UNet-like",
           out_channels=16, **_K3P1),
    *_case("conv", 4, 1, 32, 12, targets=(Speedup("fallback", 1.1),), tags={"target"},
           out_channels=32, **_K3P1),
    *_case("conv", 4, 4, 1, 24, targets=(Speedup("fallback", 4.0),), tags={"target"},
           note="first layer", out_channels=8, **_K3P1),
    *_case("conv", 4, 2, 16, 12, "fwd+bwd", tags={"quick"}, note="UNet-like", out_channels=16,
           **_K3P1),
    *_case("conv", 4, 2, 16, 8, "fwd+bwd", note="size sweep", out_channels=16, **_K3P1),
    *_case("conv", 4, 2, 1, 16, "fwd+bwd", tags={"quick"}, note="first layer", out_channels=8,
           **_K3P1),
    *_case("conv", 5, 1, 4, 8, "fwd", tags={"quick"}, out_channels=4, **_K3P1),
    *_case("conv", 5, 1, 8, 10, "fwd+bwd", out_channels=8, **_K3P1),
    *_case("conv", 3, 2, 16, 24, "fwd+bwd", tags={"quick"}, out_channels=16, **_K3P1),
    *_case("conv", 3, 2, 32, 32, "fwd+bwd", out_channels=32, **_K3P1),
    *_case("conv", 3, 4, 1, 64, "fwd+bwd", note="first layer", out_channels=16, **_K3P1),
    *_case("conv", 2, 4, 32, 64, "fwd", tags={"quick"}, out_channels=32, **_K3P1),
    *_case("conv", 2, 8, 64, 64, "fwd+bwd", out_channels=64, **_K3P1),
    *_case("conv", 1, 8, 64, 8192, "fwd+bwd", out_channels=64, **_K3P1),
    # transposed convolution: UNet up-sampling (k2 s2) and k3 s2 p1 op1
    *_case("conv_transpose", 4, 2, 16, 8, "fwd+bwd", tags={"quick"}, note="UNet up",
           out_channels=8, kernel_size=2, stride=2),
    *_case("conv_transpose", 4, 2, 32, 12, "fwd+bwd", note="UNet up", out_channels=16,
           kernel_size=2, stride=2),
    *_case("conv_transpose", 4, 2, 16, 10, "fwd+bwd", out_channels=8, kernel_size=3, stride=2,
           padding=1, output_padding=1),
    *_case("conv_transpose", 3, 2, 32, 32, "fwd+bwd", note="UNet up", out_channels=16,
           kernel_size=2, stride=2),
    *_case("conv_transpose", 2, 4, 64, 64, "fwd+bwd", out_channels=32, kernel_size=2, stride=2),
    # conv + bias + activation, fused (the model conv blocks' op)
    *_case("conv_bias_act", 4, 2, 16, 16, out_channels=16, activation="silu", **_K3P1),
    *_case("conv_bias_act", 3, 2, 32, 32, "fwd+bwd", out_channels=32, activation="silu",
           **_K3P1),
    # pooling, k2 s2 everywhere
    *_case("max_pool", 4, 2, 32, 32, targets=(Limit(0.6),), tags={"target"},
           kernel_size=2, **_BANDWIDTH),
    *_case("avg_pool", 4, 2, 32, 32, targets=(Limit(0.6),), tags={"target"},
           kernel_size=2, **_BANDWIDTH),
    *_case("max_pool", 4, 2, 16, 16, "fwd+bwd", tags={"quick"}, kernel_size=2),
    *_case("max_pool", 4, 2, 32, 16, "fwd+bwd", note="size sweep", kernel_size=2),
    *_case("max_pool", 5, 2, 16, 16, "fwd", kernel_size=2),
    *_case("max_pool", 3, 2, 32, 64, kernel_size=2),
    *_case("max_pool", 2, 4, 32, 256, "fwd+bwd", kernel_size=2),
    *_case("max_pool", 1, 8, 32, 65536, "fwd+bwd", kernel_size=2),
    *_case("avg_pool", 5, 2, 16, 16, "fwd", kernel_size=2),
    *_case("avg_pool", 3, 2, 16, 32, "fwd", tags={"quick"}, kernel_size=2),
    *_case("avg_pool", 3, 2, 32, 64, "fwd+bwd", kernel_size=2),
    # adaptive pooling (output 5: overlapping, uneven windows; output 1: global)
    *_case("adaptive_avg_pool", 4, 2, 16, 12, "fwd", tags={"quick"}, output_size=5),
    *_case("adaptive_avg_pool", 4, 2, 32, 16, "fwd+bwd", output_size=5),
    *_case("adaptive_avg_pool", 4, 2, 32, 16, "fwd", output_size=1),
    *_case("adaptive_avg_pool", 3, 2, 32, 32, "fwd+bwd", output_size=5),
    *_case("adaptive_max_pool", 4, 2, 32, 16, "fwd+bwd", output_size=5),
    *_case("adaptive_max_pool", 3, 2, 32, 32, "fwd+bwd", output_size=5),
    # up-sampling x2: multilinear and nearest
    *_case("interpolate", 4, 2, 32, 16, targets=(Limit(0.5),), tags={"target"},
           scale_factor=2, mode="linear", **_BANDWIDTH),
    *_case("interpolate", 4, 2, 16, 8, "fwd+bwd", tags={"quick"}, scale_factor=2, mode="linear"),
    *_case("interpolate", 5, 1, 16, 8, "fwd+bwd", scale_factor=2, mode="linear"),
    *_case("interpolate", 3, 2, 32, 32, "fwd+bwd", scale_factor=2, mode="linear"),
    *_case("interpolate", 2, 4, 32, 128, "fwd+bwd", scale_factor=2, mode="linear"),
    *_case("interpolate", 1, 8, 32, 16384, "fwd+bwd", scale_factor=2, mode="linear"),
    *_case("interpolate", 4, 2, 32, 16, "fwd", scale_factor=2, mode="nearest"),
    *_case("interpolate", 5, 1, 8, 6, "fwd", tags={"quick"}, scale_factor=2, mode="nearest"),
    *_case("interpolate", 3, 2, 32, 32, "fwd", scale_factor=2, mode="nearest"),
    # batch norm + relu, training (F.batch_norm + F.relu is the "torch" row at every N)
    *_case("batch_norm_act", 4, 2, 32, 24, targets=(Speedup("torch", 2.0), Limit(0.5)),
           tags={"target"}, activation="relu"),
    *_case("batch_norm_act", 4, 2, 16, 16, "fwd+bwd", tags={"quick"}, activation="relu"),
    *_case("batch_norm_act", 5, 2, 16, 12, "fwd+bwd", activation="relu"),
    *_case("batch_norm_act", 3, 2, 32, 64, "fwd+bwd", activation="relu"),
    *_case("batch_norm_act", 2, 8, 64, 128, "fwd+bwd", activation="relu"),
    # pad, reflect (1, 2) per dim
    *_case("pad", 4, 2, 4, 20, tags={"quick"}, mode="reflect"),
    *_case("pad", 5, 2, 4, 10, "fwd", mode="reflect"),
    *_case("pad", 3, 2, 4, 64, "fwd", mode="reflect"),
    *_case("pad", 2, 2, 4, 384, "fwd", mode="reflect"),
    # unfold / fold: k3 p1 is im2col (27x / 81x the input), k2 s2 a non-overlapping reshuffle
    *_case("unfold", 4, 2, 4, 10, "fwd", tags={"quick"}, note="im2col", **_K3P1),
    *_case("unfold", 4, 2, 8, 12, "fwd+bwd", note="im2col", **_K3P1),
    *_case("unfold", 4, 2, 16, 16, "fwd+bwd", kernel_size=2, stride=2),
    *_case("unfold", 3, 2, 8, 24, "fwd+bwd", note="im2col", **_K3P1),
    *_case("unfold", 2, 4, 16, 64, "fwd+bwd", note="im2col", **_K3P1),
    *_case("fold", 4, 2, 4, 12, "fwd", tags={"quick"}, kernel_size=2, stride=2),
    *_case("fold", 4, 2, 8, 12, "fwd+bwd", **_K3P1),
    *_case("fold", 3, 2, 8, 24, "fwd+bwd", **_K3P1),
    *_case("fold", 2, 4, 16, 64, "fwd+bwd", **_K3P1),
    # end to end (ndops.models): UNet training steps, ResNet forward
    *_case("unet_train", 3, 2, 1, 24, "train", tags={"quick"}, widths=(8, 16, 32)),
    *_case("unet_train", 3, 2, 1, 48, "train", widths=(16, 32, 64, 128)),
    *_case("unet_train", 4, 1, 1, 12, "train", tags={"quick"}, widths=(4, 8, 16)),
    *_case("unet_train", 4, 1, 1, 16, "train", widths=(8, 16, 32)),
    *_case("resnet_fwd", 4, 1, 1, 16, "fwd", tags={"quick"}, preset="resnet10", num_classes=10,
           widths=(32, 64, 128, 256)),
    *_case("resnet_fwd", 3, 2, 1, 64, "fwd", preset="resnet18", num_classes=10,
           widths=(64, 128, 256, 512)),
    *_case("resnet_fwd", 4, 1, 1, 24, "fwd", preset="resnet18", num_classes=10,
           widths=(64, 128, 256, 512)),
]


def families():
    """Family names in list order."""
    return list(dict.fromkeys(case.family for case in CASES))


def select(cases=None, *, quick=False, families=None, dims=None, tags=None):
    """The cases (default: CASES) kept by the filters, in list order."""
    kept = []
    for case in CASES if cases is None else cases:
        if quick and "quick" not in case.tags:
            continue
        if families is not None and case.family not in families:
            continue
        if dims is not None and case.n not in dims:
            continue
        if tags is not None and not (case.tags & set(tags)):
            continue
        kept.append(case)
    return kept
