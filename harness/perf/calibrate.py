"""``nlt-bench --calibrate``: measure this machine's kernel rates and the step ladder, and
write the cost-model profile (``harness.costmodel.Profile``) the predictions read.

Kernels are timed alone at sizes off every sweep's grid (``CalibrationSizes``), with the one
best-of-N loop of ``harness.common.timing``; each sketch's B = S Jᵀ is timed whole at the
sizes of ``CalibrationSizes.sketch``; the *step ladder* then runs every modelled method's
own steps (its ``ladder_runs``) in the runner's loop at ``LADDER`` sizes, on every model with
a cost model at its ``ladder_depth``, and keeps per phase measured / kernel model as a curve
(``harness.costmodel`` explains what each part holds).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.base import ALGORITHMS
from algorithms.gn_sketch import sketch_size
from harness.common.device import device_name, resolve_device, resolve_dtype, total_memory_bytes
from harness.common.provenance import cpu_facts, git_commit
from harness.common.timing import PhaseClock, best_time
from harness.costmodel import inner as inner_k
from harness.costmodel.comm import PROFILE_LINK_KEY
from harness.costmodel.predict import method_params, modelled_methods, occurrence, predict
from harness.costmodel.profile import (
    ANCHORED_KERNELS,
    DTYPES,
    PRODUCT_KERNEL,
    SCHEMA,
    Fit,
    Profile,
    default_profile_path,
    fit_kernel,
    kernel_table,
    ladder_key,
    merged_curve,
    sketch_kernel,
)
from harness.execution.loop import setup, steps, warm_up
from harness.linalg import kernels
from harness.linalg.hadamard import fwht, split_bits
from harness.model import MODELS, make_generator, make_problem
from harness.sketches import SKETCHES, sketch_problem


@dataclasses.dataclass(frozen=True)
class CalibrationSizes:
    pattern: tuple[tuple[int, int], ...]  # (n, m) of D
    ks: tuple[int, ...]  # columns of the skinny products; also d of X Wᵀ
    square: tuple[int, ...]  # n of Cholesky and the triangular solve
    qr: tuple[tuple[int, int], ...]  # (s, n)
    elements: tuple[int, ...]  # elementwise pass and copy (elements of the dtype)
    fwht: tuple[tuple[int, int], ...]  # (rows, N)
    repeats: int
    budget_s: float  # per timing
    #: (n, m) of D far larger than any cache (1 GB in float32), for the products that read
    #: D once (X Wᵀ, D Z, Dᵀ Y) and stream from memory at the sizes of the crossover grid; a
    #: machine with a large last-level cache (260 MB here) would otherwise be calibrated on
    #: cache bandwidth alone. The Gram is compute-bound and is not timed there.
    stream: tuple[tuple[int, int], ...] = ()
    #: bytes of the fresh buffers ``fault`` is timed on: from below the allocator's reuse
    #: threshold to well past it (a step's n×m buffer reaches gigabytes).
    fault: tuple[int, ...] = ()
    #: (n, m, d, s/n) at which every sketch forms B = S Jᵀ, off the sweeps' grids; the
    #: sketches that pass over J's md-long rows only up to ``sketch_explicit_max`` = n·m·d
    sketch: tuple[tuple[int, int, int, float], ...] = ()
    sketch_explicit_max: float = 0.0


FULL_CAL = CalibrationSizes(
    pattern=((64, 512), (128, 2048), (256, 4096), (1024, 8192), (2048, 16384)), ks=(16, 64),
    square=(32, 128, 256, 1024, 2048),
    qr=((64, 32), (256, 64), (512, 128), (2048, 512), (4096, 1024)),
    elements=(1 << 14, 1 << 18, 1 << 22, 1 << 24, 1 << 26, 1 << 27),
    fwht=((4096, 1024), (256, 65536), (1024, 16), (1024, 4096), (1024, 65536)), repeats=5,
    budget_s=3.0, stream=((4096, 65536),),
    fault=(1 << 20, 1 << 22, 1 << 24, 1 << 25, 1 << 26, 1 << 28, 1 << 30),
    sketch=((96, 384, 16, 2.0), (320, 1280, 16, 8.0), (320, 1280, 64, 4.0),
            (192, 6144, 16, 2.0), (768, 3072, 16, 2.0), (768, 3072, 16, 8.0),
            (640, 20480, 16, 4.0), (1536, 12288, 16, 2.0), (1280, 81920, 16, 2.0),
            (3072, 24576, 16, 4.0), (48, 1536, 1536, 2.0)),
    sketch_explicit_max=float(1 << 25))
QUICK_CAL = CalibrationSizes(
    pattern=((32, 256), (64, 512)), ks=(8, 16), square=(32, 64, 128),
    qr=((128, 32), (256, 64)), elements=(1 << 10, 1 << 14, 1 << 16),
    fwht=((64, 256), (32, 1024)), repeats=5, budget_s=0.1, fault=(1 << 16, 1 << 20),
    sketch=((32, 64, 4, 2.0), (64, 128, 8, 4.0), (96, 256, 8, 2.0), (128, 192, 8, 8.0)),
    sketch_explicit_max=float(1 << 20))


#: A fresh buffer's extra time is a difference of two timings; below this it is noise.
FAULT_FLOOR_S = 1e-7
#: A timing repeats a fast kernel until this much time is spent (at most MAX_CALLS calls):
#: on a shared machine a single call can lose a scheduler slice, and the minimum of many
#: calls is the kernel's own time. 0.1 s gives the memory-bound passes over hundreds of
#: megabytes (15–30 ms a call) several tries; with 0.02 s a busy neighbour left one such
#: point 2.5× slow.
MIN_TIMED_S, MAX_CALLS = 0.1, 200


def _measure_dtype(device: torch.device, dtype: torch.dtype, sizes: CalibrationSizes,
                   log: Callable[[str], None]) -> tuple[dict[str, Fit], dict[str, Any],
                                                         dict[str, str]]:
    """Every kernel's points and fit for one dtype; the pattern routes side by side."""
    gen = torch.Generator(device=device).manual_seed(0)
    points: dict[str, list[dict[str, float]]] = {k: [] for k in kernel_table()}
    unavailable: dict[str, str] = {}
    routes: dict[str, list[dict[str, Any]]] = {p: [] for p in PRODUCT_KERNEL}

    def timed(fn):
        return best_time(fn, device, repeats=sizes.repeats, min_seconds=MIN_TIMED_S,
                         max_calls=MAX_CALLS, budget_s=sizes.budget_s)

    _measure_patterns(points, routes, unavailable, gen, timed, device, dtype, sizes, log)
    _measure_dense(points, gen, timed, device, dtype, sizes)
    log(f"  {str(dtype)[6:]} factorisations, passes and transforms")
    _measure_sketches(points, timed, device, dtype, sizes)
    log(f"  {str(dtype)[6:]} sketches")
    fits = {name: fit_kernel(pts, kernel_table()[name], anchor=name in ANCHORED_KERNELS)
            for name, pts in points.items() if pts}
    return fits, routes, unavailable


