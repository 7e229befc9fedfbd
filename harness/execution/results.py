"""The results store: one directory per cell, holding ``result.parquet`` and ``run.json``.

A cell is one resolved configuration (method and hyperparameters, data, sizes, seeds, device,
dtype, stopping rules). Its directory name is readable and ends in a hash of that
configuration, so rerunning a sweep finds the cells it already has. Files are written to a
temporary name in the same directory and renamed into place: a killed job leaves either the
old file, or the new one, never half of one. run.json, written last, records the sha256 and row
count of result.parquet, so the two are known to belong together; a per-cell lock makes one
writer decide and write at a time, and a rerun of a done cell replaces it only once finished.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.common.errors import ConfigError
from harness.common.io import atomic_write, file_sha256, write_json
from harness.execution.migrate import upgrade_run

#: Statuses of a finished cell. Missing, ``failed`` and ``skipped`` cells are rerun on resume
#: (a skipped cell costs one feasibility check, and the memory budget may have changed).
STATUSES = ("converged", "max_iters", "time_budget", "diverged", "skipped", "failed")
DONE_STATUSES = ("converged", "max_iters", "time_budget", "diverged")
#: The spec's headline target ε for the relative loss L_t / L_0: a run's default stopping
#: target, the report's time to target, the asv iteration counts.
TARGET_REL_LOSS = 1e-6

#: Columns of ``result.parquet``, one row per outer iteration (row 0: the initial point).
#: Phase times add ``t_<phase>`` columns (seconds within the step).
COLUMNS = {
    "algorithm": "method registry name",
    "dataset": "dataset registry name",
    "model": "model registry name (two_layer, mlp)",
    "depth": "trained hidden layers (two_layer: 1)",
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
NON_IDENTITY_KEYS = ("store", "force", "progress_interval_s", "testing", "memory_budget_gb",
                     "cost_profile")

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
    a, data, model = identity["algorithm"], identity["data"], identity["model"]
    prefix = f"{model['name']}{model['depth']}_" if "name" in model else ""  # not two_layer
    return (f"{a['name']}/{prefix}{data['name']}_n{data['n']}_m{model['m']}_d{data['d']}"
            f"_s{identity['seed']}_{identity['dtype']}_{identity['device']}"
            f"_{config_hash(identity)}")


def finite_json(value: Any, path: str = "", bad: list[str] | None = None) -> Any:
    """``value`` with every NaN or ±Infinity replaced by None (standard JSON has neither);
    the dotted paths of the replaced values are appended to ``bad``."""
    if isinstance(value, float) and not math.isfinite(value):
        if bad is not None:
            bad.append(path or "(root)")
        return None
    if isinstance(value, dict):
        return {k: finite_json(v, f"{path}.{k}" if path else str(k), bad)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v, f"{path}[{i}]", bad) for i, v in enumerate(value)]
    return value


def write_cell(cell: Path, rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
    """Write the trajectory, then ``run.json`` last: a cell counts as done only once it exists.

    run.json records the parquet's sha256 and row count (``files``), so a data file that does
    not belong to this record (copied in, damaged, or from another writer) is recognised; it is
    standard JSON: non-finite numbers become null and are listed in ``nonfinite_fields``.
    """
    frame = pd.DataFrame(rows, columns=list(COLUMNS) if not rows else None)

    def write_parquet(tmp: str) -> dict[str, Any]:
        frame.to_parquet(tmp, index=False)
        return {RESULT_FILE: {"sha256": file_sha256(tmp), "rows": len(frame),
                              "bytes": os.path.getsize(tmp)}}

    files = atomic_write(cell / RESULT_FILE, write_parquet)
    bad: list[str] = []
    record = finite_json({**run, "files": files}, bad=bad)
    if bad:
        record["nonfinite_fields"] = bad

    write_json(cell / RUN_FILE, record, indent=2, allow_nan=False)


# --- reading a cell back: shape checks, data-file hashes -------------------------------------

#: run.json fields and the types they must have when present (null is always allowed).
_INT_FIELDS = ("n", "m", "d", "depth", "seed", "rows", "iterations")
_STR_FIELDS = ("algorithm", "dataset", "model", "device", "dtype", "reason", "config_hash", "label")
_NUM_FIELDS = ("initial_loss", "final_loss", "final_rel_loss", "total_time_s", "setup_time_s",
               "wall_time_s", "warmup_time_s", "estimated_memory_bytes", "memory_budget_bytes",
               "peak_memory_bytes")
_DICT_FIELDS = ("config", "identity", "provenance", "files", "setup_phases_s")


def run_problem(run: Any) -> str | None:
    """Why a parsed run.json cannot be used (wrong shape or types), or None if it can."""
    if not isinstance(run, dict):
        return f"not a JSON object but a {type(run).__name__}"
    if run.get("status") not in STATUSES:
        return f"status {run.get('status')!r} is not one of {list(STATUSES)}"
    for key in _INT_FIELDS:
        v = run.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            return f"{key} must be a non-negative integer, got {v!r}"[:120]
        if v is not None and v > MAX_SIZE:
            return f"{key} = {str(v)[:24]} is above the largest size a store holds (2**53)"
    for key in ("n", "m", "d"):
        if run.get(key) == 0:
            return f"{key} must be positive, got 0"
    for key in _STR_FIELDS:
        v = run.get(key)
        if v is not None and not isinstance(v, str):
            return f"{key} must be a string, got {type(v).__name__}"
    for key in _NUM_FIELDS:
        v = run.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{key} must be a number or null, got {type(v).__name__}"
        if isinstance(v, int) and v > MAX_SIZE:
            return f"{key} = {str(v)[:24]} is above the largest number a store holds (2**53)"
    for key in _DICT_FIELDS:
        v = run.get(key)
        if v is not None and not isinstance(v, dict):
            return f"{key} must be an object, got {type(v).__name__}"
    info = (run.get("files") or {}).get(RESULT_FILE)
    if info is not None and not (isinstance(info, dict) and isinstance(info.get("sha256"), str)
                                 and isinstance(info.get("rows"), int)):
        return f"files.{RESULT_FILE} must hold sha256 and rows"
    return None


#: The largest integer a run.json may hold anywhere (int64: what parquet and pandas store),
#: and the largest a size or count field (n, m, d, rows, ...) may hold (exact in a float64).
MAX_JSON_INT, MAX_SIZE = 2**63 - 1, 2**53
#: A run.json longer than this is not read (a real one is a few KiB).
MAX_RUN_BYTES = 16 << 20


def regular_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be read without blocking (a FIFO, a
    directory, a device), or None. Only ``os.stat``: nothing is opened. A missing file raises
    FileNotFoundError."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or
            stat.S_ISBLK(mode) else "not a regular file")
    return f"{path.name} is {kind}, not a regular file"


def read_regular(path: Path, limit: int = MAX_RUN_BYTES) -> bytes:
    """The bytes of a regular file, opened without blocking (a FIFO put where a file belongs
    must never hang a reader) and checked on the open descriptor: ValueError naming what it
    is instead, or that it is longer than ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(regular_file_problem(path) or f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path.name} is {info.st_size} bytes, above the {limit} a "
                             "store's file may have")
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            return fh.read(limit + 1)[:limit]
    finally:
        if fd >= 0:
            os.close(fd)


