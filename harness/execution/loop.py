"""Driving an algorithm on a problem: the one loop the runner, the calibration's step ladder,
``nlt-bench`` and the asv suite share — the warm-up rule, the timed setup, the steps (each on a
synchronised clock, the loss evaluated after it outside the clock), and the stopping rule.

``warm_up`` is the one warm-up rule of the harness: every method, wherever it is timed, first
runs untimed steps of a throw-away copy of itself on the problem, which is then put back to
its initial weights. First-call costs (thread pools, allocator growth, lazy library
initialisation, kernel-route calibration in ``harness.linalg.kernels``) are paid there, so that the
first timed step means what every other step means.
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from harness.common.timing import NullClock, Stopwatch
from harness.linalg import kernels


def warm_up(problem, make_algorithm: Callable[[], Any], steps: int = 1, clock=None) -> float:
    """Run ``steps`` untimed steps of ``make_algorithm()`` (setup included) on ``problem``,
    then restore the parameters to their initial values and drop the copy. Returns the
    seconds it took (0 for no steps)."""
    if steps <= 0:
        return 0.0
    clock = clock if clock is not None else NullClock()
    with Stopwatch(problem.device) as sw:
        warm = make_algorithm()
        warm.setup(clock)
        for _ in range(steps):
            warm.step(clock)
        del warm
        with torch.no_grad():
            problem.params.copy_(problem.params0)
        problem.params.grad = None
        gc.collect()
    clock.pop()
    return sw.seconds


#: A run diverges when its loss is not finite or exceeds this multiple of the initial loss.
DIVERGENCE_FACTOR = 1e4


@dataclass(frozen=True)
class Stopping:
    """When a run ends, the same for the runner and ``nlt-bench``: diverged, converged
    (L_t/L_0 ≤ target), over its time budget (timed seconds: setup and steps), or at
    max_iters."""

    max_iters: int
    target_rel_loss: float
    time_budget_s: float | None = None
    divergence_factor: float = DIVERGENCE_FACTOR

    def verdict(self, it: int, loss: float, loss0: float,
                timed_s: float) -> tuple[str, str] | None:
        """(status, reason) once iteration ``it`` ends the run, else None."""
        rel = loss / loss0 if loss0 > 0 else 0.0
        if not math.isfinite(loss) or loss > self.divergence_factor * loss0:
            return "diverged", f"loss {loss:.3e} at iteration {it} (initial {loss0:.3e})"
        if rel <= self.target_rel_loss:
            return "converged", (f"rel_loss {rel:.3e} <= {self.target_rel_loss:g} at "
                                 f"iteration {it}")
        if self.time_budget_s is not None and timed_s >= self.time_budget_s:
            return "time_budget", (f"{timed_s:.1f}s timed (setup and steps) >= "
                                   f"{self.time_budget_s:g}s")
        if it >= self.max_iters:
            return "max_iters", f"rel_loss {rel:.3e} after {self.max_iters} iterations"
        return None


#: The setup phase that is recorded as ``warmup_time_s`` instead of ``setup_time_s``.
WARMUP_PHASE = "warmup"


@dataclass(frozen=True)
class Setup:
    """A timed ``setup``: the method's own seconds (process start-up of a library and
    kernel-route calibration left out), its phases, and the seconds left out."""

    seconds: float
    phases: dict[str, float]
    warmup_s: float


def setup(algorithm, clock, device: torch.device) -> Setup:
    """``algorithm.setup`` under a synchronised clock. A ``warmup`` phase (a library's first
    call) and the calibration of a kernel route are choosing how to compute or starting the
    process, not the method's cost on this problem: both are recorded apart (``warmup_s``)
    and left out of ``seconds``."""
    cal0 = kernels.calibration_seconds()
    with Stopwatch(device) as sw:
        algorithm.setup(clock)
    phases = clock.pop()
    cal = kernels.calibration_seconds() - cal0
    left_out = phases.get(WARMUP_PHASE, 0.0) + cal
    return Setup(sw.seconds - left_out, phases, left_out)


@dataclass(frozen=True)
class Step:
    """One outer step as the loop measured it: its StepInfo, its synchronised seconds (route
    calibration inside it left out, and counted in ``calibration_s``), its phases, and the
    loss evaluated after it outside the clock."""

    it: int
    info: Any
    seconds: float
    calibration_s: float
    phases: dict[str, float]
    loss: float


def steps(algorithm, problem, clock, device: torch.device, max_steps: int,
          before_step: Callable[[int], None] | None = None) -> Iterator[Step]:
    """The timing loop: steps 1..``max_steps`` of ``algorithm``, each timed under a
    synchronised clock (``timed_step``), then the loss evaluated outside it. The caller stops
    early by leaving the loop (a ``Stopping`` verdict, a budget); ``before_step(it)`` runs
    untimed before each step (the runner's fault injection)."""
    for it in range(1, max_steps + 1):
        if before_step is not None:
            before_step(it)
        info, seconds, cal = timed_step(algorithm, clock, device)
        phases = clock.pop()
        yield Step(it, info, seconds, cal, phases, problem.loss())


def timed_step(algorithm, clock, device: torch.device) -> tuple[Any, float, float]:
    """One outer step under a synchronised clock: (its StepInfo, its seconds, the seconds of
    kernel-route calibration that happened inside it and are not in its seconds)."""
    cal0 = kernels.calibration_seconds()
    with Stopwatch(device) as sw:
        info = algorithm.step(clock)
    cal = kernels.calibration_seconds() - cal0
    return info, sw.seconds - cal, cal


class WallBudgetExceeded(Exception):
    """Raised in the main thread when a cell passes its wall-clock budget."""


@contextlib.contextmanager
def wall_clock_limit(seconds: float | None):
    """Raise ``WallBudgetExceeded`` in this (main) thread once ``seconds`` of wall time have
    passed. A torch operation running then finishes first: the exception comes at the next
    Python operation. No limit for None, off the main thread, or without SIGALRM (Windows)."""
    if (seconds is None or threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer")):
        yield
        return

    def expire(signum, frame):
        raise WallBudgetExceeded(f"wall-clock budget of {seconds:g}s exceeded (setup, "
                                 f"warm-up, steps and evaluation; wall_budget_s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
