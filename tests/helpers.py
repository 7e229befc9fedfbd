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


def nlt_run_refusal(capsys, *args: str) -> tuple[int, list[str]]:
    """What ``nlt-run <args>`` does before its first job, in-process (no torch import per
    case): the command line rewritten and validated as ``app._main`` does, a refusal turned
    into one stderr line and an exit code by ``guarded``. Returns (exit code, stderr lines);
    (0, []) when the command would run."""
    from harness.common.errors import guarded
    from harness.execution import app

    capsys.readouterr()
    try:
        guarded(app.PROG, lambda: app.validate_command(app._defer_group_options(list(args))))
    except SystemExit as exc:
        code = int(exc.code or 0)
    else:
        code = 0
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if ln.strip()]