def _int_problem(value: Any, path: str = "") -> str | None:
    """The first integer anywhere in ``value`` beyond what a store holds (``MAX_JSON_INT``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (f"{path or '(root)'} = {str(value)[:24]}{'…' if len(str(value)) > 24 else ''}"
                f" is beyond the integers a store holds (|x| <= 2**63 - 1)"
                if abs(value) > MAX_JSON_INT else None)
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        why = _int_problem(v, f"{path}.{k}" if path and isinstance(k, str) else
                           f"{path}[{k}]" if isinstance(k, int) else str(k))
        if why:
            return why
    return None


def load_run(cell: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(run.json, None), or (None, why it cannot be used): missing, not a regular file (never
    opened blocking), too long, not JSON, an integer beyond int64, wrong shape."""
    try:
        run = json.loads(read_regular(cell / RUN_FILE))
    except FileNotFoundError:
        return None, "no run.json"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]
    try:
        problem = _int_problem(run) or run_problem(run)
    except RecursionError:
        problem = "run.json is nested too deeply"
    return (None, problem) if problem else (upgrade_run(run), None)


def read_run(cell: Path) -> dict[str, Any] | None:
    """run.json of a cell, or None if missing, unreadable or of the wrong shape."""
    return load_run(cell)[0]


def data_problem(cell: Path, run: dict[str, Any]) -> str | None:
    """Why ``result.parquet`` does not belong to ``run`` (None: it does). Cells written before
    run.json carried a hash are checked by row count alone. Reads only; never writes."""
    path = cell / RESULT_FILE
    info = (run.get("files") or {}).get(RESULT_FILE)
    try:
        not_regular = regular_file_problem(path)
        if not_regular:
            return not_regular
        if info is not None:
            if file_sha256(path) == info["sha256"]:
                return None
            try:
                rows = len(pd.read_parquet(path))
            except Exception:
                return f"unreadable {RESULT_FILE} (sha256 differs from run.json's)"
            if rows != info["rows"]:
                return f"{rows} rows, run.json promises {info['rows']}"
            return f"{RESULT_FILE} is not the file run.json records (sha256 differs)"
        rows = len(pd.read_parquet(path))
    except FileNotFoundError:
        return f"no {RESULT_FILE}"
    except Exception as exc:  # pyarrow raises several types on a damaged file
        return f"unreadable {RESULT_FILE}: {type(exc).__name__}"
    if run.get("rows") is not None and rows != run["rows"]:
        return f"{rows} rows, run.json promises {run['rows']}"
    return None


