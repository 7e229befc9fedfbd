"""The end-of-sweep table: one line per cell with its status, iterations and times."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from harness.results import RESULT_FILE, read_run

OUTCOME_FILE = "outcome.json"

SUMMARY_COLUMNS = ["algorithm", "dataset", "n", "m", "d", "seed", "status", "iters",
                   "rel_loss", "time_per_iter_s", "total_time_s", "reason"]


def cell_summary(cell: Path) -> dict:
    run = read_run(cell) or {"status": "missing", "reason": f"no readable run.json in {cell}"}
    row = {k: run.get(k) for k in ("algorithm", "dataset", "n", "m", "d", "seed", "status")}
    row["iters"] = run.get("iterations")
    row["rel_loss"] = run.get("final_rel_loss")
    row["total_time_s"] = run.get("total_time_s")
    row["time_per_iter_s"] = None
    try:
        steps = pd.read_parquet(cell / RESULT_FILE, columns=["iter", "step_time_s"])
        steps = steps[steps["iter"] > 0]
        if len(steps):
            row["time_per_iter_s"] = float(steps["step_time_s"].median())
    except Exception:
        pass
    reason = str(run.get("reason") or "")
    row["reason"] = reason if len(reason) <= 60 else reason[:57] + "..."
    return row


def summary_table(cells: Iterable[Path]) -> pd.DataFrame:
    frame = pd.DataFrame([cell_summary(c) for c in cells], columns=SUMMARY_COLUMNS)
    return frame.sort_values(["algorithm", "dataset", "n", "m", "d", "seed"], kind="stable",
                             na_position="last").reset_index(drop=True)


def format_table(frame: pd.DataFrame) -> str:
    fmt = {"rel_loss": "{:.2e}".format, "time_per_iter_s": "{:.4f}".format,
           "total_time_s": "{:.3f}".format}
    shown = frame.copy()
    for col, f in fmt.items():
        shown[col] = [f(v) if v is not None and v == v else "-" for v in shown[col]]
    counts = frame["status"].value_counts().to_dict()
    footer = "cells by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return shown.to_string(index=False) + "\n" + footer


def write_outcome(job_dir: Path, cell: Path, status: str) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / OUTCOME_FILE).write_text(json.dumps({"cell": str(cell), "status": status}))


def sweep_cells(sweep_dir: Path) -> list[Path]:
    cells = []
    for path in sorted(sweep_dir.glob(f"*/{OUTCOME_FILE}")):
        try:
            cells.append(Path(json.loads(path.read_text())["cell"]))
        except (OSError, ValueError, KeyError):
            continue
    return cells
