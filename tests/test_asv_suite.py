"""The asv suite cannot rot: ``asv check`` imports and validates every benchmark, and one
benchmark runs once (``--quick``) in the current environment (``-E existing``)."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
asv = pytest.importorskip("asv")


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.fixture
def asv_env(tmp_path):
    """A copy of asv.conf.json with absolute paths and results under tmp_path, a machine file
    in a private HOME, and the command prefix for this interpreter."""
    if shutil.which("git") is None or _commit() is None:
        pytest.skip("no git commit to attach asv results to")
    text = (ROOT / "asv.conf.json").read_text()
    conf = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks" / "benchmarks"),
                results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"),
                env_dir=str(tmp_path / "env"))
    path = tmp_path / "asv.conf.json"
    path.write_text(json.dumps(conf))
    env = {**os.environ, "HOME": str(tmp_path), "NLT_ASV_LARGE": "0"}
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--machine", "ci",
                    "--config", str(path)], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=60)
    return path, env, tmp_path


def _asv(args: list[str], conf: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asv", *args, "--config", str(conf)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)


def test_asv_check_finds_no_problems(asv_env):
    conf, env, _ = asv_env
    out = _asv(["check", "-E", f"existing:{sys.executable}"], conf, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout + out.stderr


def test_asv_quick_run_records_one_benchmark(asv_env):
    conf, env, tmp = asv_env
    bench = "operators.Operators.time_gram_matvec"
    out = _asv(["run", "-E", f"existing:{sys.executable}", "--quick", "--bench", bench,
                "--set-commit-hash", _commit(), "--machine", "ci"], conf, env)
    assert out.returncode == 0, out.stdout + out.stderr
    files = [p for p in (tmp / "results" / "ci").glob("*.json") if p.name != "machine.json"]
    assert len(files) == 1
    results = json.loads(files[0].read_text())["results"]
    assert bench in results
    timings = results[bench][0]  # one value per (n, m)
    assert any(t is not None and t > 0 for t in timings)


@pytest.mark.parametrize("driver", ["harness.execution.loop", "stand-ins"])
def test_iterations_to_target_use_the_harness_driver_else_its_stand_ins(driver, monkeypatch):
    """The suite drives a run with harness.execution.loop's Stopping and timed_step; against a
    commit
    without them, with its two stand-ins, to the same count."""
    import harness.execution.loop

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    if driver == "stand-ins":
        monkeypatch.delattr(harness.execution.loop, "Stopping")
        monkeypatch.delattr(harness.execution.loop, "timed_step")
    sys.modules.pop("benchmarks.algorithms", None)
    try:
        suite = importlib.import_module("benchmarks.algorithms")
        assert suite.Stopping.__module__ == ("harness.execution.loop"
                                             if driver == "harness.execution.loop"
                                             else "benchmarks.algorithms")
        prob, alg = suite._build("gn_sketch", (256, 4096))
        outer, inner = suite._run_to_target(prob, alg)
    finally:
        sys.modules.pop("benchmarks.algorithms", None)
    assert 1 <= outer <= suite.MAX_OUTER and len(inner) == outer and min(inner) >= 1
