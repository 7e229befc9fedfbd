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


#: Tests over ~10 s whose behaviour a faster test of the default run already covers (a
#: representative of each kind stays there): run them with `make test-all` (or `-m slow`).
SLOW = {
    "test_costmodel.py::test_cli_calibrate_quick_writes_a_valid_profile",
    "test_asv_suite.py::test_asv_quick_run_records_one_benchmark",
    "test_install.py::test_wheel_installs_and_runs_outside_the_source_tree",
    "test_sweeps.py::test_smoke_submitit_local_gives_the_same_cells",
    "test_signals.py::test_sigterm_and_sighup_of_a_basic_sweep_act_like_ctrl_c[1]",
    "test_signals.py::test_sigint_of_a_joblib_sweep_leaves_no_worker",
    "test_signals.py::test_sigkill_of_a_suite_ends_its_part_and_cells",
    "test_signals.py::test_a_finished_joblib_sweep_leaves_no_process_behind",
    "test_signals.py::test_sigterm_to_the_process_group_stops_the_sweep_cleanly",
    "test_faults.py::test_sigint_stops_a_sweep_started_with_sigint_ignored",
}


def pytest_collection_modifyitems(config, items):
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.nodeid.split("/")[-1] in SLOW:
            item.add_marker(pytest.mark.slow)
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
