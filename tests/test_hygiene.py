"""Measurement hygiene: a cell timed under load is marked disturbed, its report says so and
leaves it out; a quiet machine (the probe faked quiet) marks none; old stores still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from harness.execution import hygiene
from harness.execution.hygiene import Snapshot, assess, busy_warning
from harness.reporting.load import leave_out_disturbed, load_stores
from harness.reporting.report import build
from tests.helpers import run_in_process

TINY = ("data.n=32", "model.m=256", "data.d=8", "max_iters=3", "threads=1")
METHODS = ("gn_gram", "gd")


@pytest.fixture(autouse=True)
def _hygiene_on(monkeypatch):
    monkeypatch.delenv("NLT_HYGIENE", raising=False)  # tests/conftest.py turns it off


def _demo(store):
    """Two tiny cells, one thread each, in this process."""
    threads = torch.get_num_threads()
    try:
        return [run_in_process(store, f"algorithm={a}", *TINY)[1] for a in METHODS]
    finally:
        torch.set_num_threads(threads)


def test_assess_rules():
    quiet = Snapshot(0.2, 0, 1e-3)
    assert assess(quiet, quiet, threads=2, cpus=4)["disturbed"] is False
    drifted = assess(quiet, Snapshot(0.2, 0, 1.5e-3), threads=2, cpus=4)
    assert drifted["disturbed"] and "reference kernel" in drifted["disturbed_reason"]
    assert drifted["hygiene_reference_drift"] == pytest.approx(0.5)
    crowded = assess(quiet, Snapshot(3.0, 3, 1e-3), threads=2, cpus=4)
    assert crowded["disturbed"] and "3 other runnable" in crowded["disturbed_reason"]
    # the cell's own threads fill the CPUs: not disturbed
    assert not assess(quiet, Snapshot(0.2, 2, 1e-3), threads=2, cpus=4)["disturbed"]
    # unknown figures (no /proc) decide nothing
    unknown = Snapshot(None, None, None)
    assert assess(unknown, unknown, threads=1, cpus=1)["disturbed"] is False


def test_busy_warning_is_one_line_only_when_busy():
    assert busy_warning(Snapshot(0.1, 0, None), cpus=8) is None
    line = busy_warning(Snapshot(7.5, 6, None), cpus=2)
    assert line and "\n" not in line and "7.5" in line and "2 CPU(s)" in line


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/stat"),
                    reason="needs Linux (/proc/stat and CPU affinity)")
def test_cells_under_load_are_disturbed_and_the_report_says_so(tmp_path):
    # the cells and two busy processes share one CPU
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    busy = [subprocess.Popen([sys.executable, "-c",
                              f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
            for _ in range(2)]
    try:
        os.sched_setaffinity(0, {cpu})
        time.sleep(0.5)  # let them start spinning
        runs = _demo(tmp_path / "results")
    finally:
        os.sched_setaffinity(0, before)
        for p in busy:
            p.kill()
            p.wait()
    for run in runs:
        assert run.get("disturbed") is True, run["disturbed_reason"]
        assert run["hygiene_runnable_start"] >= 2 and run["hygiene_cpus"] == 1
        assert run["step_time_iqr_s"] >= 0
    rep = build([str(tmp_path / "results")], tmp_path / "report")
    text = (tmp_path / "report" / "REPORT.md").read_text()
    head = text[:text.index("## Headline")]
    assert "2 of 2 cells were measured on a disturbed machine" in head
    assert "--include-disturbed" in head and len(rep.cells) == 0
    rep = build([str(tmp_path / "results")], tmp_path / "report2", include_disturbed=True)
    assert len(rep.cells) == 2 and rep.cells["disturbed"].all()


def test_a_quiet_machine_marks_none_and_old_stores_are_not_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(hygiene, "snapshot", lambda: Snapshot(0.1, 0, 1e-3))
    store = tmp_path / "results"
    runs = _demo(store)
    assert [r["disturbed"] for r in runs] == [False, False]
    loaded, lines = leave_out_disturbed(load_stores([store]))
    assert len(loaded.runs) == 2 and not loaded.runs["disturbed"].any()
    assert lines and "No cell was disturbed" in lines[0]
    # a store written before hygiene existed: no fields, read as not measured
    for path in store.glob("*/*/run.json"):
        run = json.loads(path.read_text())
        for key in [k for k in run if k.startswith("hygiene_") or k.startswith("disturbed")]:
            del run[key]
        path.write_text(json.dumps(run))
    loaded, lines = leave_out_disturbed(load_stores([store]))
    assert len(loaded.runs) == 2 and not loaded.runs["disturbed"].any()
    assert not loaded.runs["hygiene_measured"].any()
    assert "2 of 2 cells were run before measurement hygiene" in lines[0]


def test_hygiene_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("NLT_HYGIENE", "0")
    run = _demo(tmp_path / "results")[0]
    assert "disturbed" not in run and run["step_time_iqr_s"] >= 0
