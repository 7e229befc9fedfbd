"""The ``roofline`` and ``kernels`` sections of ``nlt-bench``: how close the pattern products
come to what the hardware allows. One CG product G·p against the memory floor (the copy
bandwidth measured in the same run) and against two plain GEMMs of the same shapes; every
route of every multi-route product of ``harness.linalg.kernels`` timed beside the route
``kernels=auto`` chose; Jᵀr on a fresh linearisation under each kernel policy; and
``gn_gram``'s step against the same step written by hand in plain torch float32.
"""

from __future__ import annotations

import math
import statistics
from functools import partial
from typing import Any

import torch

from harness.common.provenance import cpu_facts
from harness.common.timing import Stopwatch, best_time
from harness.linalg import kernels
from harness.model import make_generator
from harness.perf.bench.common import Sizes, copy_bandwidth, problem_at, time_per_iteration


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


def render_kernels(kn: dict[str, Any]) -> list[str]:
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


def render_roofline(rf: dict[str, Any]) -> list[str]:
    return [f"roofline  n={rf['n']} m={rf['m']} d={rf['d']}  copy bandwidth "
            f"{rf['copy_bandwidth_GBps']:.1f} GB/s  pattern stored as {rf['pattern_dtype']}",
            f"  G·p {rf['gp_s'] * 1e3:.2f} ms   floor (fp32 D twice) "
            f"{rf['floor_fp32_s'] * 1e3:.2f} ms   floor (stored D twice) "
            f"{rf['floor_stored_s'] * 1e3:.2f} ms   two matmuls "
            f"{rf['two_matmuls_s'] * 1e3:.2f} ms",
            f"  G·p / floor = {rf['gp_over_floor']:.2f}   G·p / two matmuls = "
            f"{rf['gp_over_two_matmuls']:.2f}"]
