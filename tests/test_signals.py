"""Signals to real ``nlt-run`` process trees (issue 24, class 2): SIGTERM and SIGHUP stop a
sweep as Ctrl-C does (its table, exit code 128 + the signal), and no process of a sweep is
alive one second after ``nlt-run`` exits, under any signal and launcher (basic, joblib/loky,
a suite). Survivors are found by scanning the whole process table (psutil if installed, else
/proc) for every process that carries the command's ``NLT_RUN_OWNERS`` mark, wherever it was
re-parented, and the process tree seen just before the signal. Finished cells are never lost
and nothing is written after ``nlt-run`` is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.execution.isolation import OWNERS_ENV, _start_time, descendants
from harness.execution.results import RUN_FILE, cell_is_complete

REPO = Path(__file__).resolve().parent.parent
SMALL = ("+sweep=smoke", "data.n=16", "algorithm=gd", "max_iters=100000000",
         "target_rel_loss=0")
JOBLIB = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != OWNERS_ENV}
    return {**env, "PYTHONPATH": str(REPO)}


def _spawn(tmp: Path, *args: str, argv0: tuple[str, ...] = ("-m", "harness.execution.app"),
           session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv0, *args, f"store={tmp / 'store'}"],
                            cwd=tmp, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=session)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _marked(pid: int) -> set[int]:
    """Every living process whose environment says it belongs to ``nlt-run`` ``pid``."""
    mark = f"{pid}:"
    try:
        import psutil
    except ImportError:
        psutil = None
    found = set()
    if psutil is not None:
        for proc in psutil.process_iter():
            try:
                owners = proc.environ().get(OWNERS_ENV, "")
            except (psutil.Error, OSError):
                continue
            if any(o.startswith(mark) for o in owners.split(",")):
                found.add(proc.pid)
    else:
        for env in Path("/proc").glob("[0-9]*/environ"):
            try:
                text = env.read_bytes().decode(errors="replace")
            except OSError:
                continue
            for item in text.split("\0"):
                if item.startswith(f"{OWNERS_ENV}=") and any(
                        o.startswith(mark) for o in item.split("=", 1)[1].split(",")):
                    found.add(int(env.parent.name))
    return {p for p in found if _alive(p)}


def _survivors(pid: int, tree: set[int]) -> set[int]:
    return {p for p in tree if _alive(p)} | _marked(pid)


def _cells(store: Path) -> dict[str, str]:
    """Finished cells of the store: name -> the bytes of their run.json."""
    return {str(p.parent): p.read_text() for p in store.glob(f"*/*/{RUN_FILE}")
            if not p.parts[-3].startswith("_") and cell_is_complete(p.parent)}


def _wait_running(tmp: Path, proc: subprocess.Popen, cells: int, jobs: int = 1,
                  timeout: float = 150) -> set[int]:
    """Wait until ``jobs`` jobs have started and ``cells`` cell processes (their cell logged
    'data ready') run below ``proc``; returns the process tree."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        started = list((tmp / "store" / "_hydra").glob("**/started.json"))
        logs = [p for p in (tmp / "store" / "_hydra").glob("**/*.log")
                if "warm-up done" in p.read_text(errors="replace")]
        if len(started) >= jobs and len(logs) >= cells:
            time.sleep(0.3)
            return set(descendants(proc.pid))
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no running cell within {timeout}s: {proc.communicate()}")


def _finish(proc: subprocess.Popen, sig: int, group: bool = False) -> tuple[int, str, str]:
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _check_clean(tmp: Path, proc: subprocess.Popen, tree: set[int]) -> None:
    """One second after exit: no process of the sweep alive, and nothing written after."""
    time.sleep(1)
    assert not _survivors(proc.pid, tree)
    before = _cells(tmp / "store")
    time.sleep(1.5)
    assert _cells(tmp / "store") == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_of_a_basic_sweep_act_like_ctrl_c(tmp_path, sig):
    proc = _spawn(tmp_path, "-m", *SMALL, "time_budget_s=0.5,60")
    tree = _wait_running(tmp_path, proc, cells=2, jobs=2)
    code, out, err = _finish(proc, sig)
    assert code == 128 + sig, out[-2000:] + err[-2000:]
    assert f"interrupted ({signal.Signals(sig).name})" in err
    assert "Traceback" not in out + err
    assert "cells by status: interrupted 1, time_budget 1" in out
    _check_clean(tmp_path, proc, tree)
    assert len(_cells(tmp_path / "store")) == 1  # the finished cell is kept


