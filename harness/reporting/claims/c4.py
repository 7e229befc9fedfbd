"""Claim C4 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd

from algorithms.gn_sketch import GNSketchParams
from harness.reporting.claims.common import (
    C4_AGREE,
    C4_DISAGREE,
    C4_MIN_PAIRS,
    C4_PAPER_TOL,
    C4_RATE,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim
from harness.reporting.metrics import with_model


def trajectory_gaps(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per gn_sketch run and its exact partner that reached ε: the largest gap in decades
    and the largest relative gap |L_s − L_e| / L_e over iterations where both are above ε
    (infinite when the gn_sketch run diverged)."""
    out = []
    if not len(rows):
        return pd.DataFrame(out)
    key = with_model(["dataset", "data_params", "n", "m", "d", "seed", "dtype", "device"], cells)
    ok = cells[cells["data_ok"].astype(bool)]
    exact = ok[ok["algorithm"].isin(["gn_gram", "gn_exact"]) & ok["iters_to_target"].notna()]
    by_cell = {c: g.set_index("iter")["rel_loss"] for c, g in rows.groupby("cell")}
    for r in ok[ok["algorithm"] == "gn_sketch"].itertuples(index=False):
        match = exact
        for k in key:
            match = match[match[k] == getattr(r, k)]
        if not len(match):
            continue
        match = match.sort_values("algorithm", ascending=False)  # gn_gram before gn_exact
        partner = match.iloc[0]
        s, e = by_cell.get(r.cell), by_cell.get(partner["cell"])
        if s is None or e is None:
            continue
        both = pd.concat([s, e], axis=1, keys=["s", "e"]).dropna()
        both = both[(both.index > 0) & (both["s"] > r.target) & (both["e"] > r.target)]
        diverged = r.status == "diverged"
        if not len(both) and not diverged:
            continue
        dec = np.abs(np.log10(both["s"] / both["e"])) if len(both) else pd.Series([0.0])
        rel = (np.abs(both["s"] - both["e"]) / both["e"]) if len(both) else pd.Series([0.0])
        out.append({"variant": r.variant, "tol": inner_tol(r.hyperparameters),
                    "target": float(r.target), "partner": partner["algorithm"], "n": r.n, "m": r.m,
                    "seed": r.seed, "sketch_status": r.status,
                    "sketch_reached": r.iters_to_target == r.iters_to_target,
                    "gap_decades": float("inf") if diverged else float(dec.max()),
                    "max_rel_gap": float("inf") if diverged else float(rel.max()),
                    "iters_sketch": r.iters_to_target,
                    "iters_run": getattr(r, "iters_lower_bound", np.nan),
                    "iters_exact": partner["iters_to_target"]})
    return pd.DataFrame(out)


def _needs_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str, bool]:
    try:
        pairs = len(trajectory_gaps(cells, rows)) if len(cells) else 0
    except Exception:  # odd data: the claims check reports it
        pairs = 0
    return (f"{C4_MIN_PAIRS} gn_sketch runs with an exact partner (same problem and seed) "
            f"that reached ε", f"{pairs} pairs", pairs >= C4_MIN_PAIRS)


def inner_tol(hyperparameters) -> float:
    """The CG tolerance a gn_sketch run used: its recorded ``tol``, else the method's
    default."""
    try:
        params = json.loads(hyperparameters) if isinstance(hyperparameters, str) else {}
    except ValueError:
        params = {}
    tol = params.get("tol")
    if tol is None:
        defaults = {f.name: f.default for f in dataclasses.fields(GNSketchParams)}
        tol = defaults["tol"]
    return float(tol)


def paper_iterations(target: float) -> int:
    """The iterations to a relative loss ``target`` at the theorem's rate: the residual
    norm times C4_RATE per step, so the loss times C4_RATE² (10 at ε = 1e-6)."""
    return int(math.ceil(math.log(1.0 / target) / math.log(1.0 / C4_RATE**2) - 1e-9))


def meets_paper_accuracy(tol: float) -> bool:
    return tol <= C4_PAPER_TOL


