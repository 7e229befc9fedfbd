"""The runner owns the clock, stopping and recording; algorithms only step.

One call of ``run_cell`` is one cell of a sweep: validate, reuse finished results, check
feasibility, build the problem, then loop ``step`` under a synchronised clock. Evaluation of
the loss, progress lines and recording happen outside the timed region. Whatever happens, the
cell ends with a ``run.json`` whose status is one of ``harness.execution.results.STATUSES``.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from harness import costmodel
from harness.common.device import device_name, format_bytes, memory_budget_bytes
from harness.common.errors import ConfigError
from harness.common.provenance import machine_facts, provenance
from harness.common.timing import PhaseClock
from harness.costmodel.comm import profile_link
from harness.execution import hygiene, sharded_cell
from harness.execution.config import ResolvedRun, preset_for, resolve, store_path
from harness.execution.loop import (
    Stopping,
    WallBudgetExceeded,
    setup,
    steps,
    wall_clock_limit,
    warm_up,
)
from harness.execution.migrate import SCHEMA_VERSION
from harness.execution.results import (
    DONE_STATUSES,
    attempt_dir,
    cell_is_complete,
    cell_lock,
    cell_name,
    config_hash,
    read_run,
    recover_cell,
    replace_cell,
    set_aside,
    writable_dir_problem,
    write_cell,
)
from harness.linalg import kernels
from harness.model import MODELS, Shape, make_generator, make_problem
from harness.model.data import dataset_memory_bytes
from harness.model.ntk import ntk_matrix

log = logging.getLogger("harness")



@dataclass
class Outcome:
    status: str
    reason: str
    cell: Path
    reused: bool = False


class InjectedFault(RuntimeError):
    """Raised by ``testing.fail_at_iter`` so the tests can exercise failure handling."""


def _apply_runtime_options(cfg: DictConfig, device: torch.device,
                           launch: dict[str, Any] | None = None) -> None:
    # threads=null: a parallel launcher's share of the cores (execution/app.py), else torch's
    threads = cfg.threads if cfg.threads is not None else (launch or {}).get("threads")
    if threads is not None:
        torch.set_num_threads(int(threads))
    kernels.configure(cfg.kernels)
    kernels.begin_cell()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
                "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    import resource

    return {"peak_memory_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            "peak_memory_kind": "process max RSS (one process per cell with isolate=true; "
                                "includes the interpreter and torch)"}


def _inject_fault(cfg: DictConfig, it: int) -> None:
    if cfg.testing.fail_at_iter is not None and it == cfg.testing.fail_at_iter:
        if cfg.testing.fail_mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected fault at iteration {it} (testing.fail_at_iter)")


def os_reason(exc: OSError) -> str:
    """An OS error in a few words, ``No space left on device (ENOSPC)``, also when a library
    (pyarrow) wraps it in a message of its own."""
    code = exc.errno
    if code is None:
        match = re.search(r"errno (\d+)", str(exc), re.IGNORECASE)
        code = int(match.group(1)) if match else None
    if code is None:
        return str(exc.strerror or exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"


def _duration(seconds: float) -> str:
    """12s, 3m05s, 2h10m: a progress line's time."""
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_cell(cfg: DictConfig, launch: dict[str, Any] | None = None) -> Outcome:
    """Run one configuration to completion and record it. Raises only ``ConfigError``.

    ``launch`` describes how the sweep runs the cell (launcher, parallel jobs, the thread count
    for ``threads=null``); it goes into run.json's provenance, not into the cell's hash.

    Deciding and writing happen under the cell's lock, so a cell is computed once however
    many sweeps hold it, and its two files always come from one writer. A ``force=true`` rerun
    of a done cell runs in a directory beside it and replaces it only when it finished; data
    without a record that accounts for it is moved aside, never overwritten.
    """
    run = resolve(cfg)
    cell = store_path(cfg) / cell_name(run.identity)
    try:
        lock = cell_lock(cell)
        lock.acquire()
    except OSError as exc:
        raise ConfigError(f"cannot write the cell directory {str(cell.parent)!r}: "
                          f"{os_reason(exc)}") from None
    try:
        recover_cell(cell)
        done = cell_is_complete(cell)
        if done and not cfg.force:
            prior = read_run(cell) or {}
            log.info("[%s] already done (%s); force=true reruns it", cell, prior.get("status"))
            return Outcome(prior.get("status", "?"), prior.get("reason", ""), cell, reused=True)
        if done:
            target = attempt_dir(cell)
        else:
            target = cell
            aside = set_aside(cell)
            if aside is not None:
                log.warning("[%s] files without a matching run.json moved to %s", cell, aside)
        problem = writable_dir_problem(target, "cell directory")
        if problem:
            raise ConfigError(problem)
        _apply_runtime_options(cfg, run.device, launch)
        outcome = _Run(run, target, launch, home=cell).execute()
        if target == cell:
            return outcome
        if outcome.status in DONE_STATUSES:
            replace_cell(target, cell)
            return Outcome(outcome.status, outcome.reason, cell)
        reason = (f"{outcome.reason}; force rerun {outcome.status}, the earlier result in "
                  f"{cell} is kept")
        log.warning("[%s] %s", cell, reason)
        return Outcome(outcome.status, reason, target)
    finally:
        lock.release()