def _measure_patterns(points, routes, unavailable, gen, timed, device, dtype, sizes,
                      log) -> None:
    """The forward GEMM and every route of the products with D, at the pattern sizes."""
    kw = dict(device=device, dtype=dtype)
    for n, m in (*sizes.pattern, *sizes.stream):
        D = (torch.rand(n, m, generator=gen, device=device) > 0.5).to(dtype)
        X = torch.randn(n, max(sizes.ks), generator=gen, device=device).to(dtype)
        out = torch.empty(n, m, **kw)  # the product alone: a fresh buffer is ``fault``
        for k in sizes.ks:
            W, Xk = torch.randn(m, k, **kw), X[:, :k].contiguous()
            t = timed(lambda Xk=Xk, W=W, out=out: torch.matmul(Xk, W.T, out=out))
            points["xw"].append({"elements": n * m + (n + m) * k, "flops": 2 * n * m * k,
                                 "seconds": t})
        for product, prefix in PRODUCT_KERNEL.items():
            if product == "pattern_gram" and (n, m) in sizes.stream:
                continue
            spec = kernels.PRODUCTS[product]
            for k in ((0,) if product == "pattern_gram" else sizes.ks):
                ops = () if not k else (torch.randn(m if product == "pattern_mm" else n, k,
                                                    **kw),)
                P = kernels.Pattern(D)
                if product == "pattern_gram":
                    work = {"elements": n * m + n * n, "flops": 2 * n * n * m}
                else:
                    work = {"elements": n * m + (n + m) * k, "flops": 2 * n * m * k}
                rec: dict[str, Any] = {"n": n, "m": m, "k": k or None}
                for route, impl in spec.routes.items():
                    why = impl.unavailable(P, *ops)
                    if why:
                        unavailable[f"{prefix}_{route}"] = why
                        continue
                    slow = kernels.probe(spec, route, P, *ops)
                    if slow:  # as the selector does: hopeless on a corner, not timed whole
                        rec[f"{route}_skipped"] = slow
                        log(f"  {product} {route} at n={n} m={m}: {slow}")
                        continue
                    if spec.cast_per_call:
                        t = timed(lambda impl=impl, ops=ops, D=D:
                                  impl.run(kernels.Pattern(D), *ops))
                    else:
                        _ = P.int8  # shared cast, as in a step
                        t = timed(lambda impl=impl, ops=ops, P=P: impl.run(P, *ops))
                    points[f"{prefix}_{route}"].append({**work, "seconds": t})
                    rec[f"{route}_s"] = t
                # the selector's own rule (tie margin, availability) on the times just taken
                selector = kernels.Selector("auto", timer=lambda name, fn, dev, rec=rec:
                                            rec.get(f"{name}_s", math.inf))
                rec["chosen"] = selector.choose(spec, kernels.Pattern(D), *ops)
                routes[product].append(rec)
        log(f"  {str(dtype)[6:]} pattern products at n={n} m={m}")
        del D, out


