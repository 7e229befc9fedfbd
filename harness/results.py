"""The results store: one directory per cell, holding ``result.parquet`` and ``run.json``.

A cell is one resolved configuration (method and hyperparameters, data, sizes, seeds, device,
dtype, stopping rules). Its directory name is readable and ends in a hash of that
configuration, so rerunning a sweep finds the cells it already has. Files are written to a
temporary name in the same directory and renamed into place: a killed job leaves either the
old file, or the new one, never half of one.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

#: Statuses of a finished cell. Missing, ``failed`` and ``skipped`` cells are rerun on resume
#: (a skipped cell costs one feasibility check, and the memory budget may have changed).
STATUSES = ("converged", "max_iters", "time_budget", "diverged", "skipped", "failed")
DONE_STATUSES = ("converged", "max_iters", "time_budget", "diverged")

#: Columns of ``result.parquet``, one row per outer iteration (row 0: the initial point).
#: Phase times add ``t_<phase>`` columns (seconds within the step).
COLUMNS = {
    "algorithm": "method registry name",
    "dataset": "dataset registry name",
    "n": "samples", "m": "width", "d": "input dimension", "seed": "master seed",
    "device": "cpu or cuda", "dtype": "float32 or float64", "threads": "torch CPU threads",
    "git_commit": "commit of the harness",
    "iter": "outer iteration (0 = initial point)",
    "loss": "L = ½‖f − y‖² after the step",
    "rel_loss": "L_t / L_0",
    "step_time_s": "synchronised wall time of this step (excludes evaluation and logging)",
    "time_s": "cumulative step time (setup excluded, see run.json)",
    "inner_iters": "inner solver iterations of this step (null for direct methods)",
}

#: Keys of the run configuration that do not change what is computed: they are left out of
#: the cell hash so that changing them never reruns a cell.
NON_IDENTITY_KEYS = ("store", "force", "progress_interval_s", "testing", "memory_budget_gb")

RESULT_FILE, RUN_FILE = "result.parquet", "run.json"


#: How a trajectory's step times become one time per outer iteration (``time_per_iteration``).
#: ``median``: the median step time over steps 1..T, the cost of a typical (steady) step,
#: robust to a loaded machine; with ``refresh=adaptive`` it is a step that reuses the factor.
#: ``amortised``: the mean over every timed step 1..T, refreshes included, so that T times it
#: is the run's step time: the number to compare methods by. Step 1 is an ordinary step: the
#: runner takes one untimed warm-up step before the timed loop, for every method.
TIME_PER_ITERATION_RULES = ("median", "amortised")


def time_per_iteration(steps: pd.DataFrame, rule: str = "median") -> float | None:
    """The time per outer iteration of a trajectory (rows with ``iter`` and ``step_time_s``;
    row 0, the initial point, is left out) under ``rule`` (``TIME_PER_ITERATION_RULES``).
    None when there is no step."""
    if rule not in TIME_PER_ITERATION_RULES:
        raise ValueError(f"Unsupported time-per-iteration rule {rule!r}. Supported: "
                         f"{list(TIME_PER_ITERATION_RULES)}")
    times = steps.loc[steps["iter"] > 0, "step_time_s"].dropna()
    if not len(times):
        return None
    return float(times.median() if rule == "median" else times.mean())


def config_hash(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cell_name(identity: dict[str, Any]) -> str:
    a, data = identity["algorithm"], identity["data"]
    return (f"{a['name']}/{data['name']}_n{data['n']}_m{identity['model']['m']}_d{data['d']}"
            f"_s{identity['seed']}_{identity['dtype']}_{identity['device']}"
            f"_{config_hash(identity)}")


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_cell(cell: Path, rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
    """Write the trajectory, then ``run.json`` last: a cell counts as done only once it exists."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS) if not rows else None)
    _atomic_write(cell / RESULT_FILE, lambda p: frame.to_parquet(p, index=False))

    def dump(p):
        with open(p, "w") as fh:
            json.dump(run, fh, indent=2, default=str)
            fh.write("\n")

    _atomic_write(cell / RUN_FILE, dump)


def read_run(cell: Path) -> dict[str, Any] | None:
    """run.json of a cell, or None if missing or unreadable."""
    try:
        with open(cell / RUN_FILE) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def cell_is_complete(cell: Path) -> bool:
    """A cell is done when run.json has a final non-failed status and its parquet reads back
    with the number of rows run.json promises (a truncated or corrupt file means: rerun)."""
    run = read_run(cell)
    if not run or run.get("status") not in DONE_STATUSES:
        return False
    try:
        rows = len(pd.read_parquet(cell / RESULT_FILE))
    except Exception:
        return False
    return rows == run.get("rows", rows)


# --- provenance --------------------------------------------------------------------------------

PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "hydra-core", "omegaconf", "scipy")
REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the harness checkout; ('unknown', False) outside a git checkout.

    Dirty means tracked code or configuration differs from the commit. The committed reports
    (``reports/``) are outputs: regenerating them while a sweep runs does not make it dirty.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", ":(exclude)reports"],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
                                check=True).stdout.strip()
        return commit, bool(status)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(device_name: str, threads: int) -> dict[str, Any]:
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "threads": threads,
        "device_name": device_name,
        "hostname": platform.node(),
        "platform": platform.platform(),
        "utc_time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
