"""I/O faults caused for real while cells run (issue 24, class 6): a full disk (a small tmpfs),
an immutable store (``chattr +i``), a read-only bind mount, a cell directory replaced by a
file, a sweep directory that turns unwritable. Each cell whose write fails is ``failed`` with
the OS reason in one line, nothing temporary is left, the cells finished before are intact,
the sweep's table is printed and the exit code is 1; no traceback and no logging error is
printed. Mounting needs root (CAP_SYS_ADMIN) and chattr a file system that supports it: such
tests skip with the reason where the machine does not allow them."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.common.io import file_sha256
from harness.execution.config import resolve, store_path
from harness.execution.results import RESULT_FILE, RUN_FILE, cell_is_complete, cell_name
from harness.execution.runner import os_reason, run_cell
from tests.helpers import compose_cfg

REPO = Path(__file__).resolve().parent.parent
CELL = ("algorithm=gd", "data.n=8", "model.m=64", "data.d=4", "device=cpu", "dtype=float64",
        "max_iters=3")
#: a sweep of four small gd cells, each a second or two
SWEEP = ("-m", "+sweep=smoke", "algorithm=gd", "data.n=16,32", "seed=0,1", "max_iters=20",
         "testing.slow_step_s=0.05")
NOISE = ("Traceback", "Logging error", "--- Logging", "HYDRA_FULL_ERROR")


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "2m"):
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = _sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        _sh("umount", "-l", str(path))


@contextlib.contextmanager
def _immutable(path: Path):
    done = _sh("chattr", "+i", str(path)) if shutil.which("chattr") else None
    if done is None or done.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {done.stderr.strip() if done else 'none'}")
    try:
        yield path
    finally:
        _sh("chattr", "-i", str(path))


def _fill(path: Path) -> None:
    """Fill the file system of ``path`` to the last byte."""
    with contextlib.suppress(OSError), open(path / "filler", "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()


def _cfg(store: Path, *extra: str):
    return compose_cfg(*CELL, f"store={store}", *extra)


def _cell(store: Path, *extra: str) -> Path:
    cfg = _cfg(store, *extra)
    return store_path(cfg) / cell_name(resolve(cfg).identity)


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _spawn(tmp: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "NLT_RUN_OWNERS"}
    return subprocess.Popen([sys.executable, "-m", "harness.execution.app", *args], cwd=tmp,
                            env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _when(predicate, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(proc.communicate())
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def _outcomes(sweeps: Path) -> int:
    return len(list(sweeps.glob("**/outcome.json")))


# --- the OS reason in a few words -----------------------------------------------------------


def test_os_reason_names_the_error_also_when_a_library_wraps_it():
    assert os_reason(OSError(28, "No space left on device")) == \
        "No space left on device (ENOSPC)"
    wrapped = OSError("Error writing bytes to file. Detail: [errno 30] Read-only file system")
    assert os_reason(wrapped) == "Read-only file system (EROFS)"
    assert os_reason(OSError("something else")) == "something else"


# --- in-process: one cell, a real fault while it runs ------------------------------------------


def test_full_disk_fails_the_cell_with_enospc_and_leaves_nothing(tmp_path):
    with _tmpfs(tmp_path / "fs") as fs:
        store = fs / "store"
        first = run_cell(_cfg(store))
        assert first.status == "max_iters"
        kept = file_sha256(first.cell / RUN_FILE)
        _fill(fs)
        out = run_cell(_cfg(store, "seed=1"))
        assert out.status == "failed" and "No space left on device (ENOSPC)" in out.reason
        assert "\n" not in out.reason
        assert not _tmp_files(fs)
        assert file_sha256(first.cell / RUN_FILE) == kept and cell_is_complete(first.cell)
        assert not cell_is_complete(_cell(store, "seed=1"))


def _during_the_cell(store: Path, fault, *extra: str):
    """Run a slow cell in-process and cause ``fault(cell)`` once its lock is taken."""
    extra = ("testing.slow_step_s=0.3", "max_iters=4", *extra)
    cell = _cell(store, *extra)
    fired = threading.Event()

    def watch() -> None:
        deadline = time.time() + 30
        while time.time() < deadline and not (cell.parent / f".{cell.name}.lock").exists():
            time.sleep(0.01)
        time.sleep(0.1)
        fault(cell)
        fired.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    out = run_cell(_cfg(store, *extra))
    thread.join()
    assert fired.is_set()
    return out, cell


def test_store_made_immutable_mid_cell_fails_it_with_eperm(tmp_path):
    store = tmp_path / "store"
    run_cell(_cfg(store))  # creates store/gd
    algo = store / "gd"
    stack = contextlib.ExitStack()
    try:
        out, cell = _during_the_cell(
            store, lambda c: stack.enter_context(_immutable(c.parent)), "seed=1")
    finally:
        stack.close()
    assert out.status == "failed" and "Operation not permitted (EPERM)" in out.reason
    assert not _tmp_files(algo) and not cell.exists()


def test_read_only_bind_mount_mid_cell_fails_it_with_erofs(tmp_path):
    store = tmp_path / "store"
    (store / "gd").mkdir(parents=True)
    mounted = False

    def remount(cell: Path) -> None:
        nonlocal mounted
        target = str(cell.parent)
        if _sh("mount", "--bind", target, target).returncode == 0:
            mounted = True
            _sh("mount", "-o", "remount,ro,bind", target)

    try:
        out, cell = _during_the_cell(store, remount)
        if not mounted:
            pytest.skip("bind mounts are not permitted here")
        assert out.status == "failed" and "Read-only file system (EROFS)" in out.reason
        assert not _tmp_files(store)
    finally:
        if mounted:
            _sh("umount", str(store / "gd"))


def test_cell_directory_replaced_by_a_file_mid_cell(tmp_path):
    store = tmp_path / "store"

    def replace(cell: Path) -> None:
        shutil.rmtree(cell, ignore_errors=True)
        cell.write_text("a file where the cell's directory was\n")

    out, cell = _during_the_cell(store, replace)
    assert out.status == "failed" and "\n" not in out.reason
    assert "(E" in out.reason  # the OS error's name: ENOTDIR or EEXIST
    assert cell.is_file() and not _tmp_files(store)


# --- through nlt-run: the sweep goes on, its table and exit code 1 -----------------------------


def _assert_quiet(out: str, err: str) -> None:
    for word in NOISE:
        assert word not in out + err, f"{word!r} in the output:\n{(out + err)[-3000:]}"


def test_full_disk_mid_sweep_fails_the_rest_in_one_line_each(tmp_path):
    with _tmpfs(tmp_path / "fs") as fs:
        proc = _spawn(tmp_path, *SWEEP, f"store={fs / 'store'}")
        _when(lambda: _outcomes(fs / "store" / "_hydra") >= 1, proc)
        _fill(fs)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, out[-3000:] + err[-3000:]
        _assert_quiet(out, err)
        assert "cells by status: failed 3, max_iters 1" in out
        assert "No space left on device (ENOSPC)" in out + err
        assert "summary.csv not written" in out
        assert not _tmp_files(fs)
        done = [p.parent for p in (fs / "store" / "gd").glob(f"*/{RUN_FILE}")]
        assert len(done) == 1 and cell_is_complete(done[0])


def test_full_disk_for_a_single_run_is_one_failed_line(tmp_path):
    with _tmpfs(tmp_path / "fs", size="1m") as fs:
        (fs / "store").mkdir()
        _fill(fs)
        out = subprocess.run(
            [sys.executable, "-m", "harness.execution.app", *CELL, f"store={fs / 'store'}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        # refused before the run (the pre-flight probes the store) or failed in one line
        assert out.returncode in (1, 2), out.stdout[-2000:] + out.stderr[-2000:]
        _assert_quiet(out.stdout, out.stderr)
        assert "No space left on device" in out.stdout + out.stderr
        assert not _tmp_files(fs)


def test_store_made_immutable_mid_sweep_keeps_the_sweep_and_its_table(tmp_path):
    store, sweeps = tmp_path / "store", tmp_path / "sweeps"
    proc = _spawn(tmp_path, *SWEEP, f"store={store}", f"hydra.sweep.dir={sweeps}")
    _when(lambda: _outcomes(sweeps) >= 1, proc)
    with _immutable(store / "gd"):
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:] + err[-3000:]
    _assert_quiet(out, err)
    assert "Operation not permitted (EPERM)" in out + err
    assert "failed" in out and "max_iters" in out and "cells by status:" in out
    assert (sweeps / "summary.csv").is_file()
    assert not _tmp_files(store)
    done = [p.parent for p in (store / "gd").glob(f"*/{RUN_FILE}")]
    assert done and all(cell_is_complete(c) for c in done)


def test_cell_directory_replaced_by_a_file_before_its_job(tmp_path):
    """A file where a later job's cell directory goes: that cell is failed (exit 1, not 2),
    the others run, the table lists all four."""
    store = tmp_path / "store"
    proc = _spawn(tmp_path, *SWEEP, f"store={store}")
    _when(lambda: _outcomes(store / "_hydra") >= 1, proc)
    cfg = compose_cfg("+sweep=smoke", "algorithm=gd", "data.n=32", "seed=1", "max_iters=20",
                      "testing.slow_step_s=0.05", f"store={store}")
    last = store_path(cfg) / cell_name(resolve(cfg).identity)
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_text("not a directory\n")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:] + err[-3000:]
    _assert_quiet(out, err)
    assert "cells by status: failed 1, max_iters 3" in out
    assert "killed" not in out


def test_sweep_directory_made_immutable_stops_in_one_line_with_the_table(tmp_path):
    """Hydra cannot create the next job's directory: one line naming the OS reason, the
    table of what finished, exit 1."""
    store, sweeps = tmp_path / "store", tmp_path / "sweeps"
    proc = _spawn(tmp_path, *SWEEP, f"store={store}", f"hydra.sweep.dir={sweeps}")
    _when(lambda: _outcomes(sweeps) >= 1, proc)
    with _immutable(sweeps):
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:] + err[-3000:]
    _assert_quiet(out, err)
    assert "Operation not permitted (EPERM)" in err
    assert "cells by status:" in out and "max_iters" in out
    done = [p.parent for p in (store / "gd").glob(f"*/{RUN_FILE}")]
    assert done and all(cell_is_complete(c) and (c / RESULT_FILE).is_file() for c in done)
