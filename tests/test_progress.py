"""Progress: the ETA of a progress line, the command that resumes after Ctrl-C, and the
start-of-run warning on a busy machine."""

from __future__ import annotations

import logging
import re

import torch

from harness.execution import hygiene, summary
from harness.execution.hygiene import Snapshot
from harness.execution.runner import _duration
from tests.helpers import run_in_process


def test_resume_command_is_the_users_command():
    argv = ["-m", "+sweep=demo", "store=my results",
            "hydra.sweep.dir=${store}/_hydra/sweeps/2026-01-01_00-00-00_1_abc"]
    assert summary.resume_command(argv) == "nlt-run -m +sweep=demo 'store=my results'"
    message = summary.interrupted_message(argv)
    assert "To resume, rerun:\n  nlt-run -m +sweep=demo 'store=my results'" in message
    # a job directory the user named is part of the command
    assert "hydra.sweep.dir=mine" in summary.resume_command(["-m", "hydra.sweep.dir=mine"])


def test_duration():
    assert [_duration(s) for s in (0.4, 59, 61, 3600 * 2 + 600)] == ["0s", "59s", "1m01s",
                                                                      "2h10m"]


def test_progress_lines_show_an_eta(tmp_path, caplog):
    threads = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="harness"):
            run_in_process(tmp_path / "results", "algorithm=gd", "data.n=16", "model.m=64",
                           "data.d=4", "max_iters=3", "target_rel_loss=0",
                           "progress_interval_s=0")
    finally:
        torch.set_num_threads(threads)
    lines = [r.getMessage() for r in caplog.records if " iter " in r.getMessage()]
    assert lines and all("ETA <= " in line for line in lines)
    assert "iter 3/3" in lines[-1] and "ETA <= 0s" in lines[-1]


def test_busy_warning_at_start(monkeypatch, capsys):
    monkeypatch.delenv("NLT_HYGIENE", raising=False)
    real = hygiene.busy_warning
    monkeypatch.setattr(hygiene, "busy_warning", lambda: real(Snapshot(7.5, 6, None), cpus=2))
    summary.warn_if_busy()
    err = capsys.readouterr().err
    assert err.startswith("nlt-run: warning: the machine is busy (load average 7.5")
    assert err.count("\n") == 1
    monkeypatch.setenv("NLT_HYGIENE", "0")
    summary.warn_if_busy()
    assert capsys.readouterr().err == ""


def test_sweep_eta(tmp_path):
    import datetime as dt
    import json

    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    (tmp_path / summary.SWEEP_FILE).write_text(json.dumps({"utc_start": start.isoformat()}))
    assert re.fullmatch(r"; about 2m0[0-4]s left", summary.sweep_eta(tmp_path, 2, 6))
    assert summary.sweep_eta(tmp_path, 6, 6) == "" and summary.sweep_eta(tmp_path, 1, None) == ""
    assert summary.sweep_eta(tmp_path / "nope", 1, 3) == ""
