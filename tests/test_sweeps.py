"""Sweeps: presets through Hydra's launchers, fault isolation, resume, the summary, the NTK
diagnostic. The sweep tests run ``python -m harness.execution.app -m ...`` as a user would, with the
working directory in tmp_path so Hydra's directories land there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.execution.app import suite_parts
from harness.execution.results import RESULT_FILE, RUN_FILE, cell_is_complete, read_run
from harness.execution.summary import (
    OUTCOME_FILE,
    STARTED_FILE,
    SWEEP_FILE,
    job_rows,
    summary_table,
    write_json,
)

REPO = Path(__file__).resolve().parent.parent
#: the two-cell sweep of the fault tests: gd reaches iteration 10, gn_gram converges at 3
TWO_CELLS = ("+sweep=smoke", "algorithm=gd,gn_gram", "data.n=16")


def nlt_run(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness.execution.app", "-m", *args,
                           f"store={tmp_path / 'store'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cells(store: Path) -> dict[str, dict]:
    """Cell directory (algorithm/name) → its run.json."""
    return {f"{p.parent.parent.name}/{p.parent.name}": json.loads(p.read_text())
            for p in store.glob(f"*/*/{RUN_FILE}") if not p.parts[-3].startswith("_")}


def _check(proc: subprocess.CompletedProcess, code: int) -> None:
    assert proc.returncode == code, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def basic_smoke(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("basic")
    proc = nlt_run(tmp, "+sweep=smoke")
    _check(proc, 0)
    out = proc.stdout + proc.stderr
    assert "[sweep 6/6 cells done]" in out and "cells by status:" in out
    found = cells(tmp / "store")
    assert len(found) == 6
    assert {r["provenance"]["launch"]["launcher"] for r in found.values()} == {"basic"}
    return found


def test_smoke_joblib_gives_the_same_cells(basic_smoke, tmp_path):
    proc = nlt_run(tmp_path, "+sweep=smoke", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    _check(proc, 0)
    found = cells(tmp_path / "store")
    assert set(found) == set(basic_smoke)
    launch = next(iter(found.values()))["provenance"]["launch"]
    cores = len(os.sched_getaffinity(0))
    assert launch["launcher"] == "joblib" and launch["parallel_jobs"] == 2
    assert launch["threads"] == max(1, cores // 2)
    assert all(r["provenance"]["threads"] == launch["threads"] for r in found.values())
    assert "cells by status: converged 2, max_iters 4" in proc.stdout


def test_smoke_submitit_local_gives_the_same_cells(basic_smoke, tmp_path):
    # submitit_local starts all six jobs at once, each its own process; isolate=false (not part
    # of the cell hash) spares each job a second interpreter on a loaded 2-core machine
    # (and four of the six cells: each job is a fresh interpreter importing torch)
    proc = nlt_run(tmp_path, "+sweep=smoke", "algorithm=gd,gn_gram",
                   "hydra/launcher=submitit_local", "isolate=false")
    _check(proc, 0)
    found = cells(tmp_path / "store")
    assert set(found) == {k for k in basic_smoke if not k.startswith("sgd/")}
    assert {r["provenance"]["launch"]["launcher"] for r in found.values()} == {"submitit_local"}
    assert "cells by status: converged 2, max_iters 2" in proc.stdout


@pytest.mark.parametrize("mode,launcher", [
    ("kill", "basic"),  # SIGKILL of the cell process: the basic launcher's sweep goes on
    pytest.param("raise", "joblib", marks=pytest.mark.slow),
])
def test_failed_cell_is_recorded_and_only_it_reruns(tmp_path, mode, launcher):
    extra = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2") if launcher == "joblib" else ()
    proc = nlt_run(tmp_path, *TWO_CELLS, *extra, "testing.fail_at_iter=10",
                   f"testing.fail_mode={mode}")
    _check(proc, 1)
    first = cells(tmp_path / "store")
    (gd,) = [k for k in first if k.startswith("gd/")]
    (gn,) = [k for k in first if k.startswith("gn_gram/")]
    assert first[gd]["status"] == "failed"
    expect = "InjectedFault" if mode == "raise" else "killed by SIGKILL"
    assert expect in first[gd]["reason"]
    assert first[gn]["status"] == "converged"
    gn_run = tmp_path / "store" / gn / RUN_FILE
    mtime = gn_run.stat().st_mtime_ns
    assert "cells by status: converged 1, failed 1" in proc.stdout

    proc = nlt_run(tmp_path, *TWO_CELLS, *extra)  # the fault removed: resume
    _check(proc, 0)
    second = cells(tmp_path / "store")
    assert set(second) == set(first)
    assert second[gd]["status"] == "max_iters" and second[gd]["iterations"] == 20
    assert gn_run.stat().st_mtime_ns == mtime
    assert second[gn]["provenance"]["utc_time"] == first[gn]["provenance"]["utc_time"]


def test_truncated_result_is_detected_and_rerun(basic_smoke, tmp_path):
    shutil.copytree(Path(next(iter(basic_smoke.values()))["cell"]).parents[1],
                    tmp_path / "store", ignore=shutil.ignore_patterns("_hydra"))
    first = cells(tmp_path / "store")
    victim, other = sorted(k for k in first if k.startswith("gn_gram/"))
    result = tmp_path / "store" / victim / RESULT_FILE
    blob = result.read_bytes()
    result.write_bytes(blob[: len(blob) // 2])
    assert not cell_is_complete(result.parent)
    other_mtime = (tmp_path / "store" / other / RUN_FILE).stat().st_mtime_ns
    time.sleep(1.1)  # run.json's utc_time has one-second resolution

    proc = nlt_run(tmp_path, "+sweep=smoke")
    _check(proc, 0)
    assert proc.stdout.count("(reused)") == 5
    second = cells(tmp_path / "store")
    assert cell_is_complete(result.parent)
    assert len(pd.read_parquet(result)) == second[victim]["rows"]
    assert second[victim]["provenance"]["utc_time"] != first[victim]["provenance"]["utc_time"]
    assert (tmp_path / "store" / other / RUN_FILE).stat().st_mtime_ns == other_mtime


# --- the summary from job directories, without running anything --------------------------------


def test_summary_rows_for_killed_and_never_run_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    cell = tmp_path / "store" / "gd" / "cell"
    write_json(cell / RUN_FILE, {"algorithm": "gd", "dataset": "synthetic", "n": 16, "m": 8,
                                 "d": 2, "seed": 0, "status": "converged", "iterations": 3})
    write_json(sweep / "0" / STARTED_FILE, {"cell": str(cell)})
    write_json(sweep / "0" / OUTCOME_FILE, {"cell": str(cell), "status": "converged"})
    write_json(sweep / "1" / STARTED_FILE, {"cell": "x", "algorithm": "gn_gram", "n": 32})
    (sweep / "2").mkdir()
    write_json(sweep / SWEEP_FILE, {"total_cells": 5})
    table = summary_table(job_rows(sweep))
    assert table["status"].value_counts().to_dict() == {"not_run": 3, "converged": 1,
                                                        "killed": 1}
    killed = table[table["status"] == "killed"].iloc[0]
    assert killed["algorithm"] == "gn_gram" and killed["n"] == 32


def test_paper_suite_expands_to_sweeps_with_the_command_line_appended():
    parts = suite_parts(["-m", "+sweep=paper", "store=/x", "hydra/launcher=joblib"])
    assert parts is not None and len(parts) >= 6
    assert all(p[0] == "-m" and p[-2:] == ["store=/x", "hydra/launcher=joblib"] for p in parts)
    presets = {a.split("=", 1)[1] for p in parts for a in p if a.startswith("+sweep=")}
    assert presets == {"convergence", "sample_scaling", "width_scaling", "sketch_ablation",
                       "ntk"}
    assert suite_parts(["-m", "+sweep=smoke"]) is None


# --- the NTK diagnostic (record.ntk) -------------------------------------------------------------


def test_ntk_diagnostic_columns(tmp_path):
    from harness.model import make_problem
    from harness.model.ntk import ntk_lambda, ntk_matrix
    from tests.helpers import run_in_process

    args = ("algorithm=gn_gram", "data.n=24", "data.d=5", "model.m=256", "dtype=float64",
            "max_iters=3", "seed=1")
    outcome, run, rows = run_in_process(tmp_path / "store", *args, "record.ntk=true")
    problem = make_problem("synthetic", n=24, d=5, m=256, seed=1, dtype=torch.float64)
    lam = ntk_lambda(problem.X)
    G0 = problem.linearize().jacobian.gram()
    gap = torch.linalg.eigvalsh(G0 - ntk_matrix(problem.X)).abs().max().item()
    assert run["ntk_lambda"] == pytest.approx(lam, rel=1e-10)
    assert run["ntk_gram_gap"] == pytest.approx(gap, rel=1e-8)
    assert rows["ntk_weight_change"].iloc[0] == 0.0
    assert rows["ntk_weight_change"].iloc[-1] > 0.0
    lam0 = torch.linalg.eigvalsh(G0)[0].item()
    assert rows["ntk_lambda_min_ratio"].iloc[0] == pytest.approx(lam0 / lam, rel=1e-8)
    # off by default, and then the cell hash is the one it had before the option existed
    plain, plain_run, plain_rows = run_in_process(tmp_path / "store", *args)
    assert "record" not in plain_run["identity"] and "ntk_weight_change" not in plain_rows
    assert plain.cell != outcome.cell
    assert read_run(plain.cell)["status"] == run["status"]


@pytest.mark.parametrize("name,gpus", [("slurm", None), ("slurm_gpu", 1)])
def test_slurm_launcher_configs_compose(name, gpus):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.execution.config import CONF_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={name}"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.cpus_per_task == 8 and launcher.gpus_per_node == gpus
    assert "partition" in launcher and launcher.timeout_min >= 60


def _preflight_preset(name: str) -> int:
    from harness.execution.preflight import preflight

    parts = suite_parts(["-m", f"+sweep={name}"])
    checked = 0
    for args in parts if parts is not None else [["-m", f"+sweep={name}"]]:
        # device=cuda is refused without a GPU; the rest of the entry is checked on the CPU
        checked += preflight([a if a != "device=cuda" else "device=cpu" for a in args[1:]])
    return checked


def test_every_grid_preset_passes_the_preflight():
    """Each grid composes and validates: no typo in a key, a method or a parameter name."""
    from harness.execution.preflight import sweep_presets

    grids = [p for p in sweep_presets() if suite_parts(["-m", f"+sweep={p}"]) is None]
    assert {"smoke", "demo", "sample_scaling", "width_scaling", "convergence",
            "sketch_ablation", "ntk"} <= set(grids)
    assert sum(_preflight_preset(p) for p in grids) > 50


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["paper", "paper_gpu"])
def test_every_suite_entry_passes_the_preflight(suite):
    assert _preflight_preset(suite) > 50


def test_a_suite_part_killed_by_a_signal_fails_the_suite(monkeypatch, capsys):
    """A part that dies by a signal (Popen's returncode < 0) is a failure, 128 + signal as a
    shell reports it, never 'exit code 0'."""
    import subprocess

    from harness.execution.app import run_suite

    codes = iter([-15, 0])

    class Part:
        def __init__(self, argv):
            self.argv = argv

        def wait(self):
            return next(codes)

    monkeypatch.setattr(subprocess, "Popen", Part)
    assert run_suite([["first"], ["second"]]) == 143
    assert "killed by signal 15" in capsys.readouterr().err
