"""Each cell in a child process of its job, so that a crash or a SIGKILL (the kernel's OOM
killer) of the cell is recorded as a ``failed`` cell by its job instead of ending the job.

A cell process never outlives its job: the kernel kills it when its parent dies (Linux
``PR_SET_PDEATHSIG``) and a watcher thread ends it when the job process is gone. Its files are
written atomically, so nothing half-written is left behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.common.errors import ConfigError
from harness.common.provenance import provenance
from harness.execution.config import resolve
from harness.execution.results import (
    attempt_dir,
    cell_is_complete,
    cell_lock,
    recover_cell,
    set_aside,
    write_cell,
)
from harness.execution.runner import Outcome, run_cell, run_record

log = logging.getLogger("harness")

_CONTEXT = None


def _context():
    """forkserver: children fork from a clean server that has imported torch and the harness
    once (cheap per cell), and never inherit a parent's thread pools or CUDA state."""
    global _CONTEXT
    if _CONTEXT is None:
        if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn",
                                                                     "forkserver"):
            # a joblib (loky) worker: its default method 'loky' travels to the child, which
            # only knows the standard ones
            multiprocessing.set_start_method("forkserver", force=True)
        _CONTEXT = multiprocessing.get_context("forkserver")
        # not harness.execution.app: under `python -m harness.execution.app` each child
        # re-runs the main module by name, and runpy warns when it was imported before
        _CONTEXT.set_forkserver_preload(["harness.execution.runner", "hydra", "pandas"])
    return _CONTEXT


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False


def _die_with(job_pid: int) -> None:
    """A cell process never outlives its job: the kernel SIGKILLs it when its parent (the
    forkserver) exits (prctl PR_SET_PDEATHSIG, Linux), and a watcher thread ends it when the
    job process is gone (any OS with /proc or kill(pid, 0)); its files are written atomically,
    so nothing half-written is left."""
    import ctypes
    import threading

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while not _process_gone(job_pid):
            time.sleep(0.2)
        os._exit(128 + signal.SIGKILL)

    threading.Thread(target=watch, name="nlt-parent-watch", daemon=True).start()


def _child(container: dict, launch: dict, log_files: list[str], conn,
           job_pid: int | None = None) -> None:
    """Entry point of the cell process: Hydra's logging is not inherited, so log like it.

    The config travels as a resolved plain dict: Hydra's structured schemas are classes made
    at run time, which do not pickle. Ctrl-C reaches the whole process group: the cell ignores
    it and its job decides (it stops the cell and ends the sweep with its table)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if job_pid is not None:
        _die_with(job_pid)
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    handlers += [logging.FileHandler(f) for f in log_files]
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    try:
        out = run_cell(OmegaConf.create(container), launch)
        conn.send(("ok", out.status, out.reason, str(out.cell), out.reused))
    except ConfigError as exc:
        conn.send(("config_error", str(exc)))
    finally:
        conn.close()


def _death_reason(exitcode: int | None, seconds: float) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (OOM killer or kill -9)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name} after {seconds:.1f}s{hint}"
    return f"cell process exited with code {exitcode} after {seconds:.1f}s (see the job log)"


def record_failure(cfg: DictConfig, launch: dict, cell: Path, reason: str) -> Outcome:
    """The cell could not record itself (its process died, or the job around it raised):
    write a ``failed`` run.json for it, so the summary and a resume see it. Under the cell's
    lock; a done cell (a ``force=true`` rerun died) is kept, and the failed attempt is
    recorded beside it. If even that cannot be written, the outcome is returned unwritten."""
    run = resolve(cfg)
    prov = provenance("unknown (cell process died)", int(launch.get("threads") or 0))
    prov["launch"] = launch
    record = run_record(run, "failed", reason, cell, prov)
    target = cell
    try:
        with cell_lock(cell):
            recover_cell(cell)
            if cell_is_complete(cell):
                target = attempt_dir(cell)
                reason = f"{reason}; the earlier result in {cell} is kept"
                record["reason"] = reason
            else:
                set_aside(cell)
            write_cell(target, [], record)
    except OSError as exc:
        log.error("[%s] failed (%s); could not record it: %s", record["label"], reason, exc)
        return Outcome("failed", f"{reason}; not recorded: {exc.strerror or exc}", cell)
    log.error("[%s] failed (%s) -> %s", record["label"], reason, target)
    return Outcome("failed", reason, target)


def run_isolated(cfg: DictConfig, launch: dict, cell: Path):
    """``run_cell`` in a child process; its death becomes a ``failed`` cell, not a lost job.
    An interrupt of the job (Ctrl-C) kills the cell process and propagates."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    log_files = [h.baseFilename for h in logging.getLogger().handlers
                 if isinstance(h, logging.FileHandler)]
    container = OmegaConf.to_container(cfg, resolve=True)
    proc = ctx.Process(target=_child, args=(container, launch, log_files, send, os.getpid()),
                       daemon=True)
    start = time.perf_counter()
    proc.start()
    send.close()
    try:
        try:
            message = receive.recv()
        except EOFError:  # the child died without a word
            message = None
        proc.join()
    except BaseException:  # KeyboardInterrupt: the cell must not outlive the sweep
        proc.kill()
        proc.join()
        raise
    if message and message[0] == "config_error":
        raise ConfigError(message[1])
    if message:
        _, status, reason, cell_path, reused = message
        return Outcome(status, reason, Path(cell_path), reused)
    return record_failure(cfg, launch, cell, _death_reason(proc.exitcode,
                                                          time.perf_counter() - start))
