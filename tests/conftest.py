"""Shared test setup: makes tests/reference importable and seeds every test."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # `import reference.<family>` (importlib mode)

import ndops  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def backends_for(op, n, device="cpu"):
    """Every backend that can run ``op`` at N = ``n`` on this build (native, ext, fallback)."""
    return ndops.available_backends(op, n, device)