def memory_plan(run: ResolvedRun, shape: Shape, budget_gb: float | None) -> dict[str, Any]:
    """Planned peak memory of a cell, on the host and on its device, against the budgets.

    The device holds what the method plans (``memory_bytes``); the host also builds the data
    in float64 first (``dataset_memory_bytes``: X, the teacher's n × width activations), and
    on a CPU run holds the method's memory too. ``reason`` says why not to run, else None."""
    r_bytes = run.algorithm.memory_bytes(run.params, shape)
    data = dataset_memory_bytes(run.dataset, run.n, run.d, run.data_params)
    host = data + (r_bytes if run.device.type == "cpu" else 0)
    budget = memory_budget_bytes(run.device, budget_gb)
    host_budget = budget if run.device.type == "cpu" else \
        memory_budget_bytes(torch.device("cpu"), budget_gb)
    plan = {"estimated_memory_bytes": host if run.device.type == "cpu" else r_bytes,
            "estimated_host_memory_bytes": host, "estimated_data_memory_bytes": data,
            "memory_budget_bytes": budget, "reason": None}
    reason = run.algorithm.skip(run.params, shape, budget)
    if reason is None and host > host_budget:
        reason = (f"{run.algorithm.name} needs about {format_bytes(host)} ({host} bytes) of host "
                  f"memory at n={run.n}, m={run.m}, d={run.d} ({format_bytes(data)} to build "
                  f"the {run.dataset} data), above the memory budget of "
                  f"{format_bytes(host_budget)}")
    plan["reason"] = reason
    return plan


def run_record(run: ResolvedRun, status: str, reason: str, home: Path, prov: dict[str, Any],
               rows: list[dict[str, Any]] = (), info: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """The run.json of a cell: its status and reason, its coordinates and identity, what its
    rows say (losses, iterations, time), ``info`` (plans, setup and warm-up times, …), the
    resolved configuration and the provenance. The one place a record is built: a cell
    that ends (``_Run``) and a cell whose process died (``isolation.record_failure``)."""
    losses = [row["loss"] for row in rows]
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "reason": reason,
        "label": run.label,
        "cell": str(home),
        "config_hash": config_hash(run.identity),
        **run.facts(),
        # the named configuration these parameters are (gn_sketch_paper, ...), if any
        "preset": preset_for(run.algorithm.name, run.identity["algorithm"]),
        "device": run.device.type, "dtype": str(run.cfg.dtype),
        "initial_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "final_rel_loss": rows[-1]["rel_loss"] if rows else None,
        "iterations": len(rows) - 1 if rows else 0,
        "rows": len(rows),
        "total_time_s": rows[-1]["time_s"] if rows else None,
        **(info or {}),
        "config": OmegaConf.to_container(run.cfg, resolve=True),
        "identity": run.identity,
        "provenance": prov,
    }


