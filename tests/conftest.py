"""Shared fixtures (small float64 problems, a temporary results store), the GPU skip, and the
test tiers: a test that runs a whole command end to end — it starts processes (the CLIs,
launchers, pip, asv, git) or runs a full command in-process (a calibration, the committed
sweeps' pre-flight) — is marked ``cli`` and left out of ``make test-fast``."""

from __future__ import annotations

import inspect
import os

import pytest
import torch

from harness.model import make_problem

# Measurement hygiene off (harness/execution/hygiene.py): a loaded test machine must not mark
# the tests' cells disturbed and leave them out of their reports. tests/test_hygiene.py turns
# it back on. Processes the tests start inherit it.
os.environ["NLT_HYGIENE"] = "0"

#: modules whose every test drives processes
CLI_MODULES = {"test_cli_help", "test_sweeps", "test_faults", "test_install", "test_asv_suite",
               "test_plugin", "test_plugins"}
#: in-process tests that run a whole command (seconds to minutes each)
WHOLE_COMMANDS = {"test_cli_calibrate_quick_writes_a_valid_profile",
                  "test_the_committed_cells_keep_their_identity"}
#: what a test's own source calls when it starts a process
STARTS_PROCESSES = ("subprocess", "Popen", "nlt_run(", "_nlt_run(", "_cmd()", "_asv(",
                    "_run([", "spawn_ranks(", "run_cli(")


def _starts_processes(item) -> bool:
    if item.module.__name__.rsplit(".", 1)[-1] in CLI_MODULES or \
            item.originalname in WHOLE_COMMANDS:
        return True
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        return False
    return any(token in source for token in STARTS_PROCESSES)


def pytest_collection_modifyitems(config, items):
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if skip is not None and "gpu" in item.keywords:
            item.add_marker(skip)
        if _starts_processes(item):
            item.add_marker(pytest.mark.cli)


@pytest.fixture
def small_problem():
    """n=24, m=64, d=5, float64: small enough for dense references."""
    return make_problem("synthetic", n=24, d=5, m=64, seed=3, dtype=torch.float64)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "results"