def _measure_dense(points, gen, timed, device, dtype, sizes) -> None:
    """Factorisations, triangular solves, elementwise passes, copies, page faults, FWHT."""
    kw = dict(device=device, dtype=dtype)
    for n in sizes.square:
        A = torch.randn(n, n, generator=gen, device=device).to(dtype)
        S = A @ A.T / n + torch.eye(n, **kw)
        points["cholesky"].append({"elements": n * n, "flops": n**3 / 3,
                                   "seconds": timed(lambda S=S: torch.linalg.cholesky(S))})
        L = torch.linalg.cholesky(S)
        b = torch.randn(n, 1, **kw)
        points["trsv"].append({"elements": n * n, "seconds": timed(
            lambda L=L, b=b: torch.linalg.solve_triangular(L, b, upper=False))})
    for s, n in sizes.qr:
        B = torch.randn(s, n, generator=gen, device=device).to(dtype)
        k = min(s, n)
        points["qr"].append({"elements": s * n, "flops": 2 * s * n * k - 2 * k**3 / 3,
                             "seconds": timed(lambda B=B: torch.linalg.qr(B, mode="r"))})
    itemsize = torch.empty((), dtype=dtype).element_size()
    for count in sizes.elements:
        x = torch.randn(count, generator=gen, device=device).to(dtype)
        y = torch.empty_like(x)
        points["elementwise"].append({"elements": count, "seconds": timed(
            lambda x=x: torch.relu_(x))})
        points["copy"].append({"bytes": 2 * count * itemsize, "seconds": timed(
            lambda x=x, y=y: y.copy_(x))})
    for nbytes in sizes.fault:
        count = nbytes // itemsize
        warm = torch.empty(count, **kw)
        t_warm = timed(lambda warm=warm: warm.fill_(1.0))
        del warm
        t_new = timed(lambda count=count: torch.empty(count, **kw).fill_(1.0))
        points["fault"].append({"bytes": count * itemsize,
                                "seconds": max(t_new - t_warm, FAULT_FLOOR_S)})

    for rows_, N in sizes.fwht:
        x = torch.randn(rows_, N, generator=gen, device=device).to(dtype)
        bits = split_bits(N)
        points["fwht"].append({"elements": rows_ * N * len(bits),
                               "flops": 2 * rows_ * N * sum(1 << b for b in bits),
                               "seconds": timed(lambda x=x: fwht(x))})


