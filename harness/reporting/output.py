"""A report's output directory (``nlt-report --out``), written whole or not at all.

The report is built in a hidden staging directory beside ``--out`` and renamed into place, so
a reader (or a killed report) sees the previous report or the new one, never a mix of two. A
lock file beside it (``.<name>.lock``) makes reports to one ``--out`` take turns: a second
waits for the first. The directory then holds only what this report produced: a manifest
(``.nlt-report.json``) lists it, and the next report removes exactly those files (for a
directory written before the manifest, the names a report writes: ``REPORT.md``,
``results.parquet``, ``cells.csv``, ``figNN_*.png|pdf``). Any other file, the user's, is kept.
A report killed mid-swap is put right by the next one, under the lock.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.common.errors import ConfigError
from harness.execution.results import writable_dir_problem

MANIFEST = ".nlt-report.json"
#: what a report writes, for directories written before the manifest existed
OWN_PATTERNS = ("REPORT.md", "results.parquet", "cells.csv", "fig[0-9][0-9]_*.png",
                "fig[0-9][0-9]_*.pdf")


def out_problem(out: str | Path, stores: list[Path]) -> str | None:
    """Why ``--out`` cannot take a report, or None. Reads only."""
    text = str(out)
    if not text.strip():
        return f"--out {text!r} is empty: name a directory (default: reports/latest)"
    path = Path(os.path.abspath(os.path.expanduser(text)))
    if path.parent == path:
        return f"--out {text!r} is the file system root: name a directory of its own"
    cwd = Path.cwd().resolve()
    real = path.resolve()
    if real == cwd or real in cwd.parents:
        return (f"--out {text!r} is the working directory or one above it: a report "
                "replaces its directory whole, so name a directory of its own")
    for store in stores:
        if store.is_file():  # a report's own table: read whole before --out is replaced
            continue
        s = store.resolve()
        if real == s or real in s.parents:
            return (f"--out {text!r} holds the results store {str(store)!r}: name a directory "
                    "outside it")
    return (writable_dir_problem(path, "--out")
            or (writable_dir_problem(path.parent, "--out's parent") if path.exists()
                else None))


def _stamp() -> str:
    return f"{_dt.datetime.now(_dt.UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"


def previous_files(directory: Path) -> set[str]:
    """Names of what the report in ``directory`` wrote (its manifest, else the names a report
    writes); the manifest itself is included."""
    try:
        listed = json.loads((directory / MANIFEST).read_text()).get("produced")
        if isinstance(listed, list) and all(isinstance(n, str) for n in listed):
            return {n for n in listed if "/" not in n and n not in ("", ".", "..")} | {MANIFEST}
    except (OSError, ValueError, AttributeError):
        pass
    return {e.name for e in directory.iterdir()
            if any(fnmatch.fnmatchcase(e.name, p) for p in OWN_PATTERNS)} | {MANIFEST}


def _move_user_entries(old: Path, out: Path) -> None:
    """Entries of the previous directory that no report wrote (the user's) into ``out``; a
    name the new report also wrote keeps the user's entry under ``<name>.user-<stamp>``."""
    own = previous_files(old)
    for entry in sorted(old.iterdir()):
        if entry.name in own:
            continue
        target = out / entry.name
        if os.path.lexists(target):
            target = out / f"{entry.name}.user-{_stamp()}"
        os.rename(entry, target)


def recover(out: Path) -> None:
    """Under the lock: finish or undo what a killed report left beside ``out`` (its staging
    directory is removed; a previous report moved aside comes back, or gives back the user's
    files it still holds)."""
    for stage in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(stage, ignore_errors=True)
    for old in sorted(out.parent.glob(f".{out.name}.old-*"), reverse=True):
        if not out.exists():
            os.rename(old, out)
            continue
        _move_user_entries(old, out)
        shutil.rmtree(old, ignore_errors=True)


def publish(stage: Path, out: Path) -> list[str]:
    """Put the finished ``stage`` in place of ``out`` (two renames on one file system), carry
    over the user's files, drop the previous report's. Returns the names produced."""
    produced = sorted(e.name for e in stage.iterdir())
    (stage / MANIFEST).write_text(json.dumps(
        {"produced": produced, "written_utc": _dt.datetime.now(_dt.UTC).isoformat(
            timespec="seconds")}, indent=1) + "\n")
    if not out.exists():
        os.rename(stage, out)
        return produced
    old = out.parent / f".{out.name}.old-{_stamp()}"
    os.rename(out, old)
    os.rename(stage, out)
    _move_user_entries(old, out)
    shutil.rmtree(old, ignore_errors=True)
    return produced


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A fresh staging directory for the report to ``out``; published when the block ends
    normally, removed when it raises. Holds ``out``'s lock throughout."""
    from filelock import FileLock

    # a symlink to a directory: the directory it names is replaced, the link kept
    out = Path(os.path.realpath(os.path.expanduser(str(out))))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(out.parent / f".{out.name}.lock"))
        lock.acquire()
    except OSError as exc:
        raise ConfigError(f"--out {str(out)!r} cannot be written: {exc.strerror or exc}") from None
    try:
        recover(out)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp's 0700 would outlive the staging
        try:
            yield stage
            publish(stage, out)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
    finally:
        lock.release()
