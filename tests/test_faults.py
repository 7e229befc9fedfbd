"""Fault injection (issue 12): no result is lost or mixed, and a sweep's table and exit code
are its own, whatever is killed, interrupted, damaged or run twice at once. Small sizes; the
process-level faults go through the real ``nlt-run``, the rest in-process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.common.io import file_sha256
from harness.execution.config import resolve
from harness.execution.results import (
    RESULT_FILE,
    RUN_FILE,
    cell_is_complete,
    read_run,
    recover_cell,
    write_cell,
)
from harness.execution.runner import Outcome, memory_plan, run_cell
from harness.reporting.load import load_stores
from harness.reporting.report import build
from tests.helpers import compose_cfg

REPO = Path(__file__).resolve().parent.parent
#: one cheap cell, in-process
CELL = ("algorithm=gd", "data.n=8", "model.m=64", "data.d=4", "device=cpu", "dtype=float64",
        "max_iters=3")
#: two gd cells that run until their time budget: job 0 half a second, job 1 a minute
FOREVER = ("algorithm=gd", "max_iters=100000000", "target_rel_loss=0", "time_budget_s=0.5,60")


def _cfg(store: Path, *extra: str):
    return compose_cfg(*CELL, f"store={store}", *extra)


def _fingerprint(cell: Path) -> tuple[str, str]:
    return file_sha256(cell / RUN_FILE), file_sha256(cell / RESULT_FILE)


def _spawn(tmp: Path, *args: str, ignore_sigint: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    size = () if any(a.startswith("data.n=") for a in args) else ("data.n=16",)  # once
    return subprocess.Popen([sys.executable, "-m", "harness.execution.app", "-m", "+sweep=smoke",
                             *size, *args, f"store={tmp / 'store'}"], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ignore)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for_running_cell(tmp: Path, proc: subprocess.Popen, job: int) -> set[int]:
    """Wait until job ``job`` of the sweep has its cell process; return all descendants."""
    deadline = time.time() + 90
    while time.time() < deadline:
        started = list((tmp / "store" / "_hydra" / "sweeps").glob(f"*/{job}/started.json"))
        kids = _descendants(proc.pid)
        if started and len(kids) >= 3:  # forkserver, resource tracker, the cell
            time.sleep(0.5)
            return _descendants(proc.pid)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the cell never started")


def _done_cells(store: Path) -> dict[str, tuple[str, str]]:
    return {p.parent.name: _fingerprint(p.parent)
            for p in store.glob(f"*/*/{RUN_FILE}") if not p.parts[-3].startswith("_")
            and cell_is_complete(p.parent)}


# --- signals ----------------------------------------------------------------------------------


def test_sigint_stops_cleanly_with_the_table_and_130(tmp_path):
    """Ctrl-C: the finished cell is kept, the running one stopped, its process gone; the
    table of what finished and exit code 130; no traceback. SIGINT to the cell alone is
    ignored (Ctrl-C reaches the group; the job decides)."""
    proc = _spawn(tmp_path, *FOREVER)
    kids = _wait_for_running_cell(tmp_path, proc, 1)
    cmdlines = {p: Path(f"/proc/{p}/cmdline").read_text() for p in kids}
    cell_pids = [p for p, cmd in cmdlines.items()
                 if "forkserver" not in cmd and "resource_tracker" not in cmd]
    for pid in cell_pids:
        os.kill(pid, signal.SIGINT)
    time.sleep(0.5)
    assert all(_alive(p) for p in cell_pids)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert "cells by status: interrupted 1, time_budget 1" in out
    assert "To resume, rerun:\n  nlt-run -m +sweep=smoke data.n=16" in err  # no job dir
    time.sleep(1)
    assert not any(_alive(p) for p in kids)
    done = _done_cells(tmp_path / "store")
    assert len(done) == 1


def test_sigint_stops_a_sweep_started_with_sigint_ignored(tmp_path):
    """A shell script's background job (``nlt-run ... &``) starts with SIGINT ignored; kill
    -INT still stops the sweep cleanly with its table and 130."""
    proc = _spawn(tmp_path, *FOREVER, ignore_sigint=True)
    _wait_for_running_cell(tmp_path, proc, 1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "cells by status: interrupted 1, time_budget 1" in out


def test_sigkill_of_the_sweep_takes_its_cell_along(tmp_path):
    """kill -9 of nlt-run: the cell process dies with it and writes nothing afterwards; the
    cell finished before is intact."""
    proc = _spawn(tmp_path, *FOREVER[:3], "time_budget_s=0.5,1.5")
    kids = _wait_for_running_cell(tmp_path, proc, 1)
    before = _done_cells(tmp_path / "store")
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.time() + 5
    while any(_alive(p) for p in kids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in kids)
    time.sleep(2)  # past the gd cell's time budget: an orphan would have written by now
    assert _done_cells(tmp_path / "store") == before and len(before) == 1


def test_force_rerun_whose_process_is_killed_keeps_the_result(tmp_path):
    """A done cell rerun with force=true whose process is SIGKILLed: the earlier result is
    kept as it was, the failed attempt is recorded beside it, the sweep exits 1."""
    store = tmp_path / "store"
    smoke = ("+sweep=smoke", "algorithm=gd", "data.n=16", f"store={store}")
    first = run_cell(compose_cfg(*smoke))
    assert first.status == "max_iters"
    before = _fingerprint(first.cell)
    proc = _spawn(tmp_path, "algorithm=gd", "force=true", "testing.fail_at_iter=2",
                  "testing.fail_mode=kill")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    assert "killed by SIGKILL" in out and "Traceback" not in err
    assert _fingerprint(first.cell) == before and cell_is_complete(first.cell)
    attempts = list(first.cell.parent.glob(f".{first.cell.name}.attempt-*/{RUN_FILE}"))
    assert [read_run(a.parent)["status"] for a in attempts] == ["failed"]


# --- two sweeps at once, two writers of one cell ---------------------------------------------


def test_concurrent_sweeps_keep_their_own_tables_and_exit_codes(tmp_path):
    """Started in the same second on one store and sharing a cell: each its own sweep
    directory, table and exit code; the shared cell computed once and whole."""
    a = _spawn(tmp_path, "algorithm=gd,gn_gram")
    b = _spawn(tmp_path, "algorithm=gd", "data.n=16,32", "testing.fail_at_iter=30",
               "max_iters=40", "time_budget_s=10")
    out_a, err_a = a.communicate(timeout=180)
    out_b, err_b = b.communicate(timeout=180)
    assert a.returncode == 0, out_a[-2000:] + err_a[-2000:]
    assert b.returncode == 1, out_b[-2000:] + err_b[-2000:]
    sweeps = list((tmp_path / "store" / "_hydra" / "sweeps").iterdir())
    assert len(sweeps) == 2
    assert "cells by status: converged 1, max_iters 1" in out_a
    assert "cells by status: failed 2" in out_b
    for cell in (tmp_path / "store").glob(f"*/*/{RUN_FILE}"):
        if not cell.parts[-3].startswith("_") and read_run(cell.parent)["status"] != "failed":
            assert cell_is_complete(cell.parent)


def test_two_writers_of_the_same_cells_never_mix(tmp_path):
    """20 rounds of two threads running the same two cells: each cell computed once per
    round (the other reuses it), and its run.json always records its own parquet."""
    for round_ in range(20):
        store = tmp_path / f"r{round_}"
        cfgs = [_cfg(store), _cfg(store, "algorithm=gn_gram")]
        outcomes: list[Outcome] = []
        errors: list[BaseException] = []

        def work(cfgs, outcomes, errors):
            try:
                for cfg in cfgs:
                    outcomes.append(run_cell(cfg))
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(cfgs, outcomes, errors))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(o.reused for o in outcomes) == [False, False, True, True]
        for o in outcomes:
            assert cell_is_complete(o.cell)
            run = read_run(o.cell)
            assert run["files"][RESULT_FILE]["sha256"] == file_sha256(o.cell / RESULT_FILE)


# --- damaged, foreign and wrong-shape files ---------------------------------------------------

DAMAGE = {
    "truncated parquet": lambda c: (c / RESULT_FILE).write_bytes(
        (c / RESULT_FILE).read_bytes()[:100]),
    "garbage parquet": lambda c: (c / RESULT_FILE).write_bytes(b"garbage" * 10),
    "garbage run.json": lambda c: (c / RUN_FILE).write_text("{not json"),
    "truncated run.json": lambda c: (c / RUN_FILE).write_text((c / RUN_FILE).read_text()[:50]),
    "run.json a list": lambda c: (c / RUN_FILE).write_text("[1, 2]"),
    "run.json a string": lambda c: (c / RUN_FILE).write_text('"done"'),
    "status not a status": lambda c: _edit(c, status="great"),
    "size not an integer": lambda c: _edit(c, n=16.5),
    "size a string": lambda c: _edit(c, m="64"),
    "config not an object": lambda c: _edit(c, config="x"),
    "rows wrong type": lambda c: _edit(c, rows=[1]),
    "algorithm not a string": lambda c: _edit(c, algorithm={"x": 1}),
    "loss a string": lambda c: _edit(c, final_loss="low"),
    "foreign parquet": None,  # filled in the test: another cell's file, same row count
}


def _edit(cell: Path, **fields) -> None:
    run = json.loads((cell / RUN_FILE).read_text())
    run.update(fields)
    (cell / RUN_FILE).write_text(json.dumps(run))


def test_damaged_cells_are_rerun_without_losing_data_and_reported(tmp_path):
    store = tmp_path / "store"
    good = run_cell(_cfg(store))
    other = run_cell(_cfg(store, "seed=1"))
    assert len(pd.read_parquet(good.cell / RESULT_FILE)) == \
        len(pd.read_parquet(other.cell / RESULT_FILE))
    pristine = tmp_path / "pristine"
    shutil.copytree(good.cell, pristine)
    # each damaged copy in a store of its own, under its own name (a cell renamed is foreign)
    report_stores = []
    for i, (name, damage) in enumerate(DAMAGE.items()):
        shutil.rmtree(good.cell)
        shutil.copytree(pristine, good.cell)
        if damage is None:
            shutil.copy(other.cell / RESULT_FILE, good.cell / RESULT_FILE)
        else:
            damage(good.cell)
        damaged = {p.name: p.read_bytes() for p in good.cell.iterdir()}
        report_stores.append(str(tmp_path / "report_stores" / f"s{i:02d}"))
        shutil.copytree(good.cell, Path(report_stores[-1]) / "gd" / good.cell.name)
        assert not cell_is_complete(good.cell), name
        rerun = run_cell(_cfg(store))
        assert not rerun.reused and cell_is_complete(good.cell), name
        # whatever data the damaged cell held is kept aside, byte for byte
        if RESULT_FILE in damaged and name != "foreign parquet" or "run.json" in name:
            kept = [p for p in good.cell.parent.glob(f".{good.cell.name}.unverified-*")
                    if (p / RESULT_FILE).exists()
                    and (p / RESULT_FILE).read_bytes() == damaged[RESULT_FILE]]
            assert kept or "parquet" in name, name
        for aside in good.cell.parent.glob(f".{good.cell.name}.unverified-*"):
            shutil.rmtree(aside)
    # the report lists every damaged cell as a problem and goes on
    rep = build(report_stores, tmp_path / "report")
    assert len(rep.loaded.problems) >= len(DAMAGE) - 1
    assert (tmp_path / "report" / "REPORT.md").exists()
    # cells whose run.json is sound are listed, with their data left out of every figure
    assert not rep.loaded.runs["data_ok"].any() and not len(rep.loaded.rows)


def test_run_json_is_standard_json_and_names_nonfinite_fields(tmp_path):
    cell = tmp_path / "c"
    write_cell(cell, [{"iter": 0, "loss": float("nan")}],
               {"status": "diverged", "final_loss": float("inf"), "rows": 1})

    def refuse(token):
        raise ValueError(token)

    run = json.loads((cell / RUN_FILE).read_text(), parse_constant=refuse)
    assert run["final_loss"] is None and run["nonfinite_fields"] == ["final_loss"]
    diverged = run_cell(_cfg(tmp_path / "s", "algorithm.lr=1e200"))
    assert diverged.status == "diverged"
    json.loads((diverged.cell / RUN_FILE).read_text(), parse_constant=refuse)


# --- force=true --------------------------------------------------------------------------------


def test_force_rerun_that_fails_or_is_skipped_keeps_the_old_result(tmp_path):
    store = tmp_path / "store"
    good = run_cell(_cfg(store))
    before = _fingerprint(good.cell)
    failed = run_cell(_cfg(store, "force=true", "testing.fail_at_iter=1"))
    assert failed.status == "failed" and failed.cell != good.cell
    assert "earlier result" in failed.reason and read_run(failed.cell)["status"] == "failed"
    skipped = run_cell(_cfg(store, "force=true", "memory_budget_gb=1e-9"))
    assert skipped.status == "skipped" and skipped.cell != good.cell
    assert _fingerprint(good.cell) == before
    redone = run_cell(_cfg(store, "force=true"))
    assert redone.cell == good.cell and redone.status == "max_iters" and not redone.reused
    assert cell_is_complete(good.cell) and _fingerprint(good.cell) != before
    assert not list(good.cell.parent.glob(f".{good.cell.name}.replaced-*"))
    # a replacement interrupted between its two renames gets the earlier result back
    os.rename(good.cell, good.cell.parent / f".{good.cell.name}.replaced-x")
    recover_cell(good.cell)
    assert cell_is_complete(good.cell)


# --- the store and the memory guard -----------------------------------------------------------


def test_unwritable_store_during_a_run_is_one_failed_line(tmp_path, monkeypatch, caplog):
    """The store turns unwritable while a cell runs: the cell is failed with one line, no
    exception leaves run_cell, nothing of an earlier result is touched."""
    import harness.execution.runner as runner

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runner, "write_cell", refuse)
    out = run_cell(_cfg(tmp_path / "s"))
    assert out.status == "failed" and "Permission denied" in out.reason
    assert not (out.cell / RUN_FILE).exists()


def test_memory_guard_covers_building_the_data():
    """gd at n=2·10⁶, m=d=1: the float64 data and the teacher's n × 64 activations (2 GB)
    are in the plan, and a 1 GB budget skips the cell before anything is allocated."""
    from algorithms.base import Shape

    run = resolve(compose_cfg("algorithm=gd", "data.n=2000000", "model.m=1", "data.d=1",
                              "device=cpu", "memory_budget_gb=1"))
    plan = memory_plan(run, Shape(run.n, run.m, run.d, 4), 1)
    assert plan["estimated_data_memory_bytes"] >= 2 * 10**9
    assert plan["reason"] and "host memory" in plan["reason"]
    roomy = memory_plan(run, Shape(run.n, run.m, run.d, 4), 64)
    assert roomy["reason"] is None


def test_one_bad_cell_never_stops_the_report(tmp_path):
    store = tmp_path / "store"
    run_cell(_cfg(store))
    bad = store / "gd" / "weird"
    bad.mkdir()
    (bad / RUN_FILE).write_text(json.dumps({"status": "converged", "algorithm": "a$b",
                                            "n": 8, "m": 8, "d": 2, "rows": 0}))
    loaded = load_stores([store])
    assert len(loaded.runs) == 2
    rep = build([str(store)], tmp_path / "out")  # "$" in a name must not break a figure
    assert not [f for f in rep.figures if f.missing and "could not be drawn" in f.missing]


@pytest.fixture(autouse=True)
def _no_stray_hydra():
    yield
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
