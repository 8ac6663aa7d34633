"""Shared test setup: makes tests/reference and tests/helpers importable, seeds every test and
offers a one-thread fixture."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # `import reference.<family>`, `helpers.<topic>`

import ndops  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """torch on one thread during the test: for tiny models on a shared 2-core machine, where
    OpenMP spinning makes 2 threads ~30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def backends_for(op, n, device="cpu"):
    """Every backend that can run ``op`` at N = ``n`` on this build (native, ext, fallback)."""
    return ndops.available_backends(op, n, device)
