"""``nlt-run``: the Hydra application that runs one cell, or a sweep of cells with ``-m``.

    nlt-run algorithm=gn_gram data.n=256 model.m=4096
    nlt-run -m algorithm=gd,gn_gram data.n=64,128,256
    nlt-run -m +sweep=demo                          # a preset, harness/conf/sweep/demo.yaml
    nlt-run -m +sweep=demo hydra/launcher=joblib hydra.launcher.n_jobs=2

Every command line is validated before any job starts (one line and exit code 2 on bad
input); a sweep ends with a table of its cells and exits 1 if any cell failed, was killed or
never ran (docs/sweeps.md).

Fault isolation (``harness.execution.isolation``): each job (one cell) runs its cell in a child
process (``isolate=true``, the default), so a cell that crashes the interpreter or is SIGKILLed
(the kernel's OOM killer) is recorded by its job as ``failed`` with the signal in its reason,
and the sweep goes on, with every launcher. Suites (a preset that is a list of sweeps) are
``harness.execution.suites``; what the pre-flight needs of Hydra's internals is
``harness.execution.hydra_adapter``. Only a kill of the job process itself is left to the
launcher: with the basic launcher it ends the sweep, with joblib it ends the batch, with
submitit only that job; the summary then shows the job as ``killed``. Rerunning the command
resumes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.common.errors import ConfigError, fail, guarded
from harness.common.io import write_json, write_text
from harness.execution import sharded_cell
from harness.execution.cmdline import check_command_line
from harness.execution.config import CONF_DIR, register_configs, resolve, store_path
from harness.execution.hydra_adapter import (
    parse_overrides,
    split_argv,
    sweep_jobs,
    tolerate_unwritable_job_records,
)
from harness.execution.isolation import (
    become_owner,
    reap_descendants,
    record_failure,
    run_isolated,
    watch_owners,
)
from harness.execution.preflight import preflight
from harness.execution.results import (
    cell_is_complete,
    cell_name,
    claim_sweep_dir,
    release_sweep_dir,
)
from harness.execution.runner import os_reason, run_cell
from harness.execution.suites import (
    STOP_SIGNALS,
    raise_interrupted,
    run_suite,
    suite_parts,
)
from harness.execution.summary import (
    FAILED_STATUSES,
    INTERRUPTED,
    OUTCOME_FILE,
    STARTED_FILE,
    SWEEP_FILE,
    format_table,
    interrupted_message,
    job_rows,
    summary_table,
    sweep_eta,
    warn_if_busy,
    write_outcome,
)

PROG = "nlt-run"
log = logging.getLogger("harness")


# --- the sweep: size, progress, summary ----------------------------------------------------------


def count_jobs(config: DictConfig) -> int:
    """Number of jobs the basic sweeper will launch for this sweep (its preset crossed with
    the command line's overrides, ``hydra_adapter.sweep_jobs``). A sweep it cannot expand
    (an interval) raises ValueError."""
    params = config.hydra.sweeper.get("params") or {}
    return len(sweep_jobs(params, config.hydra.overrides.task))


@dataclass
class SweepState:
    """What one ``nlt-run`` command learns about its sweep. The ``SweepSummary`` callback
    writes it (Hydra makes the callback from the config, so it cannot be handed the state:
    it takes the one ``main`` put in ``_STATE``); ``main`` reads it to print the table when
    the sweep is cut short and to choose its exit code."""

    sweep_dir: Path | None = None
    store: str = "results"
    reported: bool = False
    any_failed: bool = False
    #: job number -> its summary row, for jobs run in this process (the basic launcher): the
    #: table has them even when their outcome file could not be written (a full disk)
    outcomes: dict[int, dict[str, Any]] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        assert self.sweep_dir is not None
        try:
            rows = job_rows(self.sweep_dir)
        except OSError:
            rows = []
        if not self.outcomes:
            return rows
        try:
            dirs = sorted(int(p.name) for p in self.sweep_dir.iterdir()
                          if p.is_dir() and p.name.isdigit())
        except OSError:
            dirs = []
        if len(rows) < len(dirs):
            rows = [{"status": "not_run", "reason": "unreadable"} for _ in dirs]
        for i, job in enumerate(dirs):  # job_rows: one row per job directory, in order
            # what this process saw wins over what the disk could not keep (an outcome file
            # or a failed cell's run.json that could not be written)
            if job in self.outcomes and rows[i].get("status") in UNRECORDED:
                rows[i] = self.outcomes[job]
        return rows

    def report(self) -> None:
        """Print the one-screen table of the sweep's cells (once) and remember whether any
        failed. A summary.csv that cannot be written is one line; the table is printed."""
        if self.sweep_dir is None or self.reported:
            return
        self.reported = True
        rows = self.rows()
        if not rows:
            return
        table = summary_table(rows)
        summary = self.sweep_dir / "summary.csv"
        try:
            write_text(summary, table.to_csv(index=False))
            where = f"summary: {summary}; "
        except OSError as exc:
            where = f"summary.csv not written ({os_reason(exc)}); "
        print("\n" + format_table(table), flush=True)
        print(f"{where}results in {self.store}/", flush=True)
        self.any_failed = bool(table["status"].isin(FAILED_STATUSES).any())


#: table statuses of a job whose record is not on disk
UNRECORDED = ("missing", "killed", "not_run")


#: the sweep state of the command being run (``main`` sets a fresh one per command)
_STATE: ContextVar[SweepState] = ContextVar("nlt_run_sweep_state")


class SweepSummary(Callback):
    """Writes ``sweep.json`` (cell count) before the first job; at the end prints the
    one-screen table of the sweep's cells and remembers whether any failed (in ``state``)."""

    def __init__(self, state: SweepState | None = None) -> None:
        # a callback made outside ``main`` (no state set) keeps a state of its own
        self.state = state if state is not None else (_STATE.get(None) or SweepState())

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        guarded(PROG, lambda: claim_sweep_dir(sweep_dir))  # one sweep per directory at a time
        self.state.sweep_dir, self.state.store = sweep_dir, str(config.store)
        try:
            total = count_jobs(config)
        except Exception:  # a sweeper other than the basic one: no count, no harm
            total = None
        launcher = config.hydra.runtime.choices.get("hydra/launcher", "basic")
        try:
            write_json(sweep_dir / SWEEP_FILE, {
                "total_cells": total, "launcher": launcher,
                "overrides": list(config.hydra.overrides.task),
                "utc_start": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
        except OSError as exc:  # the launcher then fails with its own one-line reason
            log.error("cannot write %s: %s", sweep_dir / SWEEP_FILE, os_reason(exc))
        print(f"[sweep] {total if total is not None else '?'} cells, launcher {launcher}, "
              f"store {config.store}/, jobs in {sweep_dir}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self.state.report()
        release_sweep_dir(Path(config.hydra.sweep.dir))


def launch_info(hc: Any) -> dict[str, Any]:
    """How this job runs: launcher, parallel jobs, and the torch thread count that
    ``threads=null`` gets so that parallel jobs do not oversubscribe the cores.

    - basic: one job at a time, torch's default thread count;
    - joblib: ``n_jobs`` jobs at once (-1: one per core), each ``cores // n_jobs`` threads;
    - submitit: ``cpus_per_task`` threads (SLURM_CPUS_PER_TASK on a cluster), else 1, since
      submitit_local starts every job of the sweep at once.
    """
    launcher = hc.runtime.choices.get("hydra/launcher") or "basic"
    # harness/conf/hydra/launcher/slurm.yaml: submitit
    target = str(hc.launcher.get("_target_", ""))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {"launcher": launcher, "mode": hc.mode.name, "cores": cores,
                            "parallel_jobs": 1, "threads": None}
    info["launcher_target"] = target
    if "joblib" in target:
        n_jobs = int(hc.launcher.get("n_jobs", -1))
        jobs = cores if n_jobs == -1 else n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        info.update(parallel_jobs=jobs, threads=max(1, cores // jobs))
    elif "submitit" in target:
        cpus = hc.launcher.get("cpus_per_task") or os.environ.get("SLURM_CPUS_PER_TASK")
        info.update(parallel_jobs=None, threads=int(cpus) if cpus else 1)
    if hc.mode.name == "MULTIRUN":
        info.update(sweep_dir=str(hc.sweep.dir), job_num=int(hc.job.num))
    return info


# --- the Hydra app ------------------------------------------------------------------------------


def _record_and_progress(hc: Any, job_dir: Path, outcome: Any, label: str) -> None:
    """Write the job's outcome and print ``[sweep 3/12 cells done]``: cells of this sweep with
    an outcome, whichever process ran them. The write and the count happen under one lock on
    the sweep directory, so parallel jobs (joblib, submitit) that finish together get
    consecutive counts, each cell once, instead of the same count twice."""
    from filelock import FileLock

    sweep_dir = Path(hc.sweep.dir)
    try:
        with FileLock(str(sweep_dir / ".progress.lock")):
            write_outcome(job_dir, outcome.cell, outcome.status)
            done = len(list(sweep_dir.glob(f"*/{OUTCOME_FILE}")))
    except OSError as exc:  # the table still has it (SweepState.outcomes); one line
        log.error("[%s] %s, but its outcome could not be recorded in %s: %s", label,
                  outcome.status, job_dir, os_reason(exc))
        return
    status = outcome.status + (" (reused)" if outcome.reused else "")
    total = None
    try:
        total = json.loads((sweep_dir / SWEEP_FILE).read_text()).get("total_cells")
    except (OSError, ValueError):
        pass
    log.info("[sweep %d/%s cells done] %s: %s%s", done, total or "?", label, status,
             sweep_eta(sweep_dir, done, total))


def _remember(job_dir: Path, facts: dict[str, Any], outcome: Any) -> None:
    """The job's row for the table of this process's sweep (the basic launcher runs jobs in
    it), kept in memory in case its outcome cannot be written. A module function: joblib
    pickles ``_app`` by value, and the ContextVar it reads does not pickle."""
    state = _STATE.get(None)
    if state is not None and job_dir.name.isdigit():
        reason = str(outcome.reason or "")
        state.outcomes[int(job_dir.name)] = {
            **facts, "status": outcome.status,
            "reason": reason if len(reason) <= 60 else reason[:57] + "..."}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode.name == "MULTIRUN"
    launch = launch_info(hc)
    # a launcher's worker process (joblib/loky, submitit local) stops when nlt-run is gone
    watch_owners(on_gone=lambda: reap_descendants(grace=0.2))
    try:
        run = resolve(cfg)
    except ConfigError as exc:
        fail(PROG, str(exc))
    cell = store_path(cfg) / cell_name(run.identity)
    label = run.label
    if sharded_cell.idle_task(cfg):
        log.info("[%s] task %s of the job holds its node for the ranks; the cell runs in "
                 "task 0", label, os.environ.get("SLURM_PROCID"))
        return "held"
    try:
        if multirun:
            try:
                write_json(job_dir / STARTED_FILE, {"cell": str(cell), **run.facts()})
            except OSError as exc:
                log.error("[%s] cannot write %s: %s", label, job_dir / STARTED_FILE,
                          os_reason(exc))
        if cfg.isolate and (cfg.force or not cell_is_complete(cell)):
            outcome = run_isolated(cfg, launch, cell)
        else:  # reuse (nothing to isolate), or isolate=false for a debugger
            outcome = run_cell(cfg, launch)
    except ConfigError as exc:  # validated before the sweep: the store changed under it
        outcome = record_failure(cfg, launch, cell, str(exc))
    except KeyboardInterrupt:
        if multirun:
            try:
                write_json(job_dir / OUTCOME_FILE, {"cell": str(cell), "status": INTERRUPTED})
            except OSError:
                pass  # the table shows the job as killed instead
        raise
    except Exception as exc:  # a harness bug around the cell: record it, the sweep goes on
        log.exception("[%s] job error", label)
        outcome = record_failure(cfg, launch, cell, f"job error {type(exc).__name__}: {exc}")
    if multirun:
        _remember(job_dir, run.facts(), outcome)
        _record_and_progress(hc, job_dir, outcome, label)
    else:
        try:
            write_outcome(job_dir, outcome.cell, outcome.status)
        except OSError as exc:
            log.error("[%s] cannot write %s: %s", label, job_dir / OUTCOME_FILE,
                      os_reason(exc))
        print(f"{outcome.status}: {outcome.reason or '-'}\nresults: {outcome.cell}", flush=True)
        if outcome.status in FAILED_STATUSES:
            sys.exit(1)
    return outcome.status


# --- the command line -------------------------------------------------------------------------


#: config groups whose options take ``group.<key>=value`` overrides
_OPTION_GROUPS = ("algorithm", "data", "model")


def _defer_group_options(argv: list[str]) -> list[str]:
    """``-m algorithm=gn_sketch,gn_cg algorithm.tol=1e-4``: Hydra composes a multirun's base
    config with the sweeps left out, so it would apply ``algorithm.tol`` to the default
    algorithm (gn_gram, which has no ``tol``) and refuse the command. An option of a group
    that is swept is made a one-value sweep (``choice(1e-4)``), applied per job after the
    group is chosen, as the user meant."""
    if not any(a in ("-m", "--multirun") for a in argv):
        return argv
    swept = set()
    for a in argv:
        if a.startswith("-") or "=" not in a:
            continue
        try:
            (o,) = parse_overrides([a])
        except Exception:  # left to the pre-flight, which explains it
            continue
        if o.key_or_group in _OPTION_GROUPS and o.is_sweep_override():
            swept.add(o.key_or_group)
    out = []
    for a in argv:
        key, _, value = a.partition("=")
        group = key.split(".", 1)[0]
        plain = not (value.startswith(("choice(", "range(", "glob(", "[")) or "," in value)
        if group in swept and "." in key and not key.startswith(("+", "~")) and plain:
            a = f"{key}=choice({value})"
        out.append(a)
    return out


def _own_output_dir(argv: list[str]) -> list[str]:
    """A job directory no other command shares: Hydra names it to the second, so two sweeps
    started in the same second would share job directories (and print each other's tables).
    The pid and a random token make it unique; a directory the user names is kept."""
    import secrets

    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if any(a.split("=", 1)[0].lstrip("+") == key for a in argv):
        return argv
    kind = "sweeps" if multirun else "runs"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return [*argv, f"{key}=${{store}}/_hydra/{kind}/{stamp}_{os.getpid()}_"
                   f"{secrets.token_hex(3)}"]


def _signum(exc: BaseException) -> int:
    return int(getattr(exc, "signum", signal.SIGINT))


def _interrupted(state: SweepState, exc: BaseException) -> NoReturn:
    signum = _signum(exc)
    how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    print("\n" + interrupted_message(sys.argv[1:], PROG).replace("(Ctrl-C)", f"({how})", 1),
          file=sys.stderr, flush=True)
    state.report()
    sys.exit(128 + signum)


def _stopped(state: SweepState, exc: Exception) -> NoReturn:
    """Hydra or its launcher raised (a job directory it could not create, a worker that
    died): one line, the table of what the sweep has, exit 1; exit 2 when nothing started and
    the cause is the configuration."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        reason = f"cannot write{where}: {os_reason(exc)}"
    else:
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0] if text else ''}"
    if state.sweep_dir is None and isinstance(exc, HydraException | OmegaConfBaseException):
        fail(PROG, reason)
    print(f"{PROG}: the sweep stopped: {reason}; the cells that finished are kept, rerun the "
          "command to resume", file=sys.stderr, flush=True)
    state.report()
    sys.exit(1)


def require_multirun_for_presets(argv: list[str]) -> None:
    """``+sweep=NAME`` without ``-m``: Hydra would run one cell of the preset's settings and
    ignore its grid, which looks like a sweep that finished early. Refused with the fix."""
    if split_argv(argv) is None:
        return  # --help and friends only print
    if any(a in ("-m", "--multirun") or a.replace(" ", "") == "hydra.mode=MULTIRUN"
           for a in argv):
        return
    for arg in argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+") == "sweep":
            raise ConfigError(f"{arg} is a sweep preset and needs -m: "
                              f"{PROG} -m {' '.join(argv)}")


def validate_command(argv: list[str]) -> list[list[str]] | None:
    """Everything ``nlt-run argv`` would run, validated before the first job starts: every
    job of the sweep, or of every part of a suite. Returns the suite's parts (None: not a
    suite); raises a one-line ConfigError."""
    check_command_line(argv)
    require_multirun_for_presets(argv)
    parts = suite_parts(argv)
    for i, args in enumerate(parts if parts is not None else [argv], 1):
        split = split_argv(args)
        if split is None or split[1]:
            continue  # --help, --cfg …, or a custom config: Hydra's own handling
        try:
            if parts is not None:
                check_command_line(args)
            preflight(split[0])
        except ConfigError as exc:
            if parts is None:
                raise
            raise ConfigError(f"suite part {i}/{len(parts)} ({' '.join(args[1:])}): "
                              f"{exc}") from None
    return parts


def main() -> None:
    # Ctrl-C, kill -INT, kill -TERM or a hang-up stop a sweep cleanly (table, exit code 128 +
    # the signal) however nlt-run was started: a shell script's background job
    # (`nlt-run ... &`) inherits SIGINT ignored, and Python installs no handler for SIGTERM.
    # Every process the command starts is ended when it ends (isolation.become_owner).
    for sig in STOP_SIGNALS:
        signal.signal(sig, raise_interrupted)
    become_owner()
    # I/O faults are one line each: no "--- Logging error ---" traceback per log line when
    # a log file's disk is full, Hydra's job records may fail without ending the sweep, and
    # what Hydra would print as a traceback reaches _main (HYDRA_FULL_ERROR), which says it
    # in a line and prints the table
    logging.raiseExceptions = False
    os.environ["HYDRA_FULL_ERROR"] = "1"
    tolerate_unwritable_job_records(lambda path, exc: log.error(
        "cannot write %s: %s", path, os_reason(exc)))
    try:
        _main()
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        reap_descendants()


def _main() -> None:
    try:
        sys.argv[1:] = _defer_group_options(sys.argv[1:])
        if any(a in ("--help", "-h", "--hydra-help") for a in sys.argv[1:]):
            suite = suite_parts(sys.argv[1:])
            if suite is not None:  # a suite has no config of its own: list it, then the help
                flags = ("--help", "-h", "--hydra-help")
                print("This preset is a suite of sweeps:\n" + "\n".join(
                    "  nlt-run " + " ".join(a for a in part if a not in flags)
                    for part in suite) + "\n")
                sys.argv[1:] = [a for a in sys.argv[1:] if not a.startswith("+sweep=")]
            parts = None
        else:
            parts = guarded(PROG, lambda: validate_command(sys.argv[1:]))
        if parts is not None:
            sys.exit(run_suite(parts))
        if split_argv(sys.argv[1:]) is not None:
            sys.argv[1:] = _own_output_dir(sys.argv[1:])
            warn_if_busy(PROG)
        register_configs()
    except KeyboardInterrupt as exc:
        print(f"\n{PROG}: interrupted before the sweep started", file=sys.stderr)
        sys.exit(128 + _signum(exc))
    state = SweepState()
    _STATE.set(state)
    try:
        _app()
    except KeyboardInterrupt as exc:
        _interrupted(state, exc)
    except SystemExit as exc:
        # Hydra exits 1 when a launcher raises (joblib: a worker process was killed). Print
        # what the sweep has so far; rerunning the command resumes it.
        if state.sweep_dir is not None and not state.reported:
            print(f"{PROG}: the launcher stopped the sweep early (error above); "
                  "rerun the command to resume", file=sys.stderr, flush=True)
            state.report()
            sys.exit(exc.code if exc.code not in (0, None) else 1)
        raise
    except Exception as exc:  # what Hydra or a launcher raised (HYDRA_FULL_ERROR): one line
        _stopped(state, exc)
    if state.any_failed:
        sys.exit(1)


if __name__ == "__main__":
    # `python -m harness.execution.app`: run the importable module, not this __main__ copy
    # (Hydra instantiates harness.execution.app.SweepSummary from the config)
    from harness.execution.app import main as _main

    _main()
