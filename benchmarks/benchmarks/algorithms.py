"""One outer step of each registered method (``algorithms``), its peak memory, and the
iteration counts that decide time to target: outer iterations to relative loss 1e-6 for the
Gauss–Newton family and the inner (CG) iterations of ``gn_sketch``."""

from __future__ import annotations

import dataclasses

from algorithms import ALGORITHMS
from algorithms.base import Shape
from harness.common.timing import NullClock

from .common import MEMORY_BUDGET, SIZES, D, check_size, generator, problem

try:  # older commits have no shared warm-up: their Step warms up by one step of its own
    from harness.execution.loop import warm_up
except ImportError:
    warm_up = None

try:  # the harness's one stopping rule and timed step (harness/execution/loop.py)
    from harness.execution.loop import Stopping, timed_step
except ImportError:
    # Older commits (before 3be0729) lack them, and asv runs this suite against those too.
    # Two stand-ins with the same calls, keeping the rule this suite had then: converged at
    # L_t <= target * L_0, else stopped at max_iters (no divergence test, no clock).

    @dataclasses.dataclass(frozen=True)
    class Stopping:  # type: ignore[no-redef]
        max_iters: int
        target_rel_loss: float

        def verdict(self, it, loss, loss0, timed_s):
            if loss <= self.target_rel_loss * loss0:
                return "converged", ""
            return ("max_iters", "") if it >= self.max_iters else None

    def timed_step(algorithm, clock, device):  # type: ignore[no-redef]
        return algorithm.step(clock), 0.0, 0.0

#: harness.execution.results.TARGET_REL_LOSS, written out: asv imports this suite against older
#: commits of the harness too (as the registry checks below assume), which lack that name.
TARGET_REL_LOSS = 1e-6
MAX_OUTER = 50  # a Gauss–Newton method needs a handful; more means it is broken


def _build(name: str, size, **overrides):
    """(problem, algorithm after setup), or NotImplementedError when the case is infeasible."""
    if name not in ALGORITHMS.names():
        raise NotImplementedError(f"method {name!r} not in this commit")
    cls = ALGORITHMS.get(name)
    n, m = check_size(size)
    params = cls.Params()
    known = {f.name for f in dataclasses.fields(params)}
    params = dataclasses.replace(params, **{k: v for k, v in overrides.items() if k in known})
    reason = cls.skip(params, Shape(n, m, D, 4), MEMORY_BUDGET)
    if reason:
        raise NotImplementedError(reason)
    prob = problem(size)
    if warm_up is not None:  # the harness's one warm-up rule (commits that have it)
        warm_up(prob, lambda: cls(prob, params, generator(0)))
    alg = cls(prob, params, generator(0))
    alg.setup(NullClock())
    return prob, alg


class Step:
    """Time and peak memory of one outer iteration (after the harness's warm-up and setup)."""

    params = [ALGORITHMS.names(), SIZES]
    param_names = ["method", "n_m"]
    number = 1
    repeat = (1, 5, 30.0)
    warmup_time = 0.0
    timeout = 600

    def setup(self, name, size):
        self.problem, self.alg = _build(name, size)
        if warm_up is None:
            self.alg.step(NullClock())

    def time_step(self, name, size):
        self.alg.step(NullClock())

    def peakmem_step(self, name, size):
        self.alg.step(NullClock())


def _run_to_target(prob, alg) -> tuple[int, list[int]]:
    """Outer iterations to L_t / L_0 ≤ 1e-6 under the harness's stopping rule (NaN-free:
    MAX_OUTER + 1 when the run stopped otherwise: at MAX_OUTER, or diverged), and the inner
    iterations of its steps."""
    stopping = Stopping(MAX_OUTER, TARGET_REL_LOSS)
    loss0 = prob.loss()
    inner, timed_s = [], 0.0
    for it in range(1, MAX_OUTER + 1):
        info, seconds, _ = timed_step(alg, NullClock(), prob.device)
        timed_s += seconds
        if info.inner_iters is not None:
            inner.append(int(info.inner_iters))
        ended = stopping.verdict(it, prob.loss(), loss0, timed_s)
        if ended is not None:
            return (it if ended[0] == "converged" else MAX_OUTER + 1), inner
    return MAX_OUTER + 1, inner


class OuterIterations:
    """Outer iterations to relative loss 1e-6, Gauss–Newton family (first-order methods need
    thousands; nlt-bench reports their time to target)."""

    params = [[n for n in ALGORITHMS.names() if ALGORITHMS.get(n).family == "gauss_newton"],
              SIZES[:2]]
    param_names = ["method", "n_m"]
    timeout = 600

    def setup(self, name, size):
        self.problem, self.alg = _build(name, size)

    def track_outer_iterations(self, name, size):
        return _run_to_target(self.problem, self.alg)[0]

    track_outer_iterations.unit = "iterations"


def _refresh_values() -> list[str]:
    if "gn_sketch" not in ALGORITHMS.names():
        return ["default"]
    fields = {f.name: f for f in dataclasses.fields(ALGORITHMS.get("gn_sketch").Params)}
    return ["always", "adaptive"] if "refresh" in fields else ["default"]


class SketchInnerIterations:
    """Mean inner CG iterations per outer step of gn_sketch on the way to 1e-6."""

    params = [_refresh_values(), SIZES[:2]]
    param_names = ["refresh", "n_m"]
    timeout = 600

    def setup(self, refresh, size):
        overrides = {} if refresh == "default" else {"refresh": refresh}
        self.problem, self.alg = _build("gn_sketch", size, **overrides)

    def track_inner_iterations(self, refresh, size):
        _, inner = _run_to_target(self.problem, self.alg)
        return sum(inner) / len(inner) if inner else 0.0

    track_inner_iterations.unit = "iterations"
