"""Read every cell of one or more results stores into two pandas tables, never raising on bad
data: what cannot be read goes into a list of problems that the report prints.

Layout read (``harness.execution.results``): ``<store>/<algorithm>/<cell>/result.parquet`` (one
row per
outer iteration, row 0 the initial point) and ``run.json`` (status, reason, configuration,
provenance). Hydra's own files under ``<store>/_hydra/`` and hidden or temporary files are
ignored.

* ``runs``: one row per cell: the run.json fields the report needs, flattened (status, sizes,
  hyperparameters, provenance, peak memory, any extra scalar field a method adds), plus
  ``variant`` (the algorithm name with the hyperparameters that vary between its cells) and
  ``data_ok`` (the trajectory was read back whole).
* ``rows``: the per-iteration rows of every readable trajectory, with the cell's id.

A run.json of the wrong shape (a list, a string where an object belongs, a non-integer size)
is a problem of its cell; a result.parquet that is not the file run.json records (its sha256 and
row count) is left out; a cell held by several stores is counted once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.common.errors import ConfigError
from harness.execution.migrate import upgrade_rows
from harness.execution.results import (
    DONE_STATUSES,
    RESULT_FILE,
    RUN_FILE,
    data_problem,
    identity_problem,
    load_run,
    regular_file_problem,
)
from harness.linalg.kernels import format_routes
from harness.reporting.text import md_escape

#: run.json keys copied as they are; nested ones are flattened below.
RUN_KEYS = ("status", "reason", "algorithm", "dataset", "model", "depth", "n", "m", "d", "seed",
            "device", "dtype",
            "initial_loss", "final_loss", "final_rel_loss", "iterations", "rows",
            "total_time_s", "setup_time_s", "wall_time_s", "estimated_memory_bytes",
            "memory_budget_bytes", "peak_memory_bytes", "peak_memory_kind", "config_hash",
            "disturbed", "disturbed_reason", "step_time_iqr_s")
CONFIG_KEYS = ("target_rel_loss", "max_iters", "time_budget_s", "memory_budget_gb")
PROVENANCE_KEYS = ("git_commit", "git_dirty", "threads", "device_name", "hostname", "platform",
                   "utc_time", "launcher", "cpu_model", "cpu_capability")
#: run.json keys never turned into columns (nested or bulky).
_SKIP_KEYS = {"config", "identity", "provenance", "setup_phases_s", "label", "cell"}


@dataclass
class Problem:
    """One thing the loader could not use, and why."""

    path: str
    # unreadable run.json | unreadable result | truncated | foreign result | no run.json |
    # no result | unreadable cell | duplicate cell | foreign cell
    kind: str
    detail: str


@dataclass
class Loaded:
    runs: pd.DataFrame
    rows: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    stores: list[Path] = field(default_factory=list)


def find_cells(store: Path, problems: list[Problem] | None = None) -> list[Path]:
    """Cell directories of a store: ``<store>/<algorithm>/<cell>`` holding either file. A
    directory that cannot be listed is a problem (when ``problems`` is given), not an error."""
    def listing(directory: Path) -> list[Path]:
        try:
            return sorted(p for p in directory.iterdir() if p.is_dir())
        except OSError as exc:
            if problems is not None:
                problems.append(Problem(str(directory), "unreadable directory",
                                        f"{type(exc).__name__}: {exc.strerror or exc}"))
            return []

    cells = []
    for alg_dir in listing(store):
        if alg_dir.name.startswith(("_", ".")):
            continue
        for cell in listing(alg_dir):
            if cell.name.startswith((".", "_")):
                continue
            if os.path.lexists(cell / RUN_FILE) or os.path.lexists(cell / RESULT_FILE):
                cells.append(cell)
    return cells


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _run_record(run: dict[str, Any], cell_id: str, store: Path) -> dict[str, Any]:
    rec: dict[str, Any] = {"cell": cell_id, "store": str(store)}
    for key in RUN_KEYS:
        rec[key] = run.get(key)
    # Extra scalar fields a method or diagnostic adds (e.g. an NTK distance) become columns.
    for key, value in run.items():
        if key not in rec and key not in _SKIP_KEYS and _scalar(value):
            rec[key] = value
    config = run.get("config") or {}
    for key in CONFIG_KEYS:
        rec[key] = config.get(key)
    prov = run.get("provenance") or {}
    for key in PROVENANCE_KEYS:
        rec[key] = prov.get(key, run.get(key))
    # Newer runs describe the launch in provenance["launch"] (launcher, parallel jobs).
    launch = prov.get("launch") if isinstance(prov.get("launch"), dict) else {}
    rec["launcher"] = rec["launcher"] or launch.get("launcher")
    rec["parallel_jobs"] = launch.get("parallel_jobs")
    rec["torch_version"] = (prov.get("packages") or {}).get("torch")
    flags = prov.get("cpu_flags")
    rec["cpu_flags"] = " ".join(map(str, flags)) if isinstance(flags, list) else None
    # the kernel routes this cell's products took (harness/linalg/kernels.py), as one string
    routes = (run.get("kernels") or {}).get("routes") if isinstance(run.get("kernels"),
                                                                     dict) else None
    rec["kernel_routes"] = (format_routes(routes) if isinstance(routes, dict) and routes
                            else None)
    alg = dict((run.get("identity") or {}).get("algorithm") or config.get("algorithm") or {})
    alg.pop("name", None)
    rec["hyperparameters"] = json.dumps(alg, sort_keys=True, default=str)
    data = dict(config.get("data") or {})
    for key in ("name", "n", "d"):
        data.pop(key, None)
    rec["data_params"] = json.dumps(data, sort_keys=True, default=str)
    return rec


#: result.parquet columns the report computes with, and that must be numeric.
REQUIRED_COLUMNS = ("iter", "loss", "rel_loss", "step_time_s", "time_s")


def _frame_problem(frame: pd.DataFrame) -> str | None:
    if not len(frame):  # a cell without steps (skipped, failed early): nothing to compute with
        return None
    for col in REQUIRED_COLUMNS:
        if col not in frame.columns:
            return f"no column {col!r}"
        if not pd.api.types.is_numeric_dtype(frame[col]):
            return f"column {col!r} is not numeric ({frame[col].dtype})"
    return None


def _read_cell(cell: Path, store: Path, problems: list[Problem]):
    """(run record, trajectory) of one cell; (None, None) with a Problem when run.json is
    unusable. Anything unexpected in one cell becomes a Problem, never an exception."""
    try:
        return _read_cell_checked(cell, store, problems)
    except Exception as exc:  # one bad cell never stops the report
        problems.append(Problem(str(cell), "unreadable cell", f"{type(exc).__name__}: {exc}"
                                [:200]))
        return None, None


def _read_cell_checked(cell: Path, store: Path, problems: list[Problem]):
    cell_id = os.path.relpath(cell, store)
    run = None
    if os.path.lexists(cell / RUN_FILE):
        run, why = load_run(cell)
        if run is None:
            problems.append(Problem(str(cell / RUN_FILE), "unreadable run.json", why or "?"))
    else:
        problems.append(Problem(str(cell), "no run.json",
                                "trajectory without run.json: the run was interrupted"))
    if run is not None:
        why = identity_problem(cell, run)
        if why:  # a record of another cell: counting it would count that cell twice
            problems.append(Problem(str(cell / RUN_FILE), "foreign cell", why))
            return None, None
    frame = None
    if (cell / RESULT_FILE).exists():
        try:
            odd = regular_file_problem(cell / RESULT_FILE)
            if odd:
                raise ValueError(odd)
            frame = pd.read_parquet(cell / RESULT_FILE)
        except Exception as exc:  # pyarrow raises several types on a damaged file
            problems.append(Problem(str(cell / RESULT_FILE), "unreadable result",
                                    f"{type(exc).__name__}: {exc}"[:200]))
    elif run is not None:
        problems.append(Problem(str(cell), "no result", "run.json without result.parquet"))
    if run is None:
        return None, None
    rec = _run_record(run, cell_id, store)
    rec["data_ok"] = frame is not None
    if frame is not None:
        why = data_problem(cell, run) or _frame_problem(frame)
        if why:
            kind = "truncated" if "rows, run.json promises" in why else "foreign result"
            problems.append(Problem(str(cell / RESULT_FILE), kind, why))
            rec["data_ok"] = False
            frame = None
    if frame is not None and len(frame):
        frame = upgrade_rows(frame, run)
        frame["cell"] = cell_id
        frame["store"] = str(store)
    else:
        frame = None  # nothing to add to the per-iteration table
    return rec, frame


def _dedupe(found: list[tuple[Path, str, dict, Any]], problems: list[Problem]):
    """A cell held by several stores (the same directory name: the same configuration and
    hash) counts once: a done copy with readable data wins, then the newer one."""
    best: dict[str, tuple[Path, str, dict, Any]] = {}
    for item in found:
        store, cell_id, rec, _ = item
        held = best.get(cell_id)
        if held is None:
            best[cell_id] = item
            continue

        def rank(entry):
            r = entry[2]
            return (r.get("status") in DONE_STATUSES, bool(r.get("data_ok")),
                    str(r.get("utc_time") or ""))

        keep, drop = (item, held) if rank(item) > rank(held) else (held, item)
        best[cell_id] = keep
        problems.append(Problem(str(drop[0] / cell_id), "duplicate cell",
                                f"also in {keep[0]}; counted once, from there"))
    return list(best.values())


def label_variants(runs: pd.DataFrame) -> pd.Series:
    """One name per variant, the same as in progress lines and the sweep summary: the named
    configuration a cell runs (``gn_sketch``, ``gn_sketch_paper``: run.json's ``preset``),
    else ``algorithm (k=v, ...)`` naming the hyperparameters that take more than one value
    among that algorithm's cells (``algorithm`` alone if none varies). A model other than
    two_layer is part of the variant: ``gn_sketch [mlp L=3]`` (``model`` and ``depth`` of
    every cell, ``harness.execution.migrate`` filling them in old ones)."""
    labels = pd.Series(index=runs.index, dtype=object)
    model_tag = pd.Series(["" if m == "two_layer" else f" [{m} L={int(L)}]"
                           for m, L in zip(runs["model"], runs["depth"])], index=runs.index)
    presets = runs["preset"] if "preset" in runs else pd.Series(None, index=runs.index)
    named = pd.Series([isinstance(p, str) and p != "" for p in presets], index=runs.index)
    labels[named] = presets[named]
    for alg, group in runs.groupby("algorithm", sort=True):
        params = [json.loads(h) for h in group["hyperparameters"]]
        keys = sorted({k for p in params for k in p})
        varying = [k for k in keys if len({json.dumps(p.get(k), default=str)
                                           for p in params}) > 1]
        for idx, p in zip(group.index, params):
            if named[idx]:
                continue
            if varying:
                inside = ", ".join(f"{k}={p.get(k)}" for k in varying)
                labels[idx] = f"{alg} ({inside})"
            else:
                labels[idx] = str(alg)
    return labels + model_tag


#: A report's own table (``results.parquet`` in its directory) read back as its cells: a
#: committed report can be regenerated by the code of the day without the stores it came from.
REPORT_TABLE = "results.parquet"


def is_report_table(path: Path) -> bool:
    return path.name == REPORT_TABLE and path.is_file()


def store_paths(stores: list[str | Path]) -> list[Path]:
    """The stores' paths (a directory, or a report's ``results.parquet``); one that is neither,
    or unreadable, is a ``ConfigError``."""
    paths = []
    for s in stores:
        p = Path(os.path.expanduser(str(s)))
        if str(s).strip() and is_report_table(p):
            paths.append(p)
            continue
        if not str(s).strip() or not p.is_dir():
            raise ConfigError(f"results store {str(s)!r} is not a directory (nor a report's "
                              f"{REPORT_TABLE})")
        if not os.access(p, os.R_OK | os.X_OK):
            raise ConfigError(f"results store {str(s)!r} is not readable")
        paths.append(p)
    return paths


def load_stores(stores: list[str | Path]) -> Loaded:
    """Every cell of every store. A store that does not exist is a ``ConfigError`` (the user
    named it); anything wrong inside a store becomes a ``Problem``."""
    paths = store_paths(stores)
    problems: list[Problem] = []
    found = []
    tables = [_from_report_table(p, problems) for p in paths if is_report_table(p)]
    for store in paths:
        if is_report_table(store):
            continue
        for cell in find_cells(store, problems):
            rec, frame = _read_cell(cell, store, problems)
            if rec is not None:
                found.append((store, rec["cell"], rec, frame))
    found = _dedupe(found, problems)
    records = [rec for _, _, rec, _ in found]
    frames = [frame for _, _, _, frame in found if frame is not None]
    runs = pd.DataFrame(records)
    if len(runs) and len(paths) > 1:
        # Cell ids of several stores carry the store's name (its path where names repeat).
        names = [p.name for p in paths]
        label = {str(p): (p.name if names.count(p.name) == 1 else str(p)) for p in paths}
        runs["cell"] = [f"{label[s]}/{c}" for s, c in zip(runs["store"], runs["cell"])]
        for f in frames:
            f["cell"] = [f"{label[s]}/{c}" for s, c in zip(f["store"], f["cell"])]
    for table_runs, table_rows in tables:  # their cell ids are labelled already
        runs = pd.concat([runs, table_runs], ignore_index=True)
        frames.append(table_rows)
    if len(runs):
        dup = runs["cell"].duplicated(keep="first")
        for cell in runs.loc[dup, "cell"]:
            problems.append(Problem(str(cell), "duplicate cell", "the same cell id in two "
                                    "inputs; the first one read is used"))
        runs = runs.loc[~dup].reset_index(drop=True)
        if "disturbed" not in runs:
            runs["disturbed"] = None
        runs["depth"] = runs["depth"].astype(int)
        # hygiene (harness.execution.hygiene): a cell from before it has no field and was
        # not measured; it is not counted as disturbed
        runs["hygiene_measured"] = [isinstance(v, (bool, np.bool_)) for v in runs["disturbed"]]
        runs["disturbed"] = [v is True or v is np.True_ for v in runs["disturbed"]]
        runs["variant"] = label_variants(runs)
        for col in ("n", "m", "d", "seed", "iterations", "rows"):
            runs[col] = pd.to_numeric(runs[col], errors="coerce")
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(rows):
        if "inner_iters" in rows:
            rows["inner_iters"] = pd.to_numeric(rows["inner_iters"], errors="coerce")
        rows = rows.merge(runs[["cell", "variant"]], on="cell", how="left")
    return Loaded(runs=runs, rows=rows, problems=problems, stores=paths)


def _from_report_table(path: Path, problems: list[Problem]) -> tuple[pd.DataFrame,
                                                                      pd.DataFrame]:
    """A report's ``results.parquet`` (``merged_table``: each cell's run fields, then its
    per-iteration rows from ``iter`` on) split back into runs and rows."""
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable table is one problem
        problems.append(Problem(str(path), "unreadable report table",
                                f"{type(exc).__name__}: {exc}"))
        return pd.DataFrame(), pd.DataFrame()
    if not len(table) or "cell" not in table or "iter" not in table:
        problems.append(Problem(str(path), "not a report table",
                                "no `cell` and `iter` columns (nlt-report's results.parquet)"))
        return pd.DataFrame(), pd.DataFrame()
    cols = list(table.columns)
    run_cols = [c for c in cols[:cols.index("iter")] if c not in ("variant", "hygiene_measured")]
    first = table.drop_duplicates("cell").reset_index(drop=True)
    runs = first[run_cols].copy()
    if "hygiene_measured" in first and "disturbed" in runs:  # "not measured" stays so
        runs["disturbed"] = [d if m is True or m is np.True_ else None
                             for d, m in zip(runs["disturbed"], first["hygiene_measured"])]
    runs = runs.astype(object).where(runs.notna(), None)
    for col in runs.columns:  # merged_table wrote mixed numeric columns as text
        if col.endswith(_NUMERIC_SUFFIXES) or col.startswith("ntk_") or col in _NUMERIC_RUN:
            runs[col] = [None if v is None else _number(v) for v in runs[col]]
    # a cell's rows held its identity columns too (merged_table keeps one copy)
    ident = [c for c in _ROW_IDENTITY if c in cols[:cols.index("iter")]]
    rows = table.loc[table["iter"].notna(), ["cell", *ident, *cols[cols.index("iter"):]]]
    return runs, rows.reset_index(drop=True)


_NUMERIC_SUFFIXES = ("_bytes", "_s", "_loss", "_gb")
_NUMERIC_RUN = {"iterations", "rows", "warmup_steps", "threads", "parallel_jobs", "max_iters"}


def _number(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return float(v) if any(c in v for c in ".eEn") else int(v)
        except ValueError:
            return v
    return v


#: The identity columns a cell's result.parquet repeats on every row.
_ROW_IDENTITY = ("store", "algorithm", "dataset", "model", "depth", "n", "m", "d", "seed",
                 "device", "dtype")


def leave_out_disturbed(loaded: Loaded, include: bool = False) -> tuple[Loaded, list[str]]:
    """The cells a report computes with, and the lines its top says about hygiene: cells
    marked ``disturbed`` (the machine was loaded or its speed drifted while they ran) are
    left out of every figure, fit, verdict and crossover, unless ``include``."""
    runs = loaded.runs
    if not len(runs) or "disturbed" not in runs:
        return loaded, []
    bad = runs["disturbed"].astype(bool)
    unmeasured = int((~runs["hygiene_measured"].astype(bool)).sum())
    lines = []
    if unmeasured:
        lines.append(f"{unmeasured} of {len(runs)} cells were run before measurement hygiene "
                     "was recorded: whether their machine was quiet is not known.")
    if not bad.any():
        if unmeasured < len(runs):
            lines.append("No cell was disturbed: the machine stayed quiet while they ran "
                         "(harness/execution/hygiene.py).")
        return loaded, lines
    reasons = runs.loc[bad, "disturbed_reason"].dropna().astype(str)
    example = f" (e.g. {md_escape(reasons.iloc[0])})" if len(reasons) else ""
    what = (f"**{int(bad.sum())} of {len(runs)} cells were measured on a disturbed machine**"
            f"{example}: another load shared their CPUs or the reference kernel's speed "
            "drifted, so their timings are not trustworthy.")
    if include:
        lines.append(what + " They are included (`--include-disturbed`); column "
                     "`disturbed` of cells.csv marks them.")
        return loaded, lines
    lines.append(what + " They are left out of every figure, fit, verdict and the crossover "
                 "map; `nlt-report --include-disturbed` includes them. Rerun them on a quiet "
                 "machine with `force=true`.")
    keep = runs.loc[~bad].reset_index(drop=True)
    rows = loaded.rows
    if len(rows) and "cell" in rows:
        rows = rows[rows["cell"].isin(set(keep["cell"]))].reset_index(drop=True)
    return Loaded(runs=keep, rows=rows, problems=loaded.problems, stores=loaded.stores), lines


def merged_table(loaded: Loaded) -> pd.DataFrame:
    """Per-iteration rows joined with per-cell run fields; a cell without rows (skipped,
    failed before its first step) keeps one row with a null ``iter``, so every cell is there."""
    runs = loaded.runs
    if not len(runs):
        return pd.DataFrame()
    rows = loaded.rows
    run_cols = list(runs.columns)
    if not len(rows):
        return runs[run_cols].copy()
    shared = [c for c in rows.columns if c in runs.columns and c != "cell"]
    out = runs[run_cols].merge(rows.drop(columns=shared), on="cell", how="left")
    # Object columns holding mixed Python values do not round-trip through parquet.
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and v == v}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool}):
                out[col] = [None if v is None or (isinstance(v, float) and np.isnan(v))
                            else str(v) for v in out[col]]
    return out
