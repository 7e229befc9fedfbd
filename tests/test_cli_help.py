"""nlt-run's own help page and the preset-without-multirun refusal (Hydra conventions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _nlt_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness.execution.app", *args], cwd=tmp_path,
                          env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_is_the_apps_own_page(tmp_path):
    proc = _nlt_run(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("nlt-run: run the BPSW21 benchmark harness")
    assert "_schema_" not in out and "powered by Hydra" not in out
    groups: dict[str, str] = {}  # the first listing of each: the config dump comes later
    for line in out.splitlines():
        key, _, choices = line.partition(":")
        if key in ("algorithm", "data", "+sweep", "hydra/launcher"):
            groups.setdefault(key, choices)
    assert set(groups) == {"algorithm", "data", "+sweep", "hydra/launcher"}
    assert {"gn_sketch", "gn_sketch_paper", "kfac"} <= set(groups["algorithm"].replace(
        ",", " ").split())
    assert {"basic", "joblib", "slurm", "slurm_gpu"} <= set(
        groups["hydra/launcher"].replace(",", " ").split())
    assert "nlt-run -m +sweep=demo" in out
    assert not (tmp_path / "results").exists()  # printing help runs nothing


def test_a_preset_without_multirun_is_refused_with_the_fix(tmp_path):
    proc = _nlt_run(tmp_path, "+sweep=smoke", f"store={tmp_path / 'store'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs -m" in lines[0] and "nlt-run -m +sweep=smoke" in lines[0]
    assert not (tmp_path / "store").exists()