class _Run:
    def __init__(self, run: ResolvedRun, cell: Path, launch: dict[str, Any] | None = None,
                 home: Path | None = None):
        # cell: where the files are written; home: the cell's place in the store (a rerun
        # writes beside it and is moved there when it finished)
        self.run, self.cell, self.cfg = run, cell, run.cfg
        self.home = home or cell
        self.rows: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        self.label = run.label
        self.threads = torch.get_num_threads()
        self.prov = provenance(device_name(run.device), self.threads)
        self.prov["launch"] = dict(launch or {"launcher": "none (called directly)"})
        self.prov.update(machine_facts(run.device))
        self.record_ntk = bool(OmegaConf.select(self.cfg, "record.ntk", default=False))

    # --- recording ---------------------------------------------------------------------------

    def _row(self, it: int, loss: float, loss0: float, step: float, total: float,
             inner, phases: dict[str, float], extras: dict[str, Any]) -> dict[str, Any]:
        r = self.run
        row = {**r.facts(), "device": r.device.type, "dtype": str(r.cfg.dtype),
               "threads": self.threads, "git_commit": self.prov["git_commit"], "iter": it,
               "loss": loss, "rel_loss": loss / loss0 if loss0 > 0 else 0.0,
               "step_time_s": step, "time_s": total, "inner_iters": inner,
               "kernel_routes": kernels.routes_text(),
               "cpu_capability": self.prov["cpu_capability"]}
        row.update({f"t_{k}": v for k, v in phases.items()})
        for key, value in extras.items():
            if key in row:
                raise ValueError(f"StepInfo extra {key!r} collides with a result column")
            row[key] = value
        return row

    def _measure_quality(self) -> None:
        """Outside the clock, when the cell ends: the machine's state against the start
        (``hygiene``: ``disturbed`` and its figures, into run.json and every row) and the
        spread of the step times (``step_time_iqr_s``, the interquartile range over steps)."""
        times = [row["step_time_s"] for row in self.rows[1:]]
        if times:
            q1, q3 = torch.tensor(times, dtype=torch.float64).quantile(
                torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
            self.info["step_time_iqr_s"] = q3 - q1
        start = getattr(self, "_hygiene_start", None)
        if start is None:  # skipped before it ran, or NLT_HYGIENE=0: not measured
            return
        fields = hygiene.assess(start, hygiene.snapshot(), self.threads)
        self.info.update(fields)
        for row in self.rows:
            row.update(fields)
        if fields["disturbed"]:
            log.warning("[%s] disturbed: %s", self.label, fields["disturbed_reason"])

    def _finish(self, status: str, reason: str = "") -> Outcome:
        self._measure_quality()
        run = run_record(self.run, status, reason, self.home, self.prov, self.rows, self.info)
        run["kernels"] = kernels.report()
        run.update(_peak_memory(self.run.device))
        if hasattr(self, "_wall_start"):
            run["wall_time_s"] = time.perf_counter() - self._wall_start
        try:
            write_cell(self.cell, self.rows, run)
        except OSError as exc:  # a full disk, a read-only store, a directory gone: one line
            log.error("[%s] %s, but its result could not be written to %s: %s", self.label,
                      status, self.cell, os_reason(exc))
            return Outcome("failed", f"{os_reason(exc)}: could not write {self.cell} "
                                     f"(the run ended {status})", self.home)
        log.info("[%s] %s%s -> %s", self.label, status, f" ({reason})" if reason else "",
                 self.cell)
        return Outcome(status, reason, self.cell)

    # --- opt-in diagnostics (record.ntk): outside the clock -------------------------------------

    def _ntk_once(self, problem) -> None:
        """Spec C5 at initialisation, in float64: λ = λ_min(H∞) and ‖G_0 − H∞‖₂ (G_0 at W_0)."""
        H = ntk_matrix(problem.X.double())
        G0 = problem.linearize(problem.params0).jacobian.gram().double()
        lam_H = torch.linalg.eigvalsh(H)
        self._ntk_lambda = float(lam_H[0])
        gap = float(torch.linalg.eigvalsh(G0 - H).abs().max())
        self.info.update(ntk_lambda=self._ntk_lambda, ntk_gram_gap=gap,
                         ntk_gram_gap_rel=gap / float(lam_H[-1]))

    def _ntk_columns(self, problem) -> dict[str, float]:
        """λ_min(G_t)/λ (the theory needs ≥ ½ along training) and ‖W_t − W_0‖_F."""
        if not self.record_ntk:
            return {}
        G = problem.linearize().jacobian.gram().double()
        lam_min = float(torch.linalg.eigvalsh(G)[0])
        ratio = lam_min / self._ntk_lambda if self._ntk_lambda > 0 else math.nan
        return {"ntk_lambda_min_ratio": ratio,
                "ntk_weight_change": float(torch.linalg.norm(
                    (problem.params - problem.params0).double()))}

    # --- the loop ----------------------------------------------------------------------------

    def _warm_up(self, problem, clock: PhaseClock) -> float:
        """``warmup_steps`` untimed steps of a throw-away copy (harness.execution.loop.warm_up)."""
        steps = int(self.cfg.warmup_steps)
        self.info["warmup_steps"] = steps
        r = self.run
        return warm_up(problem, lambda: r.algorithm(
            problem, r.params, make_generator(r.seeds["algorithm"], r.device)), steps, clock)

    def execute(self) -> Outcome:
        r, cfg = self.run, self.cfg
        shape = Shape.of(r.model, r.n, r.m, r.d, torch.empty((), dtype=r.dtype).element_size(),
                         r.depth)
        shape = sharded_cell.rank_shape(shape, cfg)  # distributed: one rank's share
        plan = memory_plan(r, shape, cfg.memory_budget_gb)
        sharded_cell.plan_ranks(plan, r, shape, cfg)
        reason = plan.pop("reason")
        reason = sharded_cell.unshardable_cell(cfg, r) or reason
        self.info.update(plan)
        if reason:
            return self._finish("skipped", reason)
        reason = self._predicted_too_slow()
        if reason:
            return self._finish("skipped", reason)
        # outside the clock and the wall budget
        self._hygiene_start = hygiene.snapshot() if hygiene.enabled() else None
        self._wall_start = time.perf_counter()
        try:
            if sharded_cell.active(cfg):  # on P ranks, which keep the wall-clock budget
                return self._sharded()
            with wall_clock_limit(self._wall_budget()):
                return self._loop()
        except WallBudgetExceeded as exc:  # the steps so far are kept
            return self._finish("time_budget", str(exc))
        except ConfigError:
            raise
        except torch.OutOfMemoryError:
            return self._finish("failed", "oom")
        except Exception as exc:  # recorded, never lost: the sweep goes on
            log.exception("[%s] failed", self.label)
            return self._finish("failed", f"{type(exc).__name__}: {exc}")

    def _wall_budget(self) -> float | None:
        """The cell's wall-clock cap: wall_budget_s, or 3 × time_budget_s + 60 s."""
        cfg = self.cfg
        if cfg.wall_budget_s is not None:
            return float(cfg.wall_budget_s)
        if cfg.time_budget_s is not None:
            return 3.0 * float(cfg.time_budget_s) + 60.0
        return None

    def _predicted_step(self) -> tuple[float, Any] | None:
        """(seconds of one outer iteration, the profile) as the cost model predicts them with
        this machine's profile (``cost_profile``); None without a profile or a cost model."""
        cfg, r = self.cfg, self.run
        if not cfg.cost_profile or MODELS.get(r.model).op_costs is None:
            return None  # a model without a cost model
        profile = costmodel.machine_profile(cfg.cost_profile, r.device)
        if profile is None:
            return None
        try:
            params = {k: v for k, v in r.identity["algorithm"].items() if k != "name"}
            world = sharded_cell.world_size(cfg)
            link = profile_link(profile) if world > 1 else None
            if world > 1 and link is None:  # a profile without a link: one rank unpriced
                return None
            step = costmodel.predict(r.algorithm.name, params, r.n, r.m, r.d, profile,
                                     dtype=str(cfg.dtype), depth=int(r.depth),
                                     model=r.model, world=world, link=link)["total"]
        except ConfigError:  # a method the model does not cover
            return None
        return step, profile

    def _predicted_too_slow(self) -> str | None:
        """With a time budget and a cost-model profile of this machine (``cost_profile``):
        a reason to skip a cell whose one outer iteration is predicted to take longer than
        the whole budget (it could not give more than a lower bound); else None. The
        prediction also gives the progress lines their ETA."""
        cfg = self.cfg
        predicted = self._predicted_step()
        if predicted is None:
            return None
        step, profile = predicted
        self.info["predicted_step_time_s"] = step
        if cfg.time_budget_s is None or step <= cfg.time_budget_s:
            return None
        return (f"the cost model predicts {step:.3g} s per outer iteration "
                f"({profile.data.get('device_name')}, calibrated "
                f"{str(profile.data.get('date'))[:10]}), above time_budget_s="
                f"{cfg.time_budget_s:g}")

    def _sharded(self) -> Outcome:
        """The cell on its ranks (harness.execution.sharded_cell): rank 0's rows and status,
        or the reason of the first rank that failed."""
        status, reason, self.rows, info = sharded_cell.run_ranks(
            OmegaConf.to_container(self.cfg, resolve=True), self.prov["launch"])
        self.info.update(info)
        self.threads = sharded_cell.cell_threads(self.cfg)  # every rank's, for hygiene
        return self._finish(status, reason)

    def _make_problem(self):
        r = self.run
        return make_problem(r.dataset, r.n, r.d, r.m, r.seed, data_seed=r.seeds["data"],
                            init_seed=r.seeds["init"], device=r.device, dtype=r.dtype,
                            model=r.model, depth=r.depth, **r.data_params)

    def _clock(self) -> PhaseClock:
        return PhaseClock(self.run.device)

    def _eta(self, it: int, timed_s: float) -> str:
        """The progress line's ETA: the longest the cell can still run (to max_iters, or its
        time budget), at the cost model's step time where this machine has a profile, else
        at the mean step so far. The run ends sooner when it reaches its target loss."""
        cfg = self.cfg
        step = self.info.get("predicted_step_time_s")
        source = "cost model"
        if step is None:
            step, source = timed_s / max(it, 1), "steps so far"
        left = (cfg.max_iters - it) * step
        if cfg.time_budget_s is not None:
            left = min(left, max(cfg.time_budget_s - self.info["setup_time_s"] - timed_s, 0.0))
        return f"ETA <= {_duration(left)} ({source})"

    def _loop(self) -> Outcome:
        r, cfg = self.run, self.cfg
        problem = self._make_problem()
        clock = self._clock()
        log.info("[%s] data ready; warm-up (%d untimed step(s)) ...", self.label,
                 int(cfg.warmup_steps))
        warm_s = self._warm_up(problem, clock)
        algorithm = r.algorithm(problem, r.params,
                                make_generator(r.seeds["algorithm"], r.device))
        log.info("[%s] warm-up done in %.2fs; setup ...", self.label, warm_s)
        done = setup(algorithm, clock, r.device)
        self.info["warmup_time_s"] = warm_s + done.warmup_s
        self.info["setup_time_s"] = done.seconds
        self.info["setup_phases_s"] = done.phases
        self.info["calibration_in_steps_s"] = 0.0
        log.info("[%s] setup done in %.2fs", self.label, self.info["setup_time_s"])

        loss0 = problem.loss()
        self.info["initial_loss"] = loss0
        if self.record_ntk:
            self._ntk_once(problem)
        self.rows.append(self._row(0, loss0, loss0, 0.0, 0.0, None, {},
                                   self._ntk_columns(problem)))
        if not math.isfinite(loss0):
            return self._finish("diverged", f"initial loss is {loss0}")
        total, last_print = 0.0, time.perf_counter()
        stopping = Stopping(cfg.max_iters, cfg.target_rel_loss, cfg.time_budget_s)

        def before_step(it: int) -> None:
            _inject_fault(cfg, it)
            if cfg.testing.slow_step_s:
                time.sleep(cfg.testing.slow_step_s)

        for step in steps(algorithm, problem, clock, r.device, cfg.max_iters, before_step):
            if step.calibration_s:  # a shape met for the first time calibrated inside the step
                self.info["calibration_in_steps_s"] += step.calibration_s
                self.info["warmup_time_s"] += step.calibration_s
            total += step.seconds
            it, loss = step.it, step.loss
            self.rows.append(self._row(it, loss, loss0, step.seconds, total,
                                       step.info.inner_iters, step.phases,
                                       {**step.info.extras, **self._ntk_columns(problem)}))
            now = time.perf_counter()
            if now - last_print >= cfg.progress_interval_s:
                last_print = now
                log.info("[%s] iter %d/%d  loss %.3e  rel %.3e  step time %.2fs  %s",
                         self.label, it, cfg.max_iters, loss, loss / loss0 if loss0 > 0 else 0.0,
                         total, self._eta(it, total))
            # the time budget covers the method's setup as well as its steps
            ended = stopping.verdict(it, loss, loss0, self.info["setup_time_s"] + total)
            if ended:
                return self._finish(*ended)
        return self._finish("max_iters", f"{cfg.max_iters} iterations")
