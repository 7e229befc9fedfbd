"""In-process and subprocess ways to run cells for the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from harness.execution.config import CONF_DIR, register_configs
from harness.execution.runner import Outcome, run_cell


def compose_cfg(*overrides: str):
    """The composed config of ``nlt-run <overrides>`` (no sweep syntax)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_in_process(store: Path, *overrides: str) -> tuple[Outcome, dict, pd.DataFrame]:
    """Run one cell on the CPU into ``store``; returns (outcome, run.json, result rows)."""
    cfg = compose_cfg("device=cpu", f"store={store}", *overrides)
    outcome = run_cell(cfg)
    run = json.loads((outcome.cell / "run.json").read_text())
    rows = pd.read_parquet(outcome.cell / "result.parquet")
    return outcome, run, rows


def nlt_run(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``nlt-run <args>`` in a subprocess with ``cwd`` as working directory."""
    return subprocess.run([sys.executable, "-m", "harness.execution.app", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