def identity_problem(cell: Path, run: dict[str, Any]) -> str | None:
    """Why ``run`` (a cell's run.json) is not the record of the directory ``cell`` it lies in
    (a cell copied over another, a run.json moved in), or None. A run.json with a
    ``config_hash`` names its cell: the directory must end in that hash, the recorded
    identity must hash to it, and ``<algorithm>/<name>`` must be the identity's cell name.
    Records without a hash (crafted, or written by hand) are not checked."""
    recorded = run.get("config_hash")
    if not recorded:
        return None
    if not cell.name.endswith(f"_{recorded}"):
        return (f"run.json belongs to the cell with hash {recorded}, not to {cell.name} "
                "(a cell copied or moved over another?)")
    identity = run.get("identity")
    if not isinstance(identity, dict):
        return None
    try:
        actual = config_hash(identity)
        expected = cell_name(identity)
    except Exception:  # an identity of another shape (hand-written): the hash suffix decides
        return None
    if actual != recorded:
        return f"run.json's identity hashes to {actual}, not to its config_hash {recorded}"
    if expected != f"{cell.parent.name}/{cell.name}":
        return f"run.json's identity names the cell {expected}, not {cell.parent.name}/{cell.name}"
    return None


def cell_is_complete(cell: Path) -> bool:
    """A cell is done when run.json is its own (``identity_problem``), has a final non-failed
    status, and its parquet is the file run.json records (sha256 and rows; a truncated,
    corrupt or foreign file means: rerun)."""
    run = read_run(cell)
    if not run or run.get("status") not in DONE_STATUSES:
        return False
    return identity_problem(cell, run) is None and data_problem(cell, run) is None


# --- writing a cell safely: a lock per cell, reruns beside the old result ---------------------


def _stamp() -> str:
    return f"{_dt.datetime.now(_dt.UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"


def cell_lock(cell: Path):
    """An exclusive lock for deciding about and writing ``cell`` (a hidden file beside it):
    one writer at a time, across threads, processes and launchers on one file system. The OS
    releases it when its holder dies."""
    from filelock import FileLock

    cell.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(cell.parent / f".{cell.name}.lock"))


def attempt_dir(cell: Path) -> Path:
    """A fresh hidden directory beside ``cell`` for a rerun (``force=true``) of a done cell:
    the rerun writes there and replaces the cell only when it finished (``replace_cell``); a
    failed or skipped rerun stays there, and the earlier result is kept."""
    return cell.parent / f".{cell.name}.attempt-{_stamp()}"


