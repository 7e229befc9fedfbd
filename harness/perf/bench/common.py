"""What every ``nlt-bench`` section shares: the problem sizes of the two modes, the problems,
and the two measurements of a method (time per outer iteration, time to relative loss 1e-6).
Both drive the method through ``harness.execution.loop`` — the warm-up rule, the timed setup
and the step loop of the runner — so a figure here means what a cell's figure means; a method
that is refused, runs out of memory or fails becomes a note, never a crash that hides the
other methods' numbers.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from algorithms.base import ALGORITHMS, Shape
from harness.common.device import memory_budget_bytes
from harness.common.timing import PhaseClock, best_time
from harness.execution.loop import Stopping, setup, steps, warm_up
from harness.execution.results import TARGET_REL_LOSS
from harness.model import make_generator, make_problem


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of every section (the issue's in full mode, tiny ones in quick mode)."""

    reference: tuple[int, int, int]  # (n, m, d) of roofline and per-iteration
    crossover_ns: tuple[int, ...]  # n at m = 16 n, d = crossover_d
    crossover_d: int
    exact: tuple[int, int, int]  # gn_sketch vs gn_exact
    to_target: tuple[int, int, int]  # time to 1e-6
    adam_lrs: tuple[float, ...]
    run_budget_s: float  # wall-time cap of one time-to-target run
    max_iters: int
    step_budget_s: float  # timed steps per method stop after this many seconds (at least 1)
    max_steps: int
    kernel_shapes: tuple[tuple[int, int, int], ...] = ()  # (n, m, k) of the route table
    gram_vs_plain: tuple[int, int, int] = (1024, 8192, 16)  # (n, m, d)
    fresh_jt: tuple[int, int, int] = (1024, 65536, 16)  # (n, m, d): Jᵀr on a fresh D


FULL = Sizes(reference=(4096, 65536, 16), crossover_ns=(256, 512, 1024, 2048, 4096),
             crossover_d=16, exact=(2048, 8192, 32), to_target=(1024, 16384, 16),
             adam_lrs=(1e-3, 1e-2, 1e-1), run_budget_s=120.0, max_iters=100_000,
             step_budget_s=10.0, max_steps=5,
             kernel_shapes=((1024, 8192, 16), (2048, 16384, 16), (4096, 65536, 16),
                            (4096, 65536, 64)),
             gram_vs_plain=(1024, 8192, 16), fresh_jt=(1024, 65536, 16))
QUICK = Sizes(reference=(128, 2048, 16), crossover_ns=(32, 64), crossover_d=16,
              exact=(32, 256, 8), to_target=(32, 512, 8), adam_lrs=(1e-1,),
              run_budget_s=0.5, max_iters=1000, step_budget_s=0.1, max_steps=2,
              kernel_shapes=((64, 1024, 16),), gram_vs_plain=(64, 1024, 8),
              fresh_jt=(64, 1024, 8))

DATASET = "synthetic"

#: Outer steps over which gn_sketch's adaptive refresh is amortised: a Gauss–Newton run to
#: 1e-6 takes 2–4 outer steps on the default problem (measured: 3 at n=1024, m=16384).
AMORTIZE_STEPS = 3


def amortised_steps(sizes: Sizes) -> int:
    """Timed steps of an amortised comparison: a run's length, or fewer at quick sizes."""
    return min(AMORTIZE_STEPS, sizes.max_steps + 1)


def problem_at(n: int, m: int, d: int, device, dtype, seed: int = 0):
    return make_problem(DATASET, n=n, d=d, m=m, seed=seed, device=device, dtype=dtype)


