"""The report's tables as pandas frames: headline, what the data can decide, crossover,
environment, problems.
(The scaling-exponent table is ``fits.scaling_fits``; the claims table is ``claims``.)"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.execution.results import DONE_STATUSES as DONE
from harness.reporting.load import Problem
from harness.reporting.metrics import with_model

#: Time per iteration, by rule (metrics.cell_metrics): the median step over steps 1..T, and the
#: mean over all steps 1..T with refreshes (what comparisons between methods use).
MEDIAN, AMORTISED = "time_per_iter_median_s", "time_per_iter_amortised_s"


def fmt_time(t) -> str:
    if t is None or t != t:
        return "–"
    if t < 1e-3:
        return f"{t * 1e6:.3g} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms"
    return f"{t:.3g} s"


def fmt_bytes(b) -> str:
    if b is None or b != b:
        return "–"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{int(b)} B"


#: The methods the headline compares: first-order, the two exact Gram solves, BPSW21's.
MAIN_METHODS = ("gd", "gn_gram", "gn_sketch", "gn_exact")


def reference_size(cells: pd.DataFrame):
    """(device, n, m, why) of the headline table: the largest n at which every main method
    present in the data (``MAIN_METHODS``) has a finished cell, so the table compares them at
    the hardest size they all reached; ties: more methods, fewer variants, larger m. Without
    such a size (a main method never finished anywhere it could meet the others), the size
    with the most methods."""
    done = cells[cells["status"].isin(DONE)]
    if not len(done):
        return None
    score = done.groupby(["device", "n", "m"]).agg(a=("algorithm", "nunique"),
                                                   v=("variant", "nunique")).reset_index()
    score["v"] = -score["v"]  # a comparison, not an ablation: fewer variants first
    present = [a for a in MAIN_METHODS if (cells["algorithm"] == a).any()]
    full = done[done["algorithm"].isin(present)].groupby(["device", "n", "m"])["algorithm"] \
        .nunique()
    full = full[full == len(present)].reset_index()[["device", "n", "m"]]
    if len(present) and len(full):
        best = score.merge(full).sort_values(["n", "a", "v", "m"], ascending=False).iloc[0]
        why = (f"the largest n at which {', '.join(present)} all ran to a finish; "
               f"{int(best['a'])} methods there")
    else:
        best = score.sort_values(["a", "v", "n", "m"], ascending=False).iloc[0]
        why = ("the size with the most methods; no size has every main method present ("
               + ", ".join(present or MAIN_METHODS) + ") finished")
    return best["device"], int(best["n"]), int(best["m"]), why


def reach_text(g: pd.DataFrame) -> tuple[str, str]:
    """(iterations to ε, time to ε) of a group of cells (seeds) as text: medians over the
    seeds that reached ε, or the censored lower bound ``> …`` with its reason."""
    reached = g[g["iters_to_target"].notna()]
    if len(reached):
        part = "" if len(reached) == len(g) else f" ({len(reached)}/{len(g)} seeds)"
        return (f"{np.median(reached['iters_to_target']):g}{part}",
                fmt_time(np.median(reached["time_to_target_s"])))
    lb = g["iters_lower_bound"].dropna()
    reasons = ", ".join(sorted(set(g["censor"].dropna())))
    iters = f"> {lb.max():g} ({reasons})" if len(lb) else f"not reached ({reasons})"
    tl = g["time_lower_bound_s"].dropna()
    return iters, (f"> {fmt_time(tl.max())}" if len(tl) else "–")


def depth_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per model and depth, dataset and n: each method's time to ε (iterations), a censored
    bound where it did not get there, and the mean inner CG iterations of the sketched and
    the plain CG step (does the preconditioner still work at depth?)."""
    if "depth" not in cells or not len(cells):
        return pd.DataFrame()
    out = []
    keys = ["model", "depth", "dataset", "n", "m"]
    for key, g in cells.groupby(keys, sort=True):
        row = dict(zip(keys, key))
        for alg, a in g.groupby("algorithm", sort=True):
            iters, ttt = reach_text(a)
            row[alg] = f"{ttt} ({iters})"
        for alg in ("gn_sketch", "gn_cg"):
            inner = g.loc[g["algorithm"] == alg, "mean_inner_iters"].dropna()
            row[f"{alg} inner/outer"] = f"{inner.median():.1f}" if len(inner) else "–"
        out.append(row)
    return pd.DataFrame(out)


