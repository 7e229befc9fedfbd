"""Shared fixtures: small float64 problems, a temporary results store, and the GPU marker."""

from __future__ import annotations

import pytest
import torch

from harness.model import make_problem


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def small_problem():
    """n=24, m=64, d=5, float64: small enough for dense references."""
    return make_problem("synthetic", n=24, d=5, m=64, seed=3, dtype=torch.float64)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "results"
