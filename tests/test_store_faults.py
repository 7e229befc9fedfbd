"""Issue 24, classes 1, 3 and 7 (the store): a cell knows whose it is, a non-regular file
where run.json or result.parquet belongs never blocks a reader, and a sweep directory belongs
to one running sweep. Real cells, run in-process at the smallest sizes; 0 results lost, 0
mixed."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_in_process

from harness.common.errors import ConfigError
from harness.execution.results import (
    SWEEP_LOCK,
    cell_is_complete,
    claim_sweep_dir,
    identity_problem,
    load_run,
    read_run,
    release_sweep_dir,
)
from harness.execution.summary import job_rows
from harness.reporting.load import load_stores

SMALL = ("algorithm=gd", "data.n=16", "model.m=32", "max_iters=2")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Three done cells: gd seeds 1 and 2, gn_gram seed 1."""
    store = tmp_path_factory.mktemp("faults") / "store"
    run_in_process(store, *SMALL, "seed=1")
    run_in_process(store, *SMALL, "seed=2")
    run_in_process(store, *SMALL[1:], "algorithm=gn_gram", "seed=1")
    return store


@pytest.fixture
def store(base, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(base, copy)
    return copy


def cells(store: Path) -> dict[str, Path]:
    """``gd1``, ``gd2``, ``gn_gram1`` -> cell directory."""
    out = {}
    for cell in sorted(store.glob("*/*")):
        if cell.is_dir() and not cell.name.startswith((".", "_")):
            seed = cell.name.split("_s")[1].split("_")[0]
            out[f"{cell.parent.name}{seed}"] = cell
    return out


def all_parquets(store: Path) -> dict[str, str]:
    """sha256 of every result.parquet anywhere under the store (hidden siblings included)."""
    from harness.common.io import file_sha256

    return {str(p.relative_to(store)): file_sha256(p) for p in store.rglob("result.parquet")}


def test_every_real_cell_is_its_own(store):
    for cell in cells(store).values():
        run = read_run(cell)
        assert identity_problem(cell, run) is None and cell_is_complete(cell)


# --- class 1: a cell copied over another is not reused and not counted ------------------------

def _copy_over(src: Path, dst: Path) -> None:
    shutil.rmtree(dst)
    shutil.copytree(src, dst)


def test_a_cell_copied_over_another_is_rerun_and_nothing_is_lost(store):
    c = cells(store)
    seed1 = json.loads((c["gd1"] / "run.json").read_text())
    _copy_over(c["gd1"], c["gd2"])
    assert not cell_is_complete(c["gd2"])
    before = set(all_parquets(store).values())
    # the report lists it and counts seed 1 once (the copy is not a second seed 1)
    loaded = load_stores([store])
    assert sorted(loaded.runs["seed"]) == [1, 1]  # gd seed 1 and gn_gram seed 1
    assert [p.kind for p in loaded.problems] == ["foreign cell"]
    assert "hash" in loaded.problems[0].detail
    # the resume reruns seed 2; the copy is moved aside, not overwritten
    outcome, run, _ = run_in_process(store, *SMALL, "seed=2")
    assert not outcome.reused and run["seed"] == 2 and outcome.cell == c["gd2"]
    assert cell_is_complete(c["gd2"])
    assert before <= set(all_parquets(store).values())  # 0 results lost
    aside = list(c["gd2"].parent.glob(f".{c['gd2'].name}.unverified-*"))
    assert len(aside) == 1 and read_run(aside[0])["config_hash"] == seed1["config_hash"]
    loaded = load_stores([store])
    assert sorted(loaded.runs["seed"]) == [1, 1, 2] and not loaded.problems


@pytest.mark.parametrize("edit", ["config_hash", "identity", "moved", "other_algorithm"])
def test_a_run_json_that_is_not_its_directorys_is_foreign(store, edit):
    c = cells(store)
    cell = c["gd2"]
    run = json.loads((cell / "run.json").read_text())
    if edit == "config_hash":  # claims another hash: the directory's name says otherwise
        run["config_hash"] = "0123456789ab"
    elif edit == "identity":  # identity edited, hash kept: it no longer hashes to it
        run["identity"]["seed"] = 7
    if edit in ("config_hash", "identity"):
        (cell / "run.json").write_text(json.dumps(run))
    elif edit == "moved":  # a whole cell renamed to another cell's name
        shutil.rmtree(c["gd1"])
        os.rename(cell, c["gd1"])
        cell = c["gd1"]
    else:  # a cell put under another algorithm's directory, same name
        target = c["gn_gram1"].parent / cell.name
        os.rename(cell, target)
        cell = target
    assert not cell_is_complete(cell)
    assert identity_problem(cell, read_run(cell))
    loaded = load_stores([store])
    assert [p.kind for p in loaded.problems] == ["foreign cell"]


# --- class 3: a non-regular file where a file belongs never blocks ----------------------------

def _in_thread(fn, timeout: float = 20.0):
    """``fn()``'s result; fails (instead of hanging the suite) if it blocks."""
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked"
    return box.get("v")


@pytest.mark.parametrize("what", ["fifo", "directory", "dev_zero", "dangling", "loop"])
@pytest.mark.parametrize("name", ["run.json", "result.parquet"])
def test_an_odd_file_where_a_cell_file_belongs_never_blocks(store, what, name):
    cell = cells(store)["gd2"]
    target = cell / name
    target.unlink()
    if what == "fifo":
        os.mkfifo(target)
    elif what == "directory":
        target.mkdir()
    elif what == "dev_zero":
        target.symlink_to("/dev/zero")
    elif what == "dangling":
        target.symlink_to(cell / "nothing-here")
    else:
        target.symlink_to(target)
    assert _in_thread(lambda: cell_is_complete(cell)) is False
    if name == "run.json":
        run, why = _in_thread(lambda: load_run(cell))
        assert run is None and why
    loaded = _in_thread(lambda: load_stores([store]))
    assert len(loaded.problems) >= 1
    assert set(loaded.runs["seed"]) == ({1} if name == "run.json" else {1, 2})


@pytest.mark.parametrize("what", ["fifo", "directory"])
def test_resume_over_an_odd_run_json_reruns_and_keeps_the_odd_entry_aside(store, what):
    cell = cells(store)["gd2"]
    (cell / "run.json").unlink()
    if what == "fifo":
        os.mkfifo(cell / "run.json")
    else:
        (cell / "run.json").mkdir()
    before = set(all_parquets(store).values())
    outcome, run, rows = _in_thread(lambda: run_in_process(store, *SMALL, "seed=2"), 300)
    assert not outcome.reused and run["seed"] == 2 and len(rows) == 3
    assert cell_is_complete(cell)
    assert before <= set(all_parquets(store).values())
    assert len(list(cell.parent.glob(f".{cell.name}.unverified-*"))) == 1


def test_a_huge_integer_in_run_json_means_rerun_not_a_crash(store):
    cell = cells(store)["gd2"]
    run = json.loads((cell / "run.json").read_text())
    run["n"] = 10**40
    (cell / "run.json").write_text(json.dumps(run))
    assert not cell_is_complete(cell)
    assert "beyond" in load_run(cell)[1]
    outcome, run, _ = run_in_process(store, *SMALL, "seed=2")
    assert not outcome.reused and cell_is_complete(cell)


# --- class 7: one running sweep per sweep directory -------------------------------------------

def test_a_sweep_directory_held_by_a_running_sweep_is_refused(tmp_path):
    from filelock import FileLock

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "0").mkdir()
    (sweep / "0" / "outcome.json").write_text("{}")
    holder = FileLock(str(sweep / SWEEP_LOCK))
    with holder:
        before = sorted(str(p) for p in sweep.rglob("*"))
        with pytest.raises(ConfigError, match="in use by another nlt-run"):
            claim_sweep_dir(sweep)
        assert sorted(str(p) for p in sweep.rglob("*")) == before  # nothing moved or written