def copy_bandwidth(nbytes: int, device: torch.device, dtype=torch.float32) -> float:
    """Copy bandwidth B = 2·bytes / t (bytes/s), on a buffer of at least 64 MiB (out of cache)."""
    count = max(nbytes, 64 * 2**20) // torch.empty((), dtype=dtype).element_size()
    src = torch.ones(count, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    t = best_time(lambda: dst.copy_(src), device, repeats=7, budget_s=5.0)
    return 2 * src.numel() * src.element_size() / t


def xw_unit(problem, device) -> float:
    """Seconds of one ``X @ Wᵀ`` (the n×m pre-activations) at the problem's sizes."""
    X, W = problem.X, problem.W
    return best_time(lambda: X @ W.T, device)


def fmt(value: Any) -> str:
    """A figure as the tables print it: three significant digits, ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# --- methods -------------------------------------------------------------------------------


def registered(name: str) -> bool:
    return name in ALGORITHMS.names()


def with_params(cls, **overrides):
    """``cls.Params()`` with the overrides that the dataclass has (others are ignored)."""
    params = cls.Params()
    names = {f.name for f in dataclasses.fields(params)}
    return dataclasses.replace(params, **{k: v for k, v in overrides.items() if k in names})


def feasibility(cls, params, n: int, m: int, d: int, device, dtype) -> str | None:
    shape = Shape(n, m, d, torch.empty((), dtype=dtype).element_size())
    return cls.skip(params, shape, memory_budget_bytes(device, None))


def prepared(name: str, n: int, m: int, d: int, device, dtype, **overrides):
    """(algorithm, problem) ready for ``setup``, after the harness's warm-up rule
    (``harness.execution.loop.warm_up``: an untimed step of a throw-away copy); or
    ``{"note": why not}`` for a name that is not registered or a method that does not fit
    the memory budget."""
    if not registered(name):
        return {"note": "not registered"}
    cls = ALGORITHMS.get(name)
    params = with_params(cls, **overrides)
    reason = feasibility(cls, params, n, m, d, device, dtype)
    if reason:
        return {"note": f"skipped: {reason}"}
    problem = problem_at(n, m, d, device, dtype)
    warm_up(problem, lambda: cls(problem, params, make_generator(0, device)))
    return cls(problem, params, make_generator(0, device)), problem


def time_per_iteration(name: str, n: int, m: int, d: int, device, dtype, sizes: Sizes,
                       n_steps: int | None = None, **overrides) -> dict[str, Any]:
    """Seconds per outer step after ``setup`` and the harness's warm-up rule, two ways:
    ``seconds`` is the median step, ``amortised_s`` the mean over every timed step,
    refreshes included.

    ``n_steps`` fixes the number of timed steps (what an amortised comparison needs: a run to
    1e-6 takes that many); otherwise steps are timed until ``sizes.max_steps`` or
    ``sizes.step_budget_s``. Returns ``{"seconds", "amortised_s", "steps", "step_seconds",
    "inner_iters", "refreshed"}`` or ``{"note": why not}``.
    """
    try:
        ready = prepared(name, n, m, d, device, dtype, **overrides)
        if isinstance(ready, dict):
            return ready
        alg, problem = ready
        clock = PhaseClock(device)
        setup(alg, clock, device)
        times, inner, refreshed = [], [], []
        start = time.perf_counter()
        for step in steps(alg, problem, clock, device, n_steps or sizes.max_steps):
            times.append(step.seconds)
            inner.append(step.info.inner_iters)
            refreshed.append(step.info.extras.get("refreshed"))
            if n_steps is None and time.perf_counter() - start > sizes.step_budget_s:
                break
    except torch.OutOfMemoryError:
        return {"note": "out of memory"}
    except Exception as exc:  # one broken method must not hide the others' numbers
        return {"note": f"failed: {type(exc).__name__}: {exc}"}
    out = {"seconds": statistics.median(times), "amortised_s": statistics.fmean(times),
           "steps": len(times), "step_seconds": times, "inner_iters": inner}
    if any(r is not None for r in refreshed):
        out["refreshed"] = refreshed
    return out


def time_to_target(name: str, n: int, m: int, d: int, device, dtype, sizes: Sizes,
                   budget_s: float | None = None, **overrides) -> dict[str, Any]:
    """Seconds (setup + steps, loss evaluation excluded) until L_t / L_0 ≤ 1e-6.

    A run that stops on the wall-time budget (``budget_s``, default ``sizes.run_budget_s``)
    or the iteration cap reports ``converged: False`` and its time is a lower bound.
    """
    budget_s = sizes.run_budget_s if budget_s is None else budget_s
    try:
        ready = prepared(name, n, m, d, device, dtype, **overrides)
        if isinstance(ready, dict):
            return ready
        alg, problem = ready
        loss0 = problem.loss()
        clock = PhaseClock(device)
        total, rel, it, ended = setup(alg, clock, device).seconds, 1.0, 0, None
        # the budget counts timed seconds, setup included (what the ratio compares); the
        # wall cap covers the loss evaluations between steps
        stopping = Stopping(sizes.max_iters, TARGET_REL_LOSS, budget_s)
        wall0 = time.perf_counter()
        for step in steps(alg, problem, clock, device, sizes.max_iters):
            total += step.seconds
            it, rel = step.it, step.loss / loss0
            ended = stopping.verdict(it, step.loss, loss0, total)
            if ended is not None or time.perf_counter() - wall0 >= 3 * budget_s:
                break
    except torch.OutOfMemoryError:
        return {"note": "out of memory"}
    except Exception as exc:
        return {"note": f"failed: {type(exc).__name__}: {exc}"}
    out = {"seconds": total, "iterations": it, "rel_loss": rel,
           "converged": ended is not None and ended[0] == "converged"}
    if ended is not None and ended[0] == "diverged":
        out["note"] = "diverged"
    return out
