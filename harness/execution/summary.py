"""The end-of-sweep table: one line per cell with its status, iterations and times.

A sweep directory (``hydra.sweep.dir``) holds ``sweep.json`` (how many cells the sweep has,
written before the first job starts) and one job directory per started job. A job writes
``started.json`` (its cell) before it runs the cell and ``outcome.json`` after. The table is
built from these files alone, so it is the same whichever launcher ran the jobs and in
whichever process they ran:

- ``outcome.json`` present: the row comes from the cell's ``run.json``;
- ``outcome.json`` with status ``interrupted``: Ctrl-C stopped the cell, nothing was written;
- ``started.json`` but no ``outcome.json``: the job process died while running the cell (a
  SIGKILL of the job itself, a node lost on a cluster): status ``killed``;
- a job directory without either, or fewer job directories than cells: ``not_run``.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.common.io import write_json
from harness.execution import hygiene
from harness.execution.results import RESULT_FILE, read_run, time_per_iteration

OUTCOME_FILE, STARTED_FILE, SWEEP_FILE = "outcome.json", "started.json", "sweep.json"

#: ``P``: the ranks the cell ran on (distributed; 1 for one process), shown only where > 1
SUMMARY_COLUMNS = ["algorithm", "dataset", "n", "m", "d", "seed", "P", "status", "iters",
                   "rel_loss", "time_per_iter_s", "iqr_s", "total_time_s", "disturbed",
                   "reason"]

#: A job whose cell was stopped by Ctrl-C, SIGTERM or SIGHUP: its outcome.json says so
#: (nothing was written).
INTERRUPTED = "interrupted"

#: Statuses that make a sweep exit nonzero: the cell has no usable result.
FAILED_STATUSES = ("failed", "killed", "not_run", "missing", INTERRUPTED)

_IDENTITY = ("algorithm", "dataset", "n", "m", "d", "seed")


def _short(reason: Any) -> str:
    reason = str(reason or "")
    return reason if len(reason) <= 60 else reason[:57] + "..."


def cell_summary(cell: Path) -> dict:
    run = read_run(cell) or {"status": "missing", "reason": f"no readable run.json in {cell}"}
    row = {k: run.get(k) for k in (*_IDENTITY, "status")}
    if run.get("preset") and run["preset"] != run.get("algorithm"):
        row["algorithm"] = run["preset"]  # a named variant: gn_sketch_paper
    row["P"] = run.get("world_size") or 1
    row["iters"] = run.get("iterations")
    row["rel_loss"] = run.get("final_rel_loss")
    row["total_time_s"] = run.get("total_time_s")
    row["time_per_iter_s"] = None
    # the step times' interquartile range, and the hygiene verdict ('' when not measured)
    row["iqr_s"] = run.get("step_time_iqr_s")
    row["disturbed"] = {True: "yes", False: "no"}.get(run.get("disturbed"), "")
    try:
        steps = pd.read_parquet(cell / RESULT_FILE, columns=["iter", "step_time_s"])
        row["time_per_iter_s"] = time_per_iteration(steps)
    except Exception:
        pass
    row["reason"] = _short(run.get("reason"))
    return row


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def job_rows(sweep_dir: Path) -> list[dict]:
    """One row per job of the sweep, including killed and never-run ones (see module doc)."""
    rows = []
    job_dirs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)) if sweep_dir.is_dir() else []
    for job in job_dirs:
        outcome, started = _read_json(job / OUTCOME_FILE), _read_json(job / STARTED_FILE)
        if outcome and outcome.get("status") == INTERRUPTED:
            row = {k: (started or {}).get(k) for k in _IDENTITY}
            row.update(status=INTERRUPTED, reason="stopped by Ctrl-C or a stop signal "
                       "(SIGTERM, SIGHUP); rerun to resume")
            rows.append(row)
        elif outcome and "cell" in outcome:
            rows.append(cell_summary(Path(outcome["cell"])))
        elif started:
            row = {k: started.get(k) for k in _IDENTITY}
            row.update(status="killed", reason=_short(
                f"job {job.name} died without an outcome (SIGKILL?); log: {job}"))
            rows.append(row)
        else:
            rows.append({"status": "not_run", "reason": f"job {job.name} never started a cell"})
    total = (_read_json(sweep_dir / SWEEP_FILE) or {}).get("total_cells")
    for _ in range(max(0, (total or 0) - len(job_dirs))):
        rows.append({"status": "not_run", "reason": "the launcher never started this job"})
    return rows


def summary_table(cells: Iterable[Path] | list[dict]) -> pd.DataFrame:
    """Rows from cell directories, or from ready-made row dicts (``job_rows``)."""
    rows = [c if isinstance(c, dict) else cell_summary(c) for c in cells]
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    frame["P"] = frame["P"].fillna(1)
    for col in ("n", "m", "d", "seed", "P", "iters"):  # integers, also beside missing values
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    return frame.sort_values(["algorithm", "dataset", "n", "m", "d", "seed", "P"],
                             kind="stable", na_position="last").reset_index(drop=True)


def format_table(frame: pd.DataFrame, max_rows: int = 40) -> str:
    """The table, at most ``max_rows`` lines (failed cells first when cut), and a status count."""
    fmt = {"rel_loss": "{:.2e}".format, "time_per_iter_s": "{:.4f}".format,
           "iqr_s": "{:.4f}".format,
           "total_time_s": "{:.3f}".format}
    shown = frame.copy()
    if "P" in shown and (shown["P"].fillna(1) == 1).all():  # no distributed cell: no column
        shown = shown.drop(columns="P")
    cut = ""
    if len(shown) > max_rows:
        bad = shown["status"].isin(FAILED_STATUSES)
        shown = pd.concat([shown[bad], shown[~bad]]).head(max_rows)
        cut = f"({len(frame) - max_rows} more rows in summary.csv)\n"
    for col, f in fmt.items():
        shown[col] = [f(v) if v is not None and v == v else "-" for v in shown[col]]
    shown = shown.astype(object).where(shown.notna(), "-")
    counts = frame["status"].value_counts().to_dict()
    footer = "cells by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return shown.to_string(index=False) + "\n" + cut + footer


def write_outcome(job_dir: Path, cell: Path, status: str) -> None:
    write_json(job_dir / OUTCOME_FILE, {"cell": str(cell), "status": status})


def sweep_cells(sweep_dir: Path) -> list[Path]:
    """Cells of the jobs that recorded an outcome."""
    cells = []
    for path in sorted(sweep_dir.glob(f"*/{OUTCOME_FILE}")):
        outcome = _read_json(path)
        if outcome and "cell" in outcome:
            cells.append(Path(outcome["cell"]))
    return cells


def resume_command(argv: list[str], prog: str = "nlt-run") -> str:
    """The exact command that resumes an interrupted ``nlt-run argv``: the same arguments
    (finished cells are reused), less the job directory ``nlt-run`` named itself
    (``hydra.sweep.dir=${store}/_hydra/...``), quoted for a POSIX shell."""
    own = ("hydra.sweep.dir=${store}/_hydra/", "hydra.run.dir=${store}/_hydra/")
    args = [a for a in argv if not a.startswith(own)]
    return " ".join([prog, *(shlex.quote(a) for a in args)])


def interrupted_message(argv: list[str], prog: str = "nlt-run") -> str:
    """What Ctrl-C prints: what is kept, and the command that resumes."""
    return (f"{prog}: interrupted (Ctrl-C); the cells that finished are kept. To resume, "
            f"rerun:\n  {resume_command(argv, prog)}")


def warn_if_busy(prog: str = "nlt-run") -> None:
    """One line on stderr when the machine is busy before the sweep starts (hygiene)."""
    if not hygiene.enabled():
        return
    line = hygiene.busy_warning()
    if line:
        print(f"{prog}: {line}", file=sys.stderr, flush=True)


def sweep_eta(sweep_dir: Path, done: int, total: int | None) -> str:
    """``; about 3m05s left``: the sweep's remaining cells at the pace of those done so far
    (wall clock since ``sweep.json``'s start; reused cells make it optimistic); '' when
    unknown or finished."""
    if not total or done <= 0 or done >= total:
        return ""
    try:
        start = json.loads((sweep_dir / SWEEP_FILE).read_text())["utc_start"]
        elapsed = (_dt.datetime.now(_dt.UTC) - _dt.datetime.fromisoformat(start)).total_seconds()
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    left = max(elapsed, 0.0) / done * (total - done)
    minutes, sec = divmod(int(round(left)), 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s" if minutes else \
        f"{sec}s"
    return f"; about {text} left"