def rate_pairs(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per pair, whether the gn_sketch run kept the rate: True when it reached ε in no more
    iterations than the larger of its exact partner's and the theorem's bound; False when it
    needed more, diverged, or ran past the bound without reaching ε; None when it stopped
    (max_iters, time budget) before the bound: evidence of the cap only."""
    if not len(gaps):
        return gaps.assign(bound=pd.Series(dtype=float), keeps=pd.Series(dtype=object))
    bound = [max(float(e) if e == e else 0.0, paper_iterations(t))
             for e, t in zip(gaps["iters_exact"], gaps["target"])]
    keeps = []
    for r, b in zip(gaps.itertuples(index=False), bound):
        if r.sketch_reached:
            keeps.append(bool(r.iters_sketch <= b))
        elif r.sketch_status == "diverged" or (r.iters_run == r.iters_run and r.iters_run > b):
            keeps.append(False)
        else:
            keeps.append(None)
    return gaps.assign(bound=bound, keeps=pd.Series(keeps, index=gaps.index, dtype=object))


def variant_rates(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per gn_sketch variant with exact partners: its inner tolerance, whether that
    meets the paper's accuracy requirement (tol ≤ C4_PAPER_TOL), its pairs, iterations to
    ε beside the exact partner's, whether it keeps the rate (all pairs: yes; more than half
    failing: no; else open, as are variants with fewer than C4_MIN_PAIRS pairs) and the
    trajectory diagnostic (median largest gap in decades)."""
    gaps = rate_pairs(trajectory_gaps(cells, rows))
    out = []
    for variant, g in gaps.groupby("variant") if len(gaps) else []:
        tol = float(g["tol"].max())
        failed = int((g["keeps"] == False).sum())  # noqa: E712 (None is open)
        kept = int((g["keeps"] == True).sum())  # noqa: E712
        if len(g) < C4_MIN_PAIRS:
            keeps = None
        else:
            keeps = True if kept == len(g) else (False if failed > len(g) / 2 else None)
        its = g.dropna(subset=["iters_sketch", "iters_exact"])
        out.append({"variant": variant, "inner tol": tol,
                    "meets the paper's accuracy": meets_paper_accuracy(tol),
                    "pairs": len(g), "pairs keeping the rate": kept,
                    "iterations to ε (sketch / exact)":
                        f"{its['iters_sketch'].median():g} / {its['iters_exact'].median():g}"
                        if len(its) else "–",
                    "bound": int(g["bound"].max()), "keeps the rate": keeps,
                    "trajectory gap (decades, median)": float(g["gap_decades"].median())})
    return pd.DataFrame(out)


@claim("C4", statement="gn_sketch keeps the convergence rate of exact Gauss–Newton to ε (the "
                       "rate BPSW21 prove, given a sufficiently good inner solve), per variant",
       rule="Pair each gn_sketch run with the gn_gram (else gn_exact) run of the same problem "
            "and seed that reached ε (diverged or capped partners give no pair). A pair keeps "
            "the rate when the gn_sketch run reached ε in no more iterations than the larger "
            "of its partner's and the theorem's ⌈ln(1/ε)/ln(1/{C4_RATE:g}²)⌉ (the residual "
            "norm times {C4_RATE:g} per step). Per variant with ≥{C4_MIN_PAIRS} pairs: keeps "
            "the rate if every pair does, fails if more than half do not. A variant meets the "
            "paper's accuracy requirement when its CG tolerance is ≤ {C4_PAPER_TOL:g}. "
            "Contradicted if a variant that meets it fails; supported if some variant keeps "
            "the rate and none that meets it fails. Diagnostic per variant, never a verdict: "
            "the largest gap |log10(L_sketch/L_exact)| while both are above ε (follows the "
            "exact trajectory at ≤ {C4_AGREE:g} decades, apart above {C4_DISAGREE:g}).",
       constants={"C4_MIN_PAIRS": C4_MIN_PAIRS, "C4_RATE": C4_RATE,
                  "C4_PAPER_TOL": C4_PAPER_TOL, "C4_AGREE": C4_AGREE,
                  "C4_DISAGREE": C4_DISAGREE},
       needs=_needs_c4)
def check_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str]:
    table = variant_rates(cells, rows)
    pairs = int(table["pairs"].sum()) if len(table) else 0
    if pairs < C4_MIN_PAIRS:
        return UNDECIDED, (f"{pairs} gn_sketch run(s) with an exact GN partner that "
                           f"reached ε (same problem and seed); the rule needs {C4_MIN_PAIRS}")
    ev = [f"{pairs} pairs"]
    for r in table.itertuples(index=False):
        state = {True: "keeps the rate", False: "fails the rate"}.get(r[7], "open")
        meets = "meets" if r[2] else "looser than"
        gap = r[8]
        follows = ("follows the exact trajectory" if gap <= C4_AGREE else
                   "apart from the exact trajectory" if gap > C4_DISAGREE else "between")
        ev.append(f"{r[0]} (tol {r[1]:g}: {meets} the paper's accuracy): {r[4]} of {r[3]} "
                  f"pairs within the bound {r[6]}, iterations to ε {r[5]}: {state}; "
                  f"diagnostic: median gap {gap:.2f} decades ({follows})")
    fails = table[(table["keeps the rate"] == False)  # noqa: E712 (None is open)
                  & table["meets the paper's accuracy"].astype(bool)]
    keeps = table[table["keeps the rate"] == True]  # noqa: E712
    if len(fails):
        verdict = CONTRADICTED
    elif len(keeps):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
        ev.append(f"no variant with ≥{C4_MIN_PAIRS} pairs all keeping the rate")
    return verdict, "; ".join(ev)
