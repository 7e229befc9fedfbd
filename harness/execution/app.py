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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.common.errors import ConfigError, fail, guarded
from harness.common.io import write_json
from harness.execution.config import CONF_DIR, register_configs, resolve, store_path
from harness.execution.hydra_adapter import parse_overrides, split_argv, sweep_jobs
from harness.execution.isolation import record_failure, run_isolated
from harness.execution.preflight import preflight
from harness.execution.results import cell_is_complete, cell_name
from harness.execution.runner import run_cell
from harness.execution.suites import EXIT_INTERRUPTED, run_suite, suite_parts
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

    def report(self) -> None:
        """Print the one-screen table of the sweep's cells (once) and remember whether any
        failed."""
        if self.sweep_dir is None or self.reported:
            return
        self.reported = True
        rows = job_rows(self.sweep_dir)
        if not rows:
            return
        table = summary_table(rows)
        table.to_csv(self.sweep_dir / "summary.csv", index=False)
        print("\n" + format_table(table), flush=True)
        print(f"summary: {self.sweep_dir / 'summary.csv'}; results in {self.store}/",
              flush=True)
        self.any_failed = bool(table["status"].isin(FAILED_STATUSES).any())


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
        self.state.sweep_dir, self.state.store = sweep_dir, str(config.store)
        try:
            total = count_jobs(config)
        except Exception:  # a sweeper other than the basic one: no count, no harm
            total = None
        launcher = config.hydra.runtime.choices.get("hydra/launcher", "basic")
        write_json(sweep_dir / SWEEP_FILE, {
            "total_cells": total, "launcher": launcher,
            "overrides": list(config.hydra.overrides.task),
            "utc_start": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
        print(f"[sweep] {total if total is not None else '?'} cells, launcher {launcher}, "
              f"store {config.store}/, jobs in {sweep_dir}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self.state.report()


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
    with FileLock(str(sweep_dir / ".progress.lock")):
        write_outcome(job_dir, outcome.cell, outcome.status)
        done = len(list(sweep_dir.glob(f"*/{OUTCOME_FILE}")))
    status = outcome.status + (" (reused)" if outcome.reused else "")
    total = None
    try:
        total = json.loads((sweep_dir / SWEEP_FILE).read_text()).get("total_cells")
    except (OSError, ValueError):
        pass
    log.info("[sweep %d/%s cells done] %s: %s%s", done, total or "?", label, status,
             sweep_eta(sweep_dir, done, total))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode.name == "MULTIRUN"
    launch = launch_info(hc)
    try:
        run = resolve(cfg)
    except ConfigError as exc:
        fail(PROG, str(exc))
    cell = store_path(cfg) / cell_name(run.identity)
    label = run.label
    try:
        if multirun:
            write_json(job_dir / STARTED_FILE, {
                "cell": str(cell), **run.facts()})
        if cfg.isolate and (cfg.force or not cell_is_complete(cell)):
            outcome = run_isolated(cfg, launch, cell)
        else:  # reuse (nothing to isolate), or isolate=false for a debugger
            outcome = run_cell(cfg, launch)
    except ConfigError as exc:
        fail(PROG, str(exc))
    except KeyboardInterrupt:
        if multirun:
            write_json(job_dir / OUTCOME_FILE, {"cell": str(cell), "status": INTERRUPTED})
        raise
    except Exception as exc:  # a harness bug around the cell: record it, the sweep goes on
        log.exception("[%s] job error", label)
        outcome = record_failure(cfg, launch, cell, f"job error {type(exc).__name__}: {exc}")
    if multirun:
        _record_and_progress(hc, job_dir, outcome, label)
    else:
        write_outcome(job_dir, outcome.cell, outcome.status)
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


def _interrupted(state: SweepState) -> NoReturn:
    print("\n" + interrupted_message(sys.argv[1:], PROG), file=sys.stderr, flush=True)
    state.report()
    sys.exit(EXIT_INTERRUPTED)


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
    require_multirun_for_presets(argv)
    parts = suite_parts(argv)
    for i, args in enumerate(parts if parts is not None else [argv], 1):
        split = split_argv(args)
        if split is None or split[1]:
            continue  # --help, --cfg …, or a custom config: Hydra's own handling
        try:
            preflight(split[0])
        except ConfigError as exc:
            if parts is None:
                raise
            raise ConfigError(f"suite part {i}/{len(parts)} ({' '.join(args[1:])}): "
                              f"{exc}") from None
    return parts


def main() -> None:
    # Ctrl-C or kill -INT stops a sweep cleanly (table, exit code 130) however nlt-run was
    # started: a shell script's background job (`nlt-run ... &`) inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler of its own
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted before the sweep started", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    state = SweepState()
    _STATE.set(state)
    try:
        _app()
    except KeyboardInterrupt:
        _interrupted(state)
    except SystemExit as exc:
        # Hydra exits 1 when a launcher raises (joblib: a worker process was killed). Print
        # what the sweep has so far; rerunning the command resumes it.
        if state.sweep_dir is not None and not state.reported:
            print(f"{PROG}: the launcher stopped the sweep early (error above); "
                  "rerun the command to resume", file=sys.stderr, flush=True)
            state.report()
            sys.exit(exc.code if exc.code not in (0, None) else 1)
        raise
    if state.any_failed:
        sys.exit(1)


if __name__ == "__main__":
    # `python -m harness.execution.app`: run the importable module, not this __main__ copy
    # (Hydra instantiates harness.execution.app.SweepSummary from the config)
    from harness.execution.app import main as _main

    _main()