def _measure_sketches(points, timed, device, dtype, sizes) -> None:
    """Each sketch's draw and B = S Jᵀ on a two-layer linearisation (``sketch_problem``, as
    gn_sketch's sketch phase runs it), at ``sizes.sketch``."""
    for n, m, d, ratio in sizes.sketch:
        problem = make_problem("synthetic", n, d, m, seed=0, device=device, dtype=dtype)
        jac = problem.linearize().jacobian
        s = sketch_size(ratio, n)
        for name in SKETCHES:
            cls = SKETCHES.get(name)
            if not cls.kernel_kinds:  # no kernel of its own: priced by its formula
                continue
            if cls.explicit and n * m * d > sizes.sketch_explicit_max:
                continue
            if cls.check_size(m, d, s):
                continue
            work = cls.work(n, m, d, s)
            gen = make_generator(0, device)
            t = timed(lambda name=name, s=s, gen=gen, problem=problem, jac=jac:
                      sketch_problem(name, problem, s, gen).sketch_jacobian(jac))
            points[sketch_kernel(name)].append({**work, "seconds": t})
        del problem, jac


def calibrate(device: str = "cpu", dtypes: Sequence[str] = DTYPES, quick: bool = False,
              log: Callable[[str], None] = lambda s: None) -> Profile:
    """Measure this machine's kernel rates (see the module table) and return the profile."""
    dev = resolve_device(device)
    sizes = QUICK_CAL if quick else FULL_CAL
    for dt in dtypes:
        resolve_dtype(dt)
    data: dict[str, Any] = {
        "schema": SCHEMA, "source": "measured (nlt-bench --calibrate)",
        "device": dev.type, "device_name": device_name(dev), "cpu": cpu_facts(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick, "default_dtype": dtypes[0], "memory_bytes": total_memory_bytes(dev),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "sizes": dataclasses.asdict(sizes), "kernels": {}, "routes": {}, "unavailable": {},
    }
    if dev.type == "cuda":
        cc = torch.cuda.get_device_capability(dev)
        data["cuda_capability"] = f"{cc[0]}.{cc[1]}"
    ladder = QUICK_LADDER if quick else LADDER
    # quick: every size of its short ladder (no timing decides what is measured)
    limit = None if quick else LADDER_STEP_S
    models = ladder_models()
    data["ladder"] = {"sizes": [list(x) for x in ladder], "steps": LADDER_STEPS,
                      "step_limit_s": limit, "models": dict(models), "points": {}}
    data["phase_curves"] = {}
    for dt in dtypes:
        fits, routes, unavailable = _measure_dtype(dev, resolve_dtype(dt), sizes, log)
        data["kernels"][dt] = {k: f.as_dict() for k, f in fits.items()}
        data["routes"][dt] = routes
        data["unavailable"][dt] = unavailable
        log(f"  {dt}: the step ladder (each method's own steps at n, m, d = "
            f"{', '.join(map(str, ladder))})")
        curves, raw = _measure_ladder(dev, dt, Profile(data), ladder, log, models, limit)
        data["phase_curves"][dt] = curves
        data["ladder"]["points"][dt] = raw
        if dt == dtypes[0]:  # k and f: one model (iteration counts are not a dtype's)
            sizes_k = [x for x in ladder if x[0] <= INNER_MAX_N] or list(ladder[:1])
            points, runs = _measure_inner(dev, dt, sizes_k, log)
            data["inner_ladder"] = {"dtype": dt, "sizes": [list(x) for x in sizes_k],
                                    "points": points, "adaptive_runs": runs}
            model = inner_k.fit(inner_k.ladder_points(raw, method_params) + points, runs)
            data[inner_k.PROFILE_KEY] = model.as_dict()
    # the backend at hand between 2 ranks of this machine: what a sharded cell's all-reduces
    # cost here (harness.costmodel.comm)
    from harness.perf.comm import measure_link

    link, seconds = measure_link(2, repeats=5 if quick else 20)
    data[PROFILE_LINK_KEY] = {**link.to_dict(), "world": 2, "seconds": seconds}
    log(f"  link: {link.name}, latency {link.latency_s:.3g} s, bandwidth "
        f"{link.bandwidth:.3g} B/s")
    return Profile(data)


def run_calibration(device: str, dtypes: Sequence[str], quick: bool, out: Path | None,
                    log: Callable[[str], None] = print) -> Path:
    """``nlt-bench --calibrate``: measure, write the profile, return its path."""
    prof = calibrate(device, dtypes, quick, log)
    if out is None:
        out = default_profile_path(torch.device(prof.data["device"]),
                                   prof.data["device_name"], prof.data["threads"])
    return prof.save(out)


# --- the step ladder ---------------------------------------------------------------------------

#: (n, m, d) of the ladder, none of them a cell of a committed sweep (nothing is calibrated
#: on the cells it is judged on), from where fixed costs dominate to where D streams from
#: memory. A run stops climbing where the kernel model puts its step above LADDER_STEP_S.
LADDER = ((64, 128, 8), (160, 1280, 12), (320, 2560, 16), (640, 5120, 16), (1280, 20480, 16),
          (2560, 81920, 16))
QUICK_LADDER = ((64, 128, 8), (96, 384, 8))
LADDER_STEP_S = 0.4
#: timed steps per ladder point (after one untimed warm-up step; the loss is evaluated
#: between steps, as the runner does)
LADDER_STEPS = 3


def ladder_models() -> list[tuple[str, int]]:
    """(model, depth) the ladder runs: every registered model with a cost model, at its
    ``ladder_depth`` (its curves serve every depth of that model)."""
    return [(name, MODELS.get(name).ladder_depth) for name in MODELS
            if MODELS.get(name).op_costs is not None and MODELS.get(name).ladder_depth]


def _ladder_steps(method: str, params: dict[str, Any], n: int, m: int, d: int, model: str,
                  depth: int, dev: torch.device, dtype: str
                  ) -> tuple[dict[str, list[float]], float]:
    """``LADDER_STEPS`` steps of ``method`` in the runner's loop (``harness.execution.loop``:
    warm-up, setup, then each step on the clock and the loss evaluated after it): {phase:
    seconds per step}, and the mean inner iterations (0 without an inner solve)."""
    cls = ALGORITHMS.get(method)
    problem = make_problem("synthetic", n, d, m, seed=0, device=dev, dtype=resolve_dtype(dtype),
                           model=model, depth=depth)

    def make():
        return cls(problem, cls.Params(**params), make_generator(1, dev))

    warm_up(problem, make, 1)
    alg, clock = make(), PhaseClock(dev)
    setup(alg, clock, dev)
    problem.loss()
    seen: dict[str, list[float]] = {}
    inner = []
    for step in steps(alg, problem, clock, dev, LADDER_STEPS):
        for phase, secs in step.phases.items():
            seen.setdefault(phase, []).append(secs)
        if step.info.inner_iters is not None:
            inner.append(float(step.info.inner_iters))
    return seen, float(np.mean(inner)) if inner else 0.0


#: The inner-iteration ladder (``harness.costmodel.inner``): runs beside the step ladder's
#: that vary what k depends on (tolerance, sketch ratio), at the ladder's sizes up to
#: INNER_MAX_N, and each method's defaults (adaptive refresh, full steps) for
#: ADAPTIVE_STEPS steps, whose k per step and rebuilds give the drift and rebuild rate.
INNER_RUNS: dict[str, tuple[dict[str, Any], ...]] = {
    "gn_sketch": ({"step_size": 0.05, "refresh": "always", "tol": 1e-3},
                  {"step_size": 0.05, "refresh": "always", "sketch_ratio": 8.0},
                  {"step_size": 0.05, "refresh": "always", "sketch_ratio": 1.5}),
    "gn_cg": ({"step_size": 0.05, "tol": 1e-3},),
}
ADAPTIVE_METHODS = ("gn_sketch",)
INNER_MAX_N, ADAPTIVE_STEPS = 640, 5


def _inner_run(method: str, params: dict[str, Any], n: int, m: int, d: int,
               dev: torch.device, dtype: str, count: int) -> tuple[list[float], list[int]]:
    """``count`` steps of ``method`` in the runner's loop: k and rebuilt (0/1) per step."""
    cls = ALGORITHMS.get(method)
    problem = make_problem("synthetic", n, d, m, seed=0, device=dev, dtype=resolve_dtype(dtype))
    alg, clock = cls(problem, cls.Params(**params), make_generator(1, dev)), PhaseClock(dev)
    setup(alg, clock, dev)
    problem.loss()
    ks, built = [], []
    for step in steps(alg, problem, clock, dev, count):
        ks.append(float(step.info.inner_iters or 0))
        built.append(int(step.info.extras.get("refreshed", 1)))
    return ks, built


def _measure_inner(dev: torch.device, dtype: str, sizes, log: Callable[[str], None]
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The inner-iteration ladder: (points of ``INNER_RUNS``, ``ADAPTIVE_METHODS``' runs)."""
    points, runs = [], []
    for n, m, d in sizes:
        for method, overrides in ((k, o) for k, v in INNER_RUNS.items() for o in v):
            params = method_params(method, overrides)
            ks, _ = _inner_run(method, params, n, m, d, dev, dtype, LADDER_STEPS)
            points.append({"method": method, "params": params, "n": n, "m": m, "d": d,
                           "inner_iters": float(np.mean(ks))})
        for method in ADAPTIVE_METHODS:
            params = method_params(method, {})
            ks, built = _inner_run(method, params, n, m, d, dev, dtype, ADAPTIVE_STEPS)
            runs.append({"method": method, "params": params, "n": n, "m": m, "d": d,
                         "ks": ks, "refreshed": built})
        log(f"    inner iterations at n={n} m={m} d={d}")
    return points, runs


def _measure_ladder(dev: torch.device, dtype: str, profile: Profile, ladder,
                    log: Callable[[str], None], models: Sequence[tuple[str, int]],
                    limit_s: float | None, methods: Sequence[str] | None = None
                    ) -> tuple[dict[str, dict[str, list]], list]:
    """Each method's own steps (its ``ladder_runs``) in the runner's loop at the ladder's
    sizes, on each of ``models`` (model, depth) whose structure the method finds; per
    phase, measured over the kernel model's prediction (no correction) at each size, as a
    curve over the model's seconds per occurrence. A run stops climbing where the kernel
    model puts its step above ``limit_s`` (None: it climbs the whole ladder). ``methods``:
    a subset of the modelled methods (default: all of them). Returns
    ({``ladder_key``: {phase key: curve}}, the raw points)."""
    bare = Profile({k: v for k, v in profile.data.items() if k != "phase_curves"})
    raw: list[dict[str, Any]] = []
    pairs: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for model, depth in models:
        for method in methods or modelled_methods():
            cls = ALGORITHMS.get(method)
            if not cls.requires <= MODELS.get(model).features:
                continue
            for overrides in cls.ladder_runs:
                params = method_params(method, overrides)
                for n, m, d in ladder:
                    if limit_s is not None and predict(
                            method, params, n, m, d, bare, dtype=dtype, depth=depth,
                            model=model)["total"] > limit_s:
                        break
                    seen, k = _ladder_steps(method, params, n, m, d, model, depth, dev, dtype)
                    pred = predict(method, params, n, m, d, bare, inner_iters=k, dtype=dtype,
                                   refresh_every=1.0, depth=depth, model=model)
                    for phase, times in seen.items():
                        if not pred.get(phase, 0.0) > 0:
                            continue
                        measured = float(np.median(times))
                        key = cls.phase_key(params, phase)
                        x = occurrence(method, phase, pred[phase], k)
                        pairs.setdefault(ladder_key(method, model), {}).setdefault(
                            key, []).append((x, measured / pred[phase]))
                        raw.append({"method": method, "params": dict(overrides), "n": n,
                                    "m": m, "d": d, "model": model, "depth": depth,
                                    "phase": key, "inner_iters": k, "measured_s": measured,
                                    "model_s": pred[phase]})
                log(f"    {ladder_key(method, model):<15} {json.dumps(overrides)[:60]}")
    curves = {method: {key: [list(p) for p in merged_curve(pts)]
                       for key, pts in table.items()}
              for method, table in pairs.items()}
    return curves, raw
