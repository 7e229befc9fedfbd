r"""``nlt-bench``: every method and kernel side by side, in one process and one run.

Sections (each a table of ratios, all written to ``--json PATH``):

* **roofline**: one CG product G·p = J(Jᵀp) = rowsum(X ⊙ D (Dᵀ (p ⊙ X))) / m against

  - the memory floor t_floor = (bytes G·p must read) / B, with B the copy bandwidth measured
    in the same run (STREAM convention: B = 2·bytes / t_copy, a copy reads and writes); the
    bytes are those of D read twice as float32 (the issue's reference floor), and
  - two plain products Aᵀ Y, A Z with a dense n×m float32 A: what a GEMM library does with
    the same shapes;

* **kernels**: every route of every multi-route product of ``harness.linalg.kernels`` (D Dᵀ, D Z,
  Dᵀ Y) timed side by side at standard sizes, with the route ``kernels=auto`` chose and its
  slowdown against the fastest; and ``gn_gram``'s step against the same step written by hand
  in plain torch float32 (forward, ``D @ D.T``, Cholesky, update);
* **per-iteration**: each registered method's time per outer iteration in units of one
  ``X @ Wᵀ`` product at the same sizes (the pre-activations Z; spec §2's cost unit, measured
  here, so the figure is machine-independent);
* **crossover**: ``gn_sketch`` against ``gn_gram`` per iteration over n at m = 16n, d = 16, and
  the smallest n where the sketch is faster;
* **practice**: ``gn_sketch`` against ``gn_exact`` per iteration at n=2048, m=8192, d=32, and
  time to relative loss 1e-6 (setup included) of the best Gauss–Newton-family method against
  ``gd`` (``lr=auto``) and ``adam`` (best of a small lr grid) at n=1024, m=16384, d=16.

Methods and sketches not registered (yet), or refused by their feasibility check, appear in
the table with a note instead of a number.

    nlt-bench                       # the issue's sizes; tens of minutes on 2 CPU cores
    nlt-bench --quick --json b.json # small sizes, seconds (what the tests run)
    nlt-bench --calibrate           # cost-model profile of this machine (harness.costmodel)
    nlt-bench --predict PROFILE     # per-iteration predictions and frontier from a profile
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from algorithms.base import ALGORITHMS, Shape
from harness import costmodel
from harness.common.device import (
    device_name,
    memory_budget_bytes,
    resolve_device,
    resolve_dtype,
)
from harness.common.errors import ConfigError, fail, guarded
from harness.common.io import write_json
from harness.common.provenance import cpu_facts, git_commit
from harness.common.timing import PhaseClock, Stopwatch, best_time
from harness.execution.config import algorithm_preset
from harness.execution.loop import Stopping, setup, steps, warm_up
from harness.execution.results import TARGET_REL_LOSS
from harness.linalg import kernels
from harness.model import make_generator, make_problem
from harness.perf.calibrate import run_calibration

PROG = "nlt-bench"



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


# --- timing primitives ---------------------------------------------------------------------


def copy_bandwidth(nbytes: int, device: torch.device, dtype=torch.float32) -> float:
    """Copy bandwidth B = 2·bytes / t (bytes/s), on a buffer of at least 64 MiB (out of cache)."""
    count = max(nbytes, 64 * 2**20) // torch.empty((), dtype=dtype).element_size()
    src = torch.ones(count, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    t = best_time(lambda: dst.copy_(src), device, repeats=7, budget_s=5.0)
    return 2 * src.numel() * src.element_size() / t


def problem_at(n: int, m: int, d: int, device, dtype, seed: int = 0):
    return make_problem(DATASET, n=n, d=d, m=m, seed=seed, device=device, dtype=dtype)


def xw_unit(problem, device) -> float:
    """Seconds of one ``X @ Wᵀ`` (the n×m pre-activations) at the problem's sizes."""
    X, W = problem.X, problem.W
    return best_time(lambda: X @ W.T, device)


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
    """(algorithm, problem) ready for ``setup`` after the harness's warm-up rule
    (``harness.execution.loop.warm_up``: an untimed step of a throw-away copy), or ``{"note": why
    not}``
    for a method that is not registered or does not fit the memory budget."""
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
                       steps_: int | None = None, **overrides) -> dict[str, Any]:
    """Seconds per outer step after ``setup`` and the harness's warm-up rule (one
    untimed
    step of a throw-away copy, ``harness.execution.loop.warm_up``), two ways: ``seconds`` is the median
    step, ``amortised_s`` the mean over every timed step, refreshes included.

    ``steps_`` fixes the number of timed steps (what an amortised comparison needs: a run to
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
        for step in steps(alg, problem, clock, device, steps_ or sizes.max_steps):
            times.append(step.seconds)
            inner.append(step.info.inner_iters)
            refreshed.append(step.info.extras.get("refreshed"))
            if steps_ is None and time.perf_counter() - start > sizes.step_budget_s:
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


# --- sections ------------------------------------------------------------------------------


def roofline(sizes: Sizes, device, dtype) -> dict[str, Any]:
    n, m, d = sizes.reference
    problem = problem_at(n, m, d, device, dtype)
    lin = problem.linearize()
    G = lin.gram_operator()
    p = torch.randn(n, generator=make_generator(1), dtype=torch.float64).to(device, dtype)
    t_gp = best_time(lambda: G @ p, device)
    bandwidth = copy_bandwidth(n * m * 4, device)
    floor_fp32 = 2 * n * m * 4 / bandwidth  # the reference: fp32 D read twice
    D = lin.jacobian.D
    # the pattern as the chosen route reads it: the int8 copy if G·p took the integer route
    stored = lin.jacobian.pattern.int8 if lin.jacobian.pattern._int8 is not None else D
    floor_stored = 2 * stored.numel() * stored.element_size() / bandwidth
    A = torch.rand(n, m, generator=make_generator(2), dtype=torch.float64).to(device, dtype)
    Y = torch.randn(n, d, dtype=dtype, device=device)
    Z = torch.randn(m, d, dtype=dtype, device=device)
    t_two = best_time(lambda: (A.T @ Y, A @ Z), device)
    return {"n": n, "m": m, "d": d, "gp_s": t_gp, "copy_bandwidth_GBps": bandwidth / 1e9,
            "floor_fp32_s": floor_fp32, "floor_stored_s": floor_stored,
            "pattern_dtype": str(stored.dtype).replace("torch.", ""),
            "two_matmuls_s": t_two, "gp_over_floor": t_gp / floor_fp32,
            "gp_over_two_matmuls": t_gp / t_two}


def kernel_routes(sizes: Sizes, device, dtype) -> dict[str, Any]:
    """Every route of every multi-route product, timed here, beside the one ``auto`` chose.

    The route times are this section's own (best of 5 after a warm-up); the choice is the
    selector's, from its own calibration in this process, so the ratio chosen/fastest also
    checks that the calibration picks well.
    """
    kernels.configure("auto")
    gen = make_generator(4, device)
    rows = []
    for n, m, k in sizes.kernel_shapes:
        D = (torch.rand(n, m, generator=gen, device=device) > 0.5).to(dtype)
        operands = {"pattern_gram": (), "pattern_mm": (torch.randn(m, k, generator=gen,
                                                                   device=device, dtype=dtype),),
                    "pattern_rmm": (torch.randn(n, k, generator=gen, device=device,
                                                dtype=dtype),)}
        for name, product in kernels.PRODUCTS.items():
            ops = operands[name]
            P = kernels.Pattern(D)
            chosen = kernels.selector().choose(product, P, *ops)
            times, notes = {}, {}
            for route_name, route in product.routes.items():
                why = route.unavailable(P, *ops)
                if why:
                    notes[route_name] = why
                    continue
                call = (partial(kernels._fresh_cast, route.run, P, *ops)
                        if product.cast_per_call else partial(route.run, P, *ops))
                times[route_name] = best_time(call, device)
            row = {"product": name, "formula": product.formula, "n": n, "m": m,
                   "k": k if ops else None, "times_s": times, "unavailable": notes,
                   "chosen": chosen}
            if times:
                fastest = min(times, key=times.get)
                row["fastest"] = fastest
                row["chosen_over_fastest"] = times.get(chosen, math.nan) / times[fastest]
            rows.append(row)
        del D
    n, m, d = sizes.gram_vs_plain
    harness_step = time_per_iteration("gn_gram", n, m, d, device, dtype, sizes)
    plain_step = plain_gram_step_time(n, m, d, device, dtype)
    out = {"rows": rows, "routes": kernels.routes_used(), "cpu": cpu_facts(),
           "gram_vs_plain": {"n": n, "m": m, "d": d, "gn_gram": harness_step,
                             "plain_s": plain_step}}
    if "seconds" in harness_step:
        out["gram_vs_plain"]["gn_gram_over_plain"] = harness_step["seconds"] / plain_step
    worst = [r["chosen_over_fastest"] for r in rows if "chosen_over_fastest" in r]
    out["worst_chosen_over_fastest"] = max(worst) if worst else None
    out["fresh_jt"] = fresh_jt_times(*sizes.fresh_jt, device, dtype)
    return out


def fresh_jt_times(n: int, m: int, d: int, device, dtype) -> dict[str, Any]:
    """Jᵀr on a fresh linearisation (gd's gradient: one product per D) under each kernel
    policy: ``auto`` (the int8 copy of D rented until it pays, kernels.Selector.run),
    ``int8`` (the copy made every time) and ``float``; median of 5 after one untimed call."""
    problem = problem_at(n, m, d, device, dtype)

    def once() -> float:
        lin = problem.linearize()
        with Stopwatch(device) as sw:
            lin.jacobian.rmatvec(lin.residual)
        return sw.seconds

    out: dict[str, Any] = {"n": n, "m": m, "d": d}
    for mode in ("auto", "int8", "float"):
        kernels.configure(mode)
        once()  # the route's calibration, outside the times
        out[f"{mode}_s"] = statistics.median(once() for _ in range(5))
    kernels.configure("auto")
    out["auto_over_best"] = out["auto_s"] / min(out["int8_s"], out["float_s"])
    return out


def plain_gram_step_time(n: int, m: int, d: int, device, dtype) -> float:
    """Median seconds of one Gauss–Newton step as a user would write it in plain torch:
    forward, D Dᵀ as a float GEMM, the Hadamard Gram, Cholesky solve, W ← W − Jᵀg (the same
    step as ``gn_gram``, on the same problem)."""
    problem = problem_at(n, m, d, device, dtype)
    X, y, a, W = problem.X, problem.y, problem.a, problem.W.clone()
    scale = 1.0 / math.sqrt(m)

    def step():
        Z = X @ W.T
        r = torch.relu(Z) @ a * scale - y
        D = (Z > 0).to(dtype)
        G = (D @ D.T) * (X @ X.T) / m
        g = torch.cholesky_solve(r[:, None], torch.linalg.cholesky(G))[:, 0]
        W.sub_((D.T @ (g[:, None] * X)) * (a * scale)[:, None])

    step()  # warm-up, as for every method
    times = []
    for _ in range(5):
        with Stopwatch(device) as sw:
            step()
        times.append(sw.seconds)
    return statistics.median(times)


#: Outer steps over which gn_sketch's adaptive refresh is amortised: a Gauss–Newton run to
#: 1e-6 takes 2–4 outer steps on the default problem (measured: 3 at n=1024, m=16384).
AMORTIZE_STEPS = 3


#: The gn_sketch variants every table shows side by side: the defaults (the fastest variant
#: measured) and the paper's (harness/conf/algorithm/gn_sketch_paper.yaml).
def sketch_variants() -> dict[str, dict[str, Any]]:
    return {"gn_sketch": {}, "gn_sketch paper": algorithm_preset("gn_sketch_paper")[1]}


#: The gn_sketch variants the defaults were chosen from (docs/methods.md, "gn_sketch
#: defaults"): the paper's, then one change at a time towards the defaults, then beyond.
SKETCH_CANDIDATES: dict[str, dict[str, Any]] = {
    "paper: always, s=4n, qr": dict(refresh="always", sketch_ratio=4.0, factor="qr"),
    "always, s=4n, cholesky_qr": dict(refresh="always", sketch_ratio=4.0,
                                      factor="cholesky_qr"),
    "always, s=2n, cholesky_qr": dict(refresh="always", sketch_ratio=2.0,
                                      factor="cholesky_qr"),
    "adaptive, s=4n, qr": dict(refresh="adaptive", sketch_ratio=4.0, factor="qr"),
    "adaptive, s=4n, cholesky_qr": dict(refresh="adaptive", sketch_ratio=4.0,
                                        factor="cholesky_qr"),
    "defaults: adaptive, s=2n, cholesky_qr": dict(refresh="adaptive", sketch_ratio=2.0,
                                                  factor="cholesky_qr"),
    "adaptive, s=1.5n, cholesky_qr": dict(refresh="adaptive", sketch_ratio=1.5,
                                          factor="cholesky_qr"),
    "adaptive, s=2n, cholesky_qr, countsketch": dict(refresh="adaptive", sketch_ratio=2.0,
                                                     factor="cholesky_qr",
                                                     sketch="countsketch"),
}


def sketch_choice(sizes: Sizes, device, dtype) -> dict[str, Any]:
    """Every candidate gn_sketch variant at the reference sizes, amortised over a run's
    length (the first step builds the preconditioner; adaptive variants reuse it)."""
    n, m, d = sizes.reference
    steps = min(AMORTIZE_STEPS, sizes.max_steps + 1)
    rows = {label: time_per_iteration("gn_sketch", n, m, d, device, dtype, sizes, steps,
                                      **params)
            for label, params in SKETCH_CANDIDATES.items()}
    timed = {k: v["amortised_s"] for k, v in rows.items() if "amortised_s" in v}
    return {"n": n, "m": m, "d": d, "steps": steps, "variants": rows,
            "fastest": min(timed, key=timed.get) if timed else None}


def _render_sketch_choice(sc: dict[str, Any]) -> list[str]:
    lines = [f"gn_sketch variants  n={sc['n']} m={sc['m']} d={sc['d']}  (mean of {sc['steps']}"
             " steps, preconditioner builds included)"]
    for label, res in sc["variants"].items():
        if "amortised_s" in res:
            lines.append(f"  {label:<42} {res['amortised_s'] * 1e3:10.2f} ms  inner "
                         f"{res['inner_iters']}"
                         + (f"  refreshed {res['refreshed']}" if "refreshed" in res else ""))
        else:
            lines.append(f"  {label:<42} {res['note']}")
    lines.append(f"  fastest: {sc['fastest']}")
    return lines


def per_iteration(sizes: Sizes, device, dtype) -> dict[str, Any]:
    n, m, d = sizes.reference
    unit = xw_unit(problem_at(n, m, d, device, dtype), device)
    methods = {}
    for name in ALGORITHMS.names():
        if name == "gn_sketch":
            continue
        methods[name] = time_per_iteration(name, n, m, d, device, dtype, sizes)
    # gn_sketch amortised over a run's length (adaptive refresh: the first step builds R)
    steps = min(AMORTIZE_STEPS, sizes.max_steps + 1)
    for label, params in sketch_variants().items():
        methods[label] = time_per_iteration("gn_sketch", n, m, d, device, dtype, sizes, steps,
                                            **params)
    for res in methods.values():
        if "seconds" in res:
            res["units"] = res["seconds"] / unit
            res["amortised_units"] = res["amortised_s"] / unit
    paper, fast = methods.get("gn_sketch paper", {}), methods.get("gn_sketch", {})
    out = {"n": n, "m": m, "d": d, "unit_s": unit, "methods": methods}
    if "amortised_s" in paper and "amortised_s" in fast:
        out["sketch_default_over_paper"] = fast["amortised_s"] / paper["amortised_s"]
    return out


def crossover(sizes: Sizes, device, dtype) -> dict[str, Any]:
    """gn_gram against both gn_sketch variants, amortised over a run's length, at m = 16n."""
    d = sizes.crossover_d
    steps = min(AMORTIZE_STEPS, sizes.max_steps + 1)
    rows, smallest = [], None
    for n in sizes.crossover_ns:
        m = 16 * n
        row: dict[str, Any] = {"n": n, "m": m, "d": d, "gn_gram": time_per_iteration(
            "gn_gram", n, m, d, device, dtype, sizes, steps)}
        for label, params in sketch_variants().items():
            row[label] = time_per_iteration("gn_sketch", n, m, d, device, dtype, sizes, steps,
                                            **params)
        gram = row["gn_gram"].get("amortised_s")
        best = min((row[k]["amortised_s"] for k in sketch_variants() if "amortised_s" in row[k]),
                   default=None)
        if gram is not None and best is not None:
            row["gram_over_sketch"] = gram / best
            if smallest is None and row["gram_over_sketch"] > 1:
                smallest = n
        rows.append(row)
    return {"m_over_n": 16, "d": d, "steps": steps, "rows": rows,
            "smallest_n_sketch_wins": smallest}


def practice(sizes: Sizes, device, dtype) -> dict[str, Any]:
    n, m, d = sizes.exact
    steps = min(AMORTIZE_STEPS, sizes.max_steps + 1)
    sk = time_per_iteration("gn_sketch", n, m, d, device, dtype, sizes, steps)
    ex = time_per_iteration("gn_exact", n, m, d, device, dtype, sizes)
    exact = {"n": n, "m": m, "d": d, "gn_sketch": sk, "gn_exact": ex}
    if "amortised_s" in sk and "amortised_s" in ex:
        exact["exact_over_sketch"] = ex["amortised_s"] / sk["amortised_s"]

    n, m, d = sizes.to_target
    gn = {name: time_to_target(name, n, m, d, device, dtype, sizes)
          for name in ALGORITHMS.names() if ALGORITHMS.get(name).family == "gauss_newton"}
    gn["gn_sketch paper"] = time_to_target("gn_sketch", n, m, d, device, dtype, sizes,
                                           **sketch_variants()["gn_sketch paper"])
    done = {k: v for k, v in gn.items() if v.get("converged")}
    best = min(done, key=lambda k: done[k]["seconds"]) if done else None
    # A first-order run only has to last long enough to decide the ≥ 100× target: past
    # 150× the best Gauss–Newton time it stops, and its ratio is reported as a lower bound.
    budget = sizes.run_budget_s
    if best is not None:
        budget = min(budget, max(150 * done[best]["seconds"], 1.0))
    gd = time_to_target("gd", n, m, d, device, dtype, sizes, budget, lr="auto")
    adam_runs = {str(lr): time_to_target("adam", n, m, d, device, dtype, sizes, budget, lr=lr)
                 for lr in sizes.adam_lrs} if registered("adam") else {}
    adam_best = _best_run(adam_runs)
    target = {"n": n, "m": m, "d": d, "gauss_newton": gn, "best_gauss_newton": best,
              "gd": gd, "adam": adam_runs, "adam_best_lr": adam_best}
    if best is not None:
        t_best = done[best]["seconds"]
        for key, run in (("gd", gd), ("adam", adam_runs.get(adam_best, {}))):
            if "seconds" in run:
                # a run that did not converge gives a lower bound on the ratio
                target[f"{key}_over_best"] = run["seconds"] / t_best
                target[f"{key}_over_best_is_lower_bound"] = not run.get("converged", False)
    return {"vs_exact": exact, "to_target": target}


def _best_run(runs: dict[str, dict]) -> str | None:
    """The converged run with the least time, else the one with the lowest final loss."""
    conv = {k: v for k, v in runs.items() if v.get("converged")}
    if conv:
        return min(conv, key=lambda k: conv[k]["seconds"])
    tried = {k: v for k, v in runs.items() if math.isfinite(v.get("rel_loss", math.inf))}
    return min(tried, key=lambda k: tried[k]["rel_loss"]) if tried else None


def sketch_times(sizes: Sizes, device, dtype) -> dict[str, Any]:
    """Seconds to form B = S Jᵀ (s×n) for each registered sketch at s = 2n (reference sizes).

    Sketches that act on the md-long columns of Jᵀ (``explicit``) cost Ω(s·n·md) or
    Ω(n·md log md) and are timed only where n·md·s ≤ 1e11 (they are for small problems).
    """
    try:
        registry = importlib.import_module("harness.sketches").SKETCHES
    except ModuleNotFoundError:
        return {"note": "no sketch registry (harness.sketches) yet"}
    n, m, d = sizes.reference
    s = 2 * n
    problem = problem_at(n, m, d, device, dtype)
    jac = problem.linearize().jacobian
    out: dict[str, Any] = {}
    for name in registry.names():
        cls = registry.get(name)
        if getattr(cls, "explicit", False) and n * m * d * s > 1e11:
            out[name] = {"note": "skipped: acts on explicit md-columns, too slow at this size"}
            continue
        try:
            sketch = cls(m, d, s, make_generator(3, device), dtype=dtype)
            out[name] = {"seconds": best_time(partial(sketch.sketch_jacobian, jac), device,
                                              repeats=3)}
        except (NotImplementedError, ConfigError) as exc:
            out[name] = {"note": f"skipped: {exc}"}
        except Exception as exc:
            out[name] = {"note": f"failed: {type(exc).__name__}: {exc}"}
    return {"n": n, "m": m, "d": d, "s": s, "sketches": out}


# --- report --------------------------------------------------------------------------------


class _Targets:
    """Collects the issue's targets: label, measured figure, limit, met or missed."""

    def __init__(self):
        self.rows: list[dict[str, Any]] = []

    def add(self, label: str, value: float | None, limit: float, lower_is_better: bool,
            note: str = "") -> dict[str, Any]:
        met = None if value is None else (value <= limit if lower_is_better else value >= limit)
        row = {"target": label, "value": value, "limit": limit, "met": met, "note": note}
        self.rows.append(row)
        return row


def _targets_kernels(kn: dict[str, Any], t: _Targets) -> None:
    t.add("kernel route chosen / fastest route (worst product and size)",
          kn["worst_chosen_over_fastest"], 1.1, True)
    gp = kn["gram_vs_plain"]
    t.add(f"gn_gram / plain-torch float32 step (n={gp['n']}, m={gp['m']}, d={gp['d']})",
          gp.get("gn_gram_over_plain"), 1.3, True, gp["gn_gram"].get("note", ""))
    fj = kn["fresh_jt"]
    t.add(f"Jᵀr on a fresh D, kernels=auto / best forced route (n={fj['n']}, m={fj['m']})",
          fj["auto_over_best"], 1.1, True)


def _targets_roofline(rf: dict[str, Any], t: _Targets) -> None:
    t.add("CG product G·p / memory floor (fp32 D read twice)", rf["gp_over_floor"], 1.3, True)


def _targets_per_iteration(pi: dict[str, Any], t: _Targets) -> None:
    sk = pi["methods"].get("gn_sketch", {})
    t.add("gn_sketch (defaults) X@Wᵀ-units per outer iteration, amortised",
          sk.get("amortised_units"), 8, True,
          sk.get("note", "") or f"mean of the first {sk.get('steps')} steps, sketch included")
    t.add("gn_sketch defaults / paper variant per iteration, amortised",
          pi.get("sketch_default_over_paper"), 0.6, True)


def _targets_crossover(cr: dict[str, Any], t: _Targets) -> None:
    row = t.add("crossover: smallest n where gn_sketch beats gn_gram (m=16n)",
                cr["smallest_n_sketch_wins"], 2048, True)
    if cr["smallest_n_sketch_wins"] is None and any("gram_over_sketch" in r for r in cr["rows"]):
        row.update(met=False, note=f"not reached up to n={cr['rows'][-1]['n']}")


def _targets_practice(pr: dict[str, Any], t: _Targets) -> None:
    vs = pr["vs_exact"]
    t.add("gn_exact / gn_sketch per iteration", vs.get("exact_over_sketch"), 20, False,
          vs["gn_exact"].get("note", "") or vs["gn_sketch"].get("note", ""))
    tt = pr["to_target"]
    for key in ("gd", "adam"):
        bound = tt.get(f"{key}_over_best_is_lower_bound")
        t.add(f"time to 1e-6: {key} / best GN ({tt['best_gauss_newton']})",
              tt.get(f"{key}_over_best"), 100, False, "lower bound (did not converge)"
              if bound else "")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _render_kernels(kn: dict[str, Any]) -> list[str]:
    cpu = kn["cpu"]
    lines = [f"kernel routes  cpu={cpu['cpu_model']} ({cpu['cpu_arch']}, torch capability "
             f"{cpu['cpu_capability']}, flags {' '.join(cpu['cpu_flags']) or '-'})"]
    for row in kn["rows"]:
        size = f"n={row['n']} m={row['m']}" + (f" k={row['k']}" if row["k"] else "")
        times = "  ".join(f"{r} {t * 1e3:8.2f} ms" for r, t in row["times_s"].items())
        times += "".join(f"  {r}: {why}" for r, why in row["unavailable"].items())
        lines.append(f"  {row['formula']:<5} {size:<24} {times}  chosen {row['chosen']}"
                     + (f" ({row['chosen_over_fastest']:.2f}x fastest)"
                        if "chosen_over_fastest" in row else ""))
    gp = kn["gram_vs_plain"]
    g = gp["gn_gram"]
    lines.append(f"  gn_gram step {g['seconds'] * 1e3:.2f} ms vs plain torch float32 "
                 f"{gp['plain_s'] * 1e3:.2f} ms at n={gp['n']} m={gp['m']} d={gp['d']}: "
                 f"{gp['gn_gram_over_plain']:.2f}x" if "seconds" in g
                 else f"  gn_gram step: {g.get('note')}")
    fj = kn["fresh_jt"]
    lines.append(f"  Jᵀr on a fresh linearisation (gd's gradient) n={fj['n']} m={fj['m']} "
                 f"d={fj['d']}: auto {fj['auto_s'] * 1e3:.2f} ms, int8 (cast every time) "
                 f"{fj['int8_s'] * 1e3:.2f} ms, float {fj['float_s'] * 1e3:.2f} ms")
    return lines


def _render_roofline(rf: dict[str, Any]) -> list[str]:
    return [f"roofline  n={rf['n']} m={rf['m']} d={rf['d']}  copy bandwidth "
            f"{rf['copy_bandwidth_GBps']:.1f} GB/s  pattern stored as {rf['pattern_dtype']}",
            f"  G·p {rf['gp_s'] * 1e3:.2f} ms   floor (fp32 D twice) "
            f"{rf['floor_fp32_s'] * 1e3:.2f} ms   floor (stored D twice) "
            f"{rf['floor_stored_s'] * 1e3:.2f} ms   two matmuls "
            f"{rf['two_matmuls_s'] * 1e3:.2f} ms",
            f"  G·p / floor = {rf['gp_over_floor']:.2f}   G·p / two matmuls = "
            f"{rf['gp_over_two_matmuls']:.2f}"]


def _render_per_iteration(pi: dict[str, Any]) -> list[str]:
    lines = [f"per outer iteration  n={pi['n']} m={pi['m']} d={pi['d']}  unit = X@Wᵀ = "
             f"{pi['unit_s'] * 1e3:.2f} ms   (median step | mean of all steps)"]
    for name, res in pi["methods"].items():
        if "seconds" in res:
            lines.append(f"  {name:<18} {res['seconds'] * 1e3:10.2f} ms {res['units']:8.2f} u"
                         f" | {res['amortised_s'] * 1e3:10.2f} ms {res['amortised_units']:8.2f}"
                         f" u  inner {res['inner_iters']}"
                         + (f"  refreshed {res['refreshed']}" if "refreshed" in res else ""))
        else:
            lines.append(f"  {name:<18} {res['note']}")
    if "sketch_default_over_paper" in pi:
        lines.append(f"  gn_sketch defaults / paper variant (amortised): "
                     f"{pi['sketch_default_over_paper']:.2f}")
    return lines


def _render_sketches(sk: dict[str, Any]) -> list[str]:
    if "sketches" not in sk:
        return [f"sketches  {sk['note']}"]
    lines = [f"sketches  S Jᵀ at s={sk['s']}"]
    for name, res in sk["sketches"].items():
        lines.append(f"  {name:<12} " + (f"{res['seconds'] * 1e3:10.2f} ms" if "seconds"
                                         in res else res["note"]))
    return lines


def _render_crossover(cr: dict[str, Any]) -> list[str]:
    lines = [f"crossover gn_sketch vs gn_gram  m=16n d={cr['d']}  (mean of {cr.get('steps')} "
             "steps, refreshes included)"]
    for row in cr["rows"]:
        cells = []
        for key in [k for k in row if k.startswith("gn_")]:
            r = row[key]
            cells.append(f"{key} {r['amortised_s'] * 1e3:.2f} ms" if "amortised_s" in r
                         else f"{key} ({r['note']})")
        ratio = row.get("gram_over_sketch")
        lines.append(f"  n={row['n']:<6} " + "  ".join(cells) +
                     (f"  gram/best sketch {ratio:.2f}" if ratio is not None else ""))
    lines.append(f"  smallest n where gn_sketch wins: {_fmt(cr['smallest_n_sketch_wins'])}")
    return lines


def _render_practice(pr: dict[str, Any]) -> list[str]:
    vs = pr["vs_exact"]
    lines = [f"practice  n={vs['n']} m={vs['m']} d={vs['d']}  gn_exact / gn_sketch per "
             f"iteration: {_fmt(vs.get('exact_over_sketch'))}" +
             "".join(f"  [{k}: {vs[k]['note']}]" for k in ("gn_sketch", "gn_exact")
                     if "note" in vs[k])]
    tt = pr["to_target"]
    lines.append(f"time to rel. loss 1e-6  n={tt['n']} m={tt['m']} d={tt['d']}")
    runs = [(k, v) for k, v in tt["gauss_newton"].items()] + [("gd (lr=auto)", tt["gd"])]
    runs += [(f"adam lr={lr}", v) for lr, v in tt["adam"].items()] or [("adam", {"note":
                                                                         "not registered"})]
    for label, res in runs:
        if "seconds" in res:
            lines.append(f"  {label:<16} {res['seconds']:9.3f} s  {res['iterations']:6d} iters"
                         f"  rel loss {res['rel_loss']:.2e}"
                         + ("" if res.get("converged") else "  (not converged)"))
        else:
            lines.append(f"  {label:<16} {res['note']}")
    return lines


@dataclass(frozen=True)
class Section:
    measure: Callable[[Sizes, Any, Any], dict[str, Any]]
    render: Callable[[dict[str, Any]], list[str]]
    targets: Callable[[dict[str, Any], _Targets], None] | None = None


#: The sections in the order they run and print; ``--sections`` picks a subset.
SECTIONS: dict[str, Section] = {
    "kernels": Section(kernel_routes, _render_kernels, _targets_kernels),
    "roofline": Section(roofline, _render_roofline, _targets_roofline),
    "per_iteration": Section(per_iteration, _render_per_iteration, _targets_per_iteration),
    "sketches": Section(sketch_times, _render_sketches),
    "sketch_choice": Section(sketch_choice, _render_sketch_choice),
    "crossover": Section(crossover, _render_crossover, _targets_crossover),
    "practice": Section(practice, _render_practice, _targets_practice),
}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets of the sections that ran, each with its figure, met or missed.

    The targets are stated at the full sizes: at ``--quick``'s toy sizes the figures are
    shown but not graded (met = None), since no verdict about them can come from there.
    """
    t = _Targets()
    for key, section in SECTIONS.items():
        if key in report and section.targets is not None:
            section.targets(report[key], t)
    if report.get("meta", {}).get("quick"):
        for row in t.rows:
            row.update(met=None, note="not graded: --quick runs toy sizes, the target is "
                                      "stated at the full ones")
    return t.rows


def render(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [f"nlt-bench  device={meta['device']} ({meta['device_name']})  dtype={meta['dtype']}"
             f"  threads={meta['threads']}  commit={meta['git_commit']}"
             f"  mode={'quick' if meta['quick'] else 'full'}", ""]
    for key, section in SECTIONS.items():
        if key in report:
            lines += section.render(report[key]) + [""]
    lines.append("targets")
    for row in report["targets"]:
        mark = {True: "met", False: "MISSED", None: "-"}[row["met"]]
        lines.append(f"  {row['target']:<58} {_fmt(row['value']):>8}  (limit {row['limit']:g})"
                     f"  {mark}" + (f"  {row['note']}" if row["note"] else ""))
    return "\n".join(lines)


def run(device_name_: str, dtype_name: str, quick: bool,
        json_path: Path | None = None, sections: tuple[str, ...] = tuple(SECTIONS)
        ) -> dict[str, Any]:
    device = resolve_device(device_name_)
    dtype = resolve_dtype(dtype_name)
    sizes = QUICK if quick else FULL
    report: dict[str, Any] = {"meta": {
        "device": str(device), "device_name": device_name(device), "dtype": dtype_name,
        "threads": torch.get_num_threads(), "git_commit": git_commit(),
        "torch": torch.__version__, "python": platform.python_version(), "quick": quick,
        "cpu": cpu_facts(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sizes": dataclasses.asdict(sizes), "loadavg": _loadavg(),
        "sections": list(sections)}}
    for key in sections:
        with Stopwatch(device) as sw:
            report[key] = SECTIONS[key].measure(sizes, device, dtype)
        report["meta"][f"{key}_wall_s"] = sw.seconds
        if json_path is not None:  # sections so far: a long run that is cut keeps its numbers
            write_json(json_path, report, indent=2)
    report["targets"] = targets(report)
    return report


def parse_sections(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SECTIONS]
    if bad or not names:
        raise ConfigError(f"Unknown section {(bad or [text])[0]!r}. Available: "
                          f"{list(SECTIONS)}")
    return tuple(s for s in SECTIONS if s in names)  # the canonical order


def _loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="float32 or float64")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the report as JSON to PATH")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (seconds): checks that everything runs")
    parser.add_argument("--sections", default=",".join(SECTIONS), metavar="LIST",
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this machine's kernel rates for the cost model "
                             "(harness.costmodel) and write them as a JSON profile")
    parser.add_argument("--out", type=Path, default=None, metavar="PATH",
                        help="--calibrate: where the profile goes (default: reports/profiles/"
                             "<device model>_<device>[_<threads>t].json)")
    parser.add_argument("--predict", type=Path, default=None, metavar="PROFILE",
                        help="print the cost model's per-iteration predictions from PROFILE "
                             "at this mode's sizes, and the crossover frontier")
    # argparse's own errors are multi-line; one line and exit 2 like every nlt command
    parser.error = lambda message: fail(PROG, message)  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if args.calibrate or args.predict is not None:
        cost_model_main(args)
        return
    if args.json is not None and not args.json.parent.is_dir():
        fail(PROG, f"--json: directory {str(args.json.parent)!r} does not exist")
    sections = guarded(PROG, lambda: parse_sections(args.sections))
    report = guarded(PROG, lambda: run(args.device, args.dtype, args.quick, args.json,
                                       sections))
    if args.json is not None:
        write_json(args.json, report, indent=2)
    print(render(report))
    sys.stdout.flush()


def cost_model_main(args: argparse.Namespace) -> None:
    """``--calibrate`` (write a profile) and ``--predict PROFILE`` (print from one)."""
    if args.calibrate:
        dtypes = (args.dtype, *[d for d in costmodel.DTYPES if d != args.dtype])
        path = guarded(PROG, lambda: run_calibration(
            args.device, dtypes, args.quick, args.out, log=lambda s: print(s, flush=True)))
        print(costmodel.render_profile(costmodel.Profile.load(path)))
        print(f"profile written to {path}")
    if args.predict is not None:
        profile = guarded(PROG, lambda: costmodel.Profile.load(args.predict))
        sizes = QUICK if args.quick else FULL
        print(guarded(PROG, lambda: costmodel.render_predictions(profile, *sizes.reference)))
        d = sizes.crossover_d
        table = guarded(PROG, lambda: costmodel.frontier(
            profile, sizes.crossover_ns, [2**k for k in range(6, 22)], d))
        print(f"smallest m (power of two) where gn_sketch beats gn_gram per iteration, d={d}:")
        print(table.to_string(index=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
