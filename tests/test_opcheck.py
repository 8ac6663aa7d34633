"""torch.library.opcheck (schema, autograd registration, fake kernel, AOT dispatch) for every
op in torch.ops.ndops, on the sample inputs of tests/opcheck_samples/<family>.py, with and
without requires_grad.

A new op must add samples there: test_every_op_has_samples fails otherwise.
"""
import importlib
import pkgutil

import pytest
import torch

import ndops
import opcheck_samples

pytestmark = pytest.mark.skipif(not ndops.has_extension(),
                                reason=f"extension not built: {ndops.load_error()}")


def _collect_samples():
    """Merge SAMPLES of every module in tests/opcheck_samples/ (one module per op family)."""
    merged = {}
    for info in pkgutil.iter_modules(opcheck_samples.__path__):
        family = importlib.import_module(f"opcheck_samples.{info.name}")
        merged.update(family.SAMPLES)
    return merged


SAMPLES = _collect_samples()


def registered_ops():
    """Every op name in the ndops namespace (overload names stripped)."""
    names = torch._C._dispatch_get_all_op_names()
    return sorted({n.split("::", 1)[1].split(".")[0] for n in names if n.startswith("ndops::")})


def test_every_op_has_samples():
    ops = registered_ops()
    missing = [op for op in ops if not SAMPLES.get(op)]
    assert not missing, f"ops without opcheck samples in tests/opcheck_samples/: {missing}"
    stale = sorted(set(SAMPLES) - set(ops))
    assert not stale, f"SAMPLES names ops that are not registered: {stale}"


CASES = [(op, i) for op, samples in SAMPLES.items() for i in range(len(samples))]


@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("op,index", CASES, ids=[f"{op}-{i}" for op, i in CASES])
def test_opcheck(op, index, requires_grad):
    args = opcheck_samples.sample_arguments(SAMPLES[op][index], requires_grad)
    torch.library.opcheck(getattr(torch.ops.ndops, op).default, args)