def test_sigterm_to_the_process_group_stops_the_sweep_cleanly(tmp_path):
    """``kill -TERM -PGID`` (a batch system, ``timeout``): every process gets SIGTERM; the
    cell process leaves the decision to its job, which records it as interrupted."""
    proc = _spawn(tmp_path, "-m", *SMALL, "time_budget_s=0.5,60", session=True)
    tree = _wait_running(tmp_path, proc, cells=2, jobs=2)
    code, out, err = _finish(proc, signal.SIGTERM, group=True)
    assert code == 143, out[-2000:] + err[-2000:]
    assert "cells by status: interrupted 1, time_budget 1" in out
    assert "Traceback" not in out + err
    _check_clean(tmp_path, proc, tree)
    assert len(_cells(tmp_path / "store")) == 1


def test_sigterm_of_a_joblib_sweep_leaves_no_worker_and_no_late_cell(tmp_path):
    proc = _spawn(tmp_path, "-m", *SMALL, "time_budget_s=60,61", *JOBLIB)
    tree = _wait_running(tmp_path, proc, cells=2, jobs=2)
    code, out, err = _finish(proc, signal.SIGTERM)
    assert code == 143, out[-2000:] + err[-2000:]
    assert "cells by status:" in out and "Traceback" not in out + err
    _check_clean(tmp_path, proc, tree)
    assert _cells(tmp_path / "store") == {}


def test_sigint_of_a_joblib_sweep_leaves_no_worker(tmp_path):
    proc = _spawn(tmp_path, "-m", *SMALL, "time_budget_s=60,61", *JOBLIB, session=True)
    tree = _wait_running(tmp_path, proc, cells=2, jobs=2)
    code, out, err = _finish(proc, signal.SIGINT, group=True)  # Ctrl-C: the whole group
    assert code == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    _check_clean(tmp_path, proc, tree)


def test_sigkill_of_a_joblib_sweep_takes_workers_and_cells_along(tmp_path):
    """kill -9 of nlt-run: its loky workers and their cells notice it is gone and stop
    within a second, and write nothing; the cells would finish 2 s later if they lived."""
    proc = _spawn(tmp_path, "-m", *SMALL, "time_budget_s=2,2.5", *JOBLIB)
    tree = _wait_running(tmp_path, proc, cells=2, jobs=2)
    assert len(tree) >= 6  # loky's tracker, 2 workers, their forkservers, cells
    proc.kill()
    proc.communicate(timeout=30)
    _check_clean(tmp_path, proc, tree)
    time.sleep(2)
    assert _cells(tmp_path / "store") == {}


def test_a_finished_joblib_sweep_leaves_no_process_behind(tmp_path):
    proc = _spawn(tmp_path, "-m", "+sweep=smoke", "data.n=16", "algorithm=gd,sgd",
                  "max_iters=2", *JOBLIB)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    time.sleep(1)
    assert not _marked(proc.pid)
    assert len(_cells(tmp_path / "store")) == 2


# --- suites: a suite nlt-run runs each part as an nlt-run of its own ----------------------------

#: a two-part suite, run through nlt-run's real ``main`` (the committed suites are long)
SUITE_DRIVER = """
import sys
import harness.execution.app as app
parts = [["-m", *{small!r}, "time_budget_s=60", "seed=0", "store={store}"],
         ["-m", *{small!r}, "time_budget_s=60", "seed=1", "store={store}"]]
app.validate_command = lambda argv: parts
sys.argv[1:] = ["-m", "+sweep=paper"]
app.main()
"""


def _suite(tmp: Path) -> subprocess.Popen:
    code = SUITE_DRIVER.format(small=SMALL, store=tmp / "store")
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_of_a_suite_stops_its_running_part_with_its_table(tmp_path):
    proc = _suite(tmp_path)
    tree = _wait_running(tmp_path, proc, cells=1)
    code, out, err = _finish(proc, signal.SIGTERM)
    assert code == 143, out[-2000:] + err[-2000:]
    assert "interrupted (SIGTERM) in suite part 1/2" in err
    assert "cells by status: interrupted 1" in out  # the part's own table
    assert "[suite 2/2]" not in out and "Traceback" not in out + err
    _check_clean(tmp_path, proc, tree)


def test_sigkill_of_a_suite_ends_its_part_and_cells(tmp_path):
    proc = _suite(tmp_path)
    tree = _wait_running(tmp_path, proc, cells=1)
    proc.kill()
    proc.communicate(timeout=30)
    _check_clean(tmp_path, proc, tree)
    assert _cells(tmp_path / "store") == {}


def test_the_owner_mark_names_the_command_and_its_suite(tmp_path):
    """``become_owner`` appends the command to the owners it inherited (a suite's)."""
    code = ("import os; from harness.execution.isolation import become_owner;"
            "become_owner(); print(os.environ['NLT_RUN_OWNERS'])")
    mine = f"{os.getpid()}:{_start_time(os.getpid())}"
    out = subprocess.run([sys.executable, "-c", code], env={**_env(), OWNERS_ENV: mine},
                         capture_output=True, text=True, timeout=60)
    owners = out.stdout.strip().split(",")
    assert owners[0] == mine and len(owners) == 2 and owners[1].split(":")[1].isdigit()
