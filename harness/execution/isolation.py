"""Each cell in a child process of its job, so that a crash or a SIGKILL (the kernel's OOM
killer) of the cell is recorded as a ``failed`` cell by its job instead of ending the job.

No process of a sweep outlives its ``nlt-run`` (``become_owner``, ``reap_descendants``,
``watch_owners``): the command reaps every process below it when it ends, however it ends
short of kill -9, and every process below it (launcher workers, cells, a suite's parts) stops
itself when the command above it is gone. A cell process also dies with its job: the kernel
kills it when its parent dies (Linux ``PR_SET_PDEATHSIG``) and a watcher thread ends it when
the job process is gone. Its files are
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
from harness.execution.runner import Outcome, os_reason, run_cell, run_record

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
PR_SET_CHILD_SUBREAPER = 36

#: the processes a job or cell belongs to, ``pid:start_time`` comma-separated: the ``nlt-run``
#: command (and a suite above it). Set by ``become_owner``, inherited by every process it
#: starts (launcher workers included); a process that finds one of them gone stops itself.
OWNERS_ENV = "NLT_RUN_OWNERS"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot; None: unknown), which tells
    a process from a later one that reuses its pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _token(pid: int) -> str:
    return f"{pid}:{_start_time(pid) or ''}"


def owners() -> list[tuple[int, str]]:
    """The ``(pid, start_time)`` of the processes this one belongs to (``OWNERS_ENV``)."""
    out = []
    for item in os.environ.get(OWNERS_ENV, "").split(","):
        pid, _, start = item.partition(":")
        if pid.isdigit() and int(pid) != os.getpid():
            out.append((int(pid), start))
    return out


def _owner_gone(pid: int, start: str) -> bool:
    if _process_gone(pid):
        return True
    now = _start_time(pid)
    return bool(start) and now is not None and now != start


def descendants(pid: int | None = None) -> list[int]:
    """Every living process below ``pid`` (default: this one), from /proc (Linux)."""
    pid = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def reap_descendants(grace: float = 1.0) -> int:
    """End every process this one started, directly or not (launcher workers, forkservers,
    cells, and orphans re-parented here by ``become_owner``'s subreaper): SIGTERM, then SIGKILL
    after ``grace`` seconds; returns how many there were."""
    _stop_loky_workers()
    kids = descendants()
    _release_resource_tracker()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in kids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline and any(not _process_gone(p) for p in kids):
            _reap_zombies()
            time.sleep(0.05)
        kids = [p for p in kids if not _process_gone(p)] + [
            p for p in descendants() if p not in kids]
        if not kids:
            break
    _reap_zombies()
    return len(kids)


def _release_resource_tracker() -> None:
    """Close this process's end of multiprocessing's resource-tracker pipe. The tracker
    ignores SIGTERM and leaves when every end is closed: with ours closed it goes as soon as
    the forkserver holding the other one is ended, instead of lasting the whole SIGTERM grace
    (measured: every nlt-run exited 1 s late). It still unlinks what was left registered."""
    try:
        from multiprocessing import resource_tracker
    except ImportError:
        return
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    fd = getattr(tracker, "_fd", None)
    if fd is None:
        return
    try:
        os.close(fd)
    except OSError:
        pass
    tracker._fd = None


def _stop_loky_workers() -> None:
    """joblib's launcher keeps its loky workers for the next batch: shut them down the way
    loky does (a worker killed under it makes its resource tracker print tracebacks)."""
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None)
    if executor is None:
        return
    try:
        executor.shutdown(wait=True, kill_workers=True)
    except Exception:  # a broken executor: the reaper below ends its processes
        pass


def _reap_zombies() -> None:
    """Collect exited children (orphans re-parented to a subreaper are nobody else's)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except OSError:
            return
        if pid == 0:
            return


_WATCHING = False


def watch_owners(also: tuple[int, ...] = (), on_gone=None) -> None:
    """Stop this process (exit 137, nothing more written) as soon as a process it belongs to
    is gone: the ``nlt-run`` command (``OWNERS_ENV``) or ``also`` (its job). A daemon thread
    polls every 0.2 s; started once per process."""
    global _WATCHING
    import threading

    watched = owners() + [(p, _start_time(p) or "") for p in also]
    if _WATCHING or not watched:
        return
    _WATCHING = True

    def watch() -> None:
        while not any(_owner_gone(p, s) for p, s in watched):
            time.sleep(0.2)
        if on_gone is not None:
            on_gone()
        os._exit(128 + signal.SIGKILL)

    threading.Thread(target=watch, name="nlt-owner-watch", daemon=True).start()


def become_owner() -> None:
    """Called by ``nlt-run`` first: processes it starts belong to it. It watches the commands
    above it (a suite, whose kill -9 ends its parts and their cells too), adopts orphaned
    descendants (Linux child subreaper, so ``reap_descendants`` finds them), and appends itself
    to ``OWNERS_ENV`` for every process it starts."""
    import ctypes

    watch_owners(on_gone=lambda: reap_descendants(grace=0.2))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError):
        pass
    inherited = [f"{p}:{s}" for p, s in owners()]
    os.environ[OWNERS_ENV] = ",".join([*inherited, _token(os.getpid())])


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


def _die_with(job_pid: int, owner_list: str = "") -> None:
    """A cell process never outlives its job or its ``nlt-run``: the kernel SIGKILLs it when
    its parent (the forkserver) exits (prctl PR_SET_PDEATHSIG, Linux), and a watcher thread
    ends it when the job process or the ``nlt-run`` command above it is gone (any OS with
    /proc or kill(pid, 0)); its files are written atomically, so nothing half-written is
    left."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if owner_list:
        os.environ[OWNERS_ENV] = owner_list
    watch_owners(also=(job_pid,))


def _child(container: dict, launch: dict, log_files: list[str], conn,
           job_pid: int | None = None, owner_list: str = "") -> None:
    """Entry point of the cell process: Hydra's logging is not inherited, so log like it.

    The config travels as a resolved plain dict: Hydra's structured schemas are classes made
    at run time, which do not pickle. Ctrl-C (or a SIGTERM to the process group) reaches every
    process: the cell ignores it and its job decides (it stops the cell and ends the sweep
    with its table)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.raiseExceptions = False  # a log file on a full disk: no traceback per line
    if job_pid is not None:
        _die_with(job_pid, owner_list)
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
        log.error("[%s] failed (%s); could not record it: %s", record["label"], reason,
                  os_reason(exc))
        return Outcome("failed", f"{reason}; not recorded: {os_reason(exc)}", cell)
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
    proc = ctx.Process(target=_child, args=(container, launch, log_files, send, os.getpid(),
                                             os.environ.get(OWNERS_ENV, "")),
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