def test_a_finished_sweeps_jobs_are_moved_aside_not_mixed_into_the_next(tmp_path):
    sweep = tmp_path / "sweep"
    for job in ("0", "1", "2"):
        (sweep / job).mkdir(parents=True)
        (sweep / job / "outcome.json").write_text(json.dumps(
            {"cell": str(tmp_path / f"cell{job}"), "status": "converged"}))
    (sweep / "sweep.json").write_text('{"total_cells": 3}')
    (sweep / "summary.csv").write_text("old")
    claim_sweep_dir(sweep)
    try:
        assert job_rows(sweep) == [] or all(r.get("status") == "missing"
                                            for r in job_rows(sweep))
        assert {p.name for p in sweep.iterdir() if not p.name.startswith(".")} == set()
        earlier = list(sweep.glob(".earlier-*"))
        assert len(earlier) == 1
        assert {p.name for p in earlier[0].iterdir()} >= {"0", "1", "2", "sweep.json",
                                                          "summary.csv"}
        claim_sweep_dir(sweep)  # the same process again: allowed (its earlier sweep ended)
    finally:
        release_sweep_dir(sweep)
    claim_sweep_dir(sweep)  # released: a new sweep may take it
    release_sweep_dir(sweep)


def test_two_nlt_runs_with_one_explicit_sweep_dir_the_second_is_refused(tmp_path):
    """Through the real command: while a sweep holds the directory, a second is one line,
    exit 2, and writes nothing."""
    from filelock import FileLock
    from helpers import nlt_run

    sweep = tmp_path / "sw"
    sweep.mkdir()
    with FileLock(str(sweep / SWEEP_LOCK)):
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        proc = nlt_run(tmp_path, "-m", *SMALL, "store=st", f"hydra.sweep.dir={sweep}",
                       "device=cpu")
        after = sorted(str(p) for p in tmp_path.rglob("*"))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(sweep) in proc.stderr
    assert before == after


def test_results_parquet_rows_match_their_cells_after_every_fault(store):
    """The report's rows of each cell are that cell's (0 mixed): after a copy, a FIFO and a
    huge integer in three cells, every remaining row's seed is its cell's seed."""
    c = cells(store)
    _copy_over(c["gd1"], c["gd2"])
    (c["gn_gram1"] / "run.json").unlink()
    os.mkfifo(c["gn_gram1"] / "run.json")
    loaded = _in_thread(lambda: load_stores([store]))
    rows = loaded.rows
    seeds = loaded.runs.set_index("cell")["seed"]
    assert len(rows) and (rows["seed"].to_numpy() == seeds[rows["cell"]].to_numpy()).all()
    assert isinstance(rows, pd.DataFrame) and len(loaded.runs) == 1