def headline(cells: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    ref = reference_size(cells)
    if ref is None:
        return pd.DataFrame(), "no finished runs"
    device, n, m, why = ref
    sub = cells[(cells["device"] == device) & (cells["n"] == n) & (cells["m"] == m)]
    target = float(cells["target"].iloc[0])
    out = []
    for variant, g in sub.groupby("variant", sort=True):
        finished = g[g["status"].isin(DONE)]
        iters, ttt = reach_text(g)
        out.append({"method": variant, "cells": len(g),
                    "time / iteration (median step)":
                        fmt_time(finished[MEDIAN].median()),
                    "time / iteration (amortised: mean of all steps)":
                        fmt_time(finished[AMORTISED].median()),
                    f"iterations to {target:g}": iters, f"time to {target:g}": ttt,
                    "peak memory": fmt_bytes(finished["peak_memory_bytes"].median()),
                    "status": ", ".join(f"{k} {v}" for k, v in
                                        g["status"].value_counts().sort_index().items())})
    ctx = sub.iloc[0]
    where = (f"n={n}, m={m}, d={int(ctx['d'])}, {ctx['dataset']}, {ctx['dtype']}, {device} "
             f"({why})")
    return pd.DataFrame(out), where


def _bounds(runs: pd.DataFrame, col: str) -> tuple[float, float]:
    """(lower, upper) bound on the median of ``col`` over seeds. Per iteration: the median.
    To target: the median when every seed reached ε; else the median of values and lower
    bounds, with no upper bound. (nan, nan) when a seed has neither."""
    if col != "time_to_target_s":
        v = float(runs[col].median()) if runs[col].notna().any() else float("nan")
        return v, v
    if runs[col].notna().all():
        v = float(runs[col].median())
        return v, v
    value = runs[col].fillna(runs["time_lower_bound_s"])
    if value.isna().any():
        return float("nan"), float("nan")
    return float(value.median()), float("inf")


def crossover(cells: pd.DataFrame) -> pd.DataFrame:
    """For each (device, m) the smallest n where gn_sketch surely beats gn_gram, per iteration
    (amortised) and to target, or 'not reached in the measured range'. At each n the best
    gn_sketch variant that reached ε is compared (named in the table); a run that stopped
    before ε gives a lower bound, so gn_sketch beats it only with a time below that bound."""
    cols = ["device", "m", "context", "n measured", "per iteration (amortised)", "to target"]
    sk = cells[(cells["algorithm"] == "gn_sketch") & cells["status"].isin(DONE)]
    gr = cells[(cells["algorithm"] == "gn_gram") & cells["status"].isin(DONE)]
    out = []
    if not len(sk) or not len(gr):
        return pd.DataFrame(columns=cols)
    keys = with_model(["device", "dataset", "d", "dtype", "m"], sk)
    for key, s in sk.groupby(keys):
        g = gr
        for k, v in zip(keys, key):
            g = g[g[k] == v]
        common = sorted(set(s["n"]) & set(g["n"]))
        if not common:
            continue
        row = {"device": key[0], "m": int(key[4]), "context": f"{key[1]} d={int(key[2])} "
               f"{key[3]}", "n measured": f"{int(common[0])}–{int(common[-1])} "
               f"({len(common)} sizes)"}
        for label, col in (("per iteration (amortised)", AMORTISED),
                           ("to target", "time_to_target_s")):
            found = None
            for n in common:
                # the fastest gn_sketch variant with a value (an upper bound is not one)
                best = None
                for variant, runs in s[s["n"] == n].groupby("variant"):
                    lo, hi = _bounds(runs, col)
                    if hi == hi and hi != float("inf") and (best is None or hi < best[0]):
                        best = (hi, variant)
                g_lo, g_hi = _bounds(g[g["n"] == n], col)
                if best is not None and g_lo == g_lo and best[0] < g_lo:
                    found = (n, best[0], g_lo, g_hi, best[1])
                    break
            if found is None:
                row[label] = "not reached in the measured range"
            else:
                n, t_s, g_lo, g_hi, variant = found
                gram_txt = fmt_time(g_lo) if g_hi == g_lo else f"> {fmt_time(g_lo)} (stopped)"
                row[label] = (f"n = {int(n)} ({variant}: {fmt_time(t_s)} vs gn_gram "
                              f"{gram_txt})")
        out.append(row)
    return pd.DataFrame(out, columns=cols)


ENV_KEYS = ["device", "device_name", "cpu_capability", "cpu_flags", "hostname", "dtype",
            "threads", "launcher", "parallel_jobs", "git_commit", "git_dirty", "torch_version"]


def kernel_routes(cells: pd.DataFrame) -> pd.DataFrame:
    """Which route each product with the pattern D took (harness/linalg/kernels.py), in how many
    cells and over which sizes: the routes are chosen by measurement per machine and shape,
    so a report says what its times were made with."""
    cols = ["device", "product", "route", "cells", "n", "m"]
    if "kernel_routes" not in cells or not cells["kernel_routes"].notna().any():
        return pd.DataFrame(columns=cols)
    rows = []
    for r in cells[cells["kernel_routes"].notna()].itertuples(index=False):
        for part in str(r.kernel_routes).split(","):
            product, _, route = part.partition("=")
            rows.append({"device": r.device, "product": product, "route": route, "n": r.n,
                         "m": r.m})
    frame = pd.DataFrame(rows)
    out = frame.groupby(["device", "product", "route"]).agg(
        cells=("n", "size"), n_lo=("n", "min"), n_hi=("n", "max"), m_lo=("m", "min"),
        m_hi=("m", "max")).reset_index()
    out["n"] = [f"{int(a)}–{int(b)}" if a != b else f"{int(a)}" for a, b in
                zip(out["n_lo"], out["n_hi"])]
    out["m"] = [f"{int(a)}–{int(b)}" if a != b else f"{int(a)}" for a, b in
                zip(out["m_lo"], out["m_hi"])]
    return out[cols]


def environment(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Distinct environments with their cell counts, and warnings where they mix."""
    if not len(cells):
        return pd.DataFrame(columns=ENV_KEYS + ["cells"]), []
    env = cells.reindex(columns=ENV_KEYS).copy()
    env["launcher"] = env["launcher"].fillna("not recorded")
    env["parallel_jobs"] = [("–" if v is None or v != v else str(int(v)) if isinstance(
        v, (int, float)) else str(v)) for v in env["parallel_jobs"]]
    env["threads"] = [("–" if v is None or v != v else str(int(v)) if isinstance(
        v, (int, float)) else str(v)) for v in env["threads"]]
    env["git_commit"] = env["git_commit"].fillna("unknown").astype(str).str[:10]
    env = env.astype(str)
    table = env.groupby(ENV_KEYS, dropna=False).size().rename("cells").reset_index()
    warnings = []
    for device, g in env.groupby("device"):
        for col, what in (("hostname", "machines"), ("device_name", "processors"),
                          ("launcher", "launchers"), ("threads", "thread counts"),
                          ("parallel_jobs", "numbers of parallel jobs")):
            vals = sorted(g[col].unique())
            if col in ("parallel_jobs", "threads"):
                vals = [v for v in vals if v != "–"]  # unknown is not a second value
            if len(vals) > 1:
                warnings.append(f"{device} runs mix {what}: {', '.join(vals)}. Timings from "
                                "different settings are compared in the same figures.")
    commits = sorted(env["git_commit"].unique())
    if len(commits) > 1:
        warnings.append(f"runs come from {len(commits)} commits: {', '.join(commits)}")
    if (env["git_dirty"] == "True").any():
        warnings.append("some runs come from a checkout with uncommitted changes "
                        "(git_dirty = True)")
    return table, warnings


def problem_table(problems: list[Problem], cells: pd.DataFrame) -> pd.DataFrame:
    """Unreadable files, plus every cell that did not finish normally, with its reason."""
    out = [{"what": p.kind, "where": p.path, "detail": p.detail} for p in problems]
    if len(cells):
        bad = cells[cells["status"].isin(["skipped", "failed", "diverged"])
                    | ~cells["status"].isin(DONE + ("skipped", "failed"))]
        for r in bad.itertuples(index=False):
            out.append({"what": str(r.status), "where": str(r.cell),
                        "detail": str(r.reason or "")[:160]})
    return pd.DataFrame(out, columns=["what", "where", "detail"])


def decidable(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per registered claim: the least data its rule needs (written by the claim's
    registration in ``claims`` from the constants its rule uses, so the two cannot drift
    apart), what these cells have, and whether that minimum is met. Meeting it does not make a
    verdict (intervals may still be too wide); missing it means the claim reads *not enough
    data* whatever the numbers are."""
    from harness.reporting import claims as C

    inputs = C.ClaimInputs(cells, rows)
    out = []
    for spec in C.REGISTRY.values():
        least = spec.least_data(inputs)
        if least is None:
            continue
        needs, has, ok = least
        out.append({"claim": spec.id, "the rule needs at least": needs, "these data have": has,
                    "can decide": "yes" if ok else "no"})
    return pd.DataFrame(out)


def sketch_accuracy(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Claim C4 per gn_sketch variant: its inner (CG) tolerance, whether that meets the
    paper's accuracy requirement as the harness reads it (tol ≤ ``claims.C4_PAPER_TOL``,
    docs/model.md), its pairs with an exact Gauss–Newton run of the same problem and seed,
    iterations to ε beside the partner's, whether it keeps the theorem's rate, and the
    trajectory gap (a diagnostic)."""
    from harness.reporting.claims.c4 import variant_rates

    table = variant_rates(cells, rows) if len(cells) else pd.DataFrame()
    if not len(table):
        return table
    word = {True: "yes", False: "**no**"}
    table["meets the paper's accuracy"] = [
        "yes" if v else "no (looser)" for v in table["meets the paper's accuracy"]]
    table["keeps the rate"] = [word.get(v, "open") for v in table["keeps the rate"]]
    table["trajectory gap (decades, median)"] = [
        f"{v:.2f}" for v in table["trajectory gap (decades, median)"]]
    return table.rename(columns={"bound": "iterations allowed (max of exact, theorem)"})