def replace_cell(new: Path, cell: Path) -> None:
    """Put the finished ``new`` in place of ``cell``. Two renames on one file system; if the
    process dies between them, ``recover_cell`` puts the earlier result back."""
    old = cell.parent / f".{cell.name}.replaced-{_stamp()}"
    os.rename(cell, old)
    os.rename(new, cell)
    shutil.rmtree(old, ignore_errors=True)


def recover_cell(cell: Path) -> None:
    """Under the cell's lock: a cell missing after an interrupted ``replace_cell`` gets its
    earlier result back."""
    if cell.exists():
        return
    for old in sorted(cell.parent.glob(f".{cell.name}.replaced-*"), reverse=True):
        os.rename(old, cell)
        return


def _odd_entry(path: Path) -> bool:
    """Something other than a regular file (a directory, a FIFO) where a file belongs."""
    try:
        return regular_file_problem(path) is not None
    except OSError:
        return False


def set_aside(cell: Path) -> Path | None:
    """Under the cell's lock, before a new run writes into ``cell``: data that no usable
    record accounts for (a parquet beside an unreadable or wrong-shape run.json, or beside a
    done run.json whose hash it does not match) is moved to a hidden sibling, never
    overwritten. A cell recorded as failed or skipped is overwritten (it holds no result)."""
    if not cell.is_dir() or not any(cell.iterdir()):
        return None
    run = read_run(cell)
    if run is not None and run["status"] not in DONE_STATUSES:
        return None
    if run is None and not (cell / RESULT_FILE).exists() and \
            not _odd_entry(cell / RUN_FILE):
        return None  # a damaged run.json alone: nothing of value to keep
    aside = cell.parent / f".{cell.name}.unverified-{_stamp()}"
    os.rename(cell, aside)
    return aside


def writable_dir_problem(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be (created and) written as a directory, or None. Writes nothing:
    the probe file in the nearest existing directory is removed at once."""
    path = Path(os.path.expanduser(str(path)))
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        shown = f"{what} {str(path)!r}" if probe == path else \
            f"{what} {str(path)!r}: {str(probe)!r}"
        return f"{shown} is not a directory"
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".nlt-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"{what} {str(path)!r} is not writable ({exc.strerror or exc} in {str(probe)!r})"
    return None


# --- a sweep directory belongs to one sweep at a time ------------------------------------------

#: the lock a running sweep holds in its sweep directory (``hydra.sweep.dir``)
SWEEP_LOCK = ".nlt-run.lock"
_SWEEP_LOCKS: dict[str, Any] = {}


def claim_sweep_dir(sweep_dir: Path) -> None:
    """Make ``sweep_dir`` this sweep's alone, before its first job: a sweep directory another
    running ``nlt-run`` holds is refused (ConfigError, nothing written), and what an earlier,
    finished sweep left there (job directories, sweep.json, summary.csv) is moved into a
    hidden ``.earlier-<time>`` directory inside it, so that this sweep's table shows its own
    jobs only. The lock is held until ``release_sweep_dir`` or the process's end."""
    from filelock import FileLock, Timeout

    key = os.path.abspath(sweep_dir)
    try:
        if key not in _SWEEP_LOCKS:  # held already: an earlier sweep of this same process
            sweep_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(sweep_dir / SWEEP_LOCK), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                raise ConfigError(
                    f"hydra.sweep.dir {str(sweep_dir)!r} is in use by another nlt-run that is "
                    "still running: wait for it to end, or leave hydra.sweep.dir out (every "
                    "sweep then gets a directory of its own)") from None
            _SWEEP_LOCKS[key] = lock
        earlier = [e for e in sweep_dir.iterdir()
                   if e.name != SWEEP_LOCK and not e.name.startswith(".earlier-")]
        if earlier:
            keep = sweep_dir / f".earlier-{_stamp()}"
            keep.mkdir()
            for entry in earlier:
                os.rename(entry, keep / entry.name)
    except OSError as exc:
        raise ConfigError(f"hydra.sweep.dir {str(sweep_dir)!r} cannot be written: "
                          f"{exc.strerror or exc}") from None


def release_sweep_dir(sweep_dir: Path) -> None:
    """Give back the lock ``claim_sweep_dir`` took (the sweep ended)."""
    lock = _SWEEP_LOCKS.pop(os.path.abspath(sweep_dir), None)
    if lock is not None:
        lock.release()
