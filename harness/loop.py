"""Driving an algorithm on a problem: what the runner, ``nlt-bench`` and the asv suite share:
the warm-up rule, one timed step, and the stopping rule.

``warm_up`` is the one warm-up rule of the harness: every method, wherever it is timed, first
runs untimed steps of a throw-away copy of itself on the problem, which is then put back to
its initial weights. First-call costs (thread pools, allocator growth, lazy library
initialisation, kernel-route calibration in ``harness.kernels``) are paid there, so that the
first timed step means what every other step means.
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from harness import kernels
from harness.timing import NullClock, Stopwatch


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
