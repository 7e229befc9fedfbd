"""Claim C6 of the spec (§5): its rule and what it needs.

The cost terms (docs/reports.md, "How the constants follow from the cost models") make E/S,
the exact Gram step's time to ε over the sketched step's, grow about like n at fixed m/n and
rise in m at fixed n only until m ≈ n²/(k·d), where it levels off near n/(2(k+1)d). So the
growth is fitted along n, with one intercept per value of m/n, and m is shown, not tested.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from harness.reporting import crossover
from harness.reporting.claims.common import (
    C6_MIN_CELLS,
    C6_MIN_GROWTH_CELLS,
    C6_MIN_NS,
    C6_MIN_SEEDS,
    SLICE_KEYS,
    finished,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim

#: the unpreconditioned CG method, named in the evidence where it beats both
CG_METHOD = "gn_cg"


def within_groups_slope(comp: pd.DataFrame, along: str, group: str, min_cells: int,
                        min_sizes: int) -> tuple[float, float, float, int] | None:
    """OLS slope of log(E/S) against log(``along``) with one intercept per value of
    ``group``, over the cells with exact ratios in groups holding ≥ 2 values of ``along``,
    with its 95% t-interval: (slope, low, high, cells); None with fewer than ``min_cells``
    such cells, fewer than ``min_sizes`` values of ``along``, or no degree of freedom."""
    exact = comp[comp["kind"] == "exact"].copy()
    if not len(exact):
        return None
    exact["_g"] = exact[group].round(6)
    sizes = exact.groupby("_g")[along].transform("nunique")
    use = exact[sizes >= 2]
    groups = use["_g"].nunique()
    if len(use) < min_cells or use[along].nunique() < min_sizes or len(use) - groups - 1 < 1:
        return None
    x = np.log(use[along].to_numpy(float))
    y = np.log(use["ratio"].to_numpy(float))
    dummies = pd.get_dummies(use["_g"]).to_numpy(float)
    A = np.column_stack([x, dummies])
    beta, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ beta
    dof = len(y) - A.shape[1]
    cov = np.linalg.pinv(A.T @ A) * float(resid @ resid) / dof
    half = stats.t.ppf(0.975, dof) * np.sqrt(max(cov[0, 0], 0.0))
    return float(beta[0]), float(beta[0] - half), float(beta[0] + half), len(use)


def seed_ratios(cells: pd.DataFrame, comp: pd.DataFrame) -> pd.DataFrame:
    """Per compared cell: E/S seed by seed, between the cell's best exact baseline and its
    best sketch variant (the ones ``comp`` names), over the seeds where the sketch reached ε
    and the baseline reached it or stopped (a lower bound): columns n, m, seeds, low (the
    smallest ratio over the seeds), high."""
    grid = crossover.grid_slice(cells)
    out = []
    if not len(grid) or not len(comp):
        return pd.DataFrame(out, columns=["n", "m", "seeds", "low", "high"])
    grid = grid.assign(_method=crossover.method_names(grid).values)
    for r in comp.itertuples(index=False):
        here = grid[(grid["n"] == r.n) & (grid["m"] == r.m)]
        s = here[(here["_method"] == r.sketch) & here["time_to_target_s"].notna()]
        e = here[here["_method"] == r.baseline]
        e_time = e["time_to_target_s"].fillna(e["time_lower_bound_s"]) \
            if "time_lower_bound_s" in e else e["time_to_target_s"]
        s_by_seed = s.groupby("seed")["time_to_target_s"].min()
        e_by_seed = e.assign(_t=e_time)[lambda f: f["_t"].notna()].groupby("seed")["_t"].min()
        both = pd.concat([s_by_seed, e_by_seed], axis=1, keys=["s", "e"]).dropna()
        ratios = both["e"] / both["s"]
        out.append({"n": r.n, "m": r.m, "seeds": len(ratios),
                    "low": float(ratios.min()) if len(ratios) else np.nan,
                    "high": float(ratios.max()) if len(ratios) else np.nan})
    return pd.DataFrame(out, columns=["n", "m", "seeds", "low", "high"])


def _cg_faster(cells: pd.DataFrame) -> list[str]:
    """The cells where gn_cg reached ε before both the best sketch and the best exact
    baseline (medians over seeds)."""
    grid = crossover.grid_slice(cells)
    out = []
    if not len(grid):
        return out
    for (n, m), entries in crossover.cell_entries(grid).items():
        exact = {e.method: e.value for e in entries if e.kind == "exact"}
        cg = exact.get(CG_METHOD)
        rivals = [v for k, v in exact.items() if k.startswith(crossover.SKETCH_METHOD)
                  or k in crossover.EXACT_BASELINES]
        if cg is not None and rivals and cg < min(rivals):
            out.append(f"(n={n}, m={m}): {min(rivals) / cg:.2g}× before the next")
    return out


def _cell_text(r) -> str:
    sign = {"exact": "", "lower bound": "≥", "upper bound": "≤", "undecided": "?"}[r.kind]
    return f"(n={int(r.n)}, m={int(r.m)}): {sign}{r.ratio:.2g}"


def _needs_c6(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = finished(cells)
    grid, ns, seeds = 0, 0, 0
    if len(done):
        keys = SLICE_KEYS + ["n", "m"]
        sk = done[done["algorithm"] == crossover.SKETCH_METHOD]
        ex = done[done["algorithm"].isin(crossover.EXACT_BASELINES)]
        both = sk[keys].drop_duplicates().merge(ex[keys].drop_duplicates())
        if len(both):
            per_slice = both.groupby(SLICE_KEYS)
            grid = int(per_slice.size().max())
            ns = int(per_slice["n"].nunique().max())
            seeds = int(sk.merge(both)[[*keys, "seed"]].drop_duplicates()
                        .groupby(keys).size().max())
    return (f"{C6_MIN_CELLS} (n, m) cells with gn_sketch and an exact-Gram baseline at "
            f"{C6_MIN_NS} sizes n, {C6_MIN_SEEDS} seeds where the sketch wins",
            f"{grid} cells, {ns} sizes n, at most {seeds} seeds a cell",
            grid >= C6_MIN_CELLS and ns >= C6_MIN_NS and seeds >= C6_MIN_SEEDS)


@claim("C6", statement="wall-clock time to ε: the sketched step beats the exact Gram step where "
                       "m ≫ n ≫ d, by a margin that grows with n at fixed m/n (and levels off "
                       "in m at fixed n)",
       rule="On the (n, m) grid of the crossover sweep (the slice with most cells): per cell, "
            "E/S = the best exact-Gram baseline ({EXACT_BASELINES}) over the best gn_sketch "
            "variant, in time to ε (median over seeds). A run that stopped before ε gives a "
            "lower bound, so E/S is a number, a lower bound (E stopped), an upper bound (S "
            "stopped) or open (both); only a bound on the right side of 1 decides a cell. The "
            "rule needs ≥{C6_MIN_CELLS} cells. Growth: the OLS slope of log(E/S) against "
            "log n with one intercept per value of m/n, over ≥{C6_MIN_GROWTH_CELLS} cells "
            "with exact ratios in m/n groups of ≥ 2 sizes, ≥{C6_MIN_NS} sizes n, with its "
            "95% t-interval (the slope in m at fixed n is shown: a plateau is the theory). A "
            "sure win: ≥{C6_MIN_SEEDS} seeds whose E/S, seed by seed, are all above 1. "
            "Supported if the sketch surely wins some cell and the growth interval lies "
            "above 0; contradicted if the growth interval lies below 0 (the margin falls "
            "with n), or if it surely loses every cell and the calibrated cost model "
            "predicts no win within the memory budget; otherwise not enough data. gn_cg is "
            "named where it beats both.",
       constants={"EXACT_BASELINES": crossover.EXACT_BASELINES, "C6_MIN_CELLS": C6_MIN_CELLS,
                  "C6_MIN_GROWTH_CELLS": C6_MIN_GROWTH_CELLS, "C6_MIN_NS": C6_MIN_NS,
                  "C6_MIN_SEEDS": C6_MIN_SEEDS},
       needs=_needs_c6)
def check_c6(cells: pd.DataFrame, prediction: dict | None = None) -> tuple[str, str]:
    """C6 on the (n, m) grid (harness/reporting/crossover.py). ``prediction``: what the
    calibrated cost model says beyond the measured cells, ``{"predicted_win": bool,
    "text": str}`` (None: no profile, so a loss everywhere measured decides nothing)."""
    comp = crossover.sketch_vs_exact(cells, "time_to_target")
    if not len(comp):
        return UNDECIDED, ("no (n, m) grid with both a gn_sketch variant and an exact-Gram "
                           f"baseline ({', '.join(crossover.EXACT_BASELINES)})")
    wins = comp[comp["wins"] == True]  # noqa: E712 (None is undecided)
    losses = comp[comp["wins"] == False]  # noqa: E712
    open_ = comp[comp["wins"].isna()]
    ev = [f"E/S (exact-Gram baseline over best gn_sketch variant, > 1: the sketch wins) at "
          f"{len(comp)} cells; wins: " + (", ".join(_cell_text(r) for r in
                                                 wins.itertuples()) or "none")]
    if len(losses):
        worst = losses.sort_values("ratio").head(3)
        ev.append(f"losses at {len(losses)} cells (lowest: "
                  + ", ".join(_cell_text(r) for r in worst.itertuples()) + ")")
    if len(open_):
        ev.append(f"{len(open_)} cells left open by runs that stopped before ε")
    sure, thin = _sure_wins(cells, wins, ev)
    growth = within_groups_slope(comp, "n", "m_over_n", C6_MIN_GROWTH_CELLS, C6_MIN_NS)
    in_m = within_groups_slope(comp, "m", "n", 3, 2)
    if growth:
        ev.append(f"slope of log(E/S) vs log n at fixed m/n: {growth[0]:.2f} [{growth[1]:.2f}, "
                  f"{growth[2]:.2f}] over {growth[3]} cells")
    else:
        ev.append(f"no growth fit along n (needs {C6_MIN_GROWTH_CELLS} exact ratios in m/n "
                  f"groups of ≥ 2 sizes, {C6_MIN_NS} sizes n)")
    if in_m:
        ev.append(f"slope vs log m at fixed n (shown, not tested): {in_m[0]:.2f} "
                  f"[{in_m[1]:.2f}, {in_m[2]:.2f}]")
    cg = _cg_faster(cells)
    if cg:
        ev.append(f"{CG_METHOD} reaches ε first at " + ", ".join(cg))
    if prediction:
        ev.append(f"cost model: {prediction.get('text', '')}")
    if len(comp) < C6_MIN_CELLS:
        ev.append(f"{len(comp)} cells compared: the rule needs {C6_MIN_CELLS}")
        return UNDECIDED, "; ".join(ev)
    if growth and growth[2] < 0:
        ev.append("the margin falls with n at fixed m/n")
        return CONTRADICTED, "; ".join(ev)
    if sure and growth and growth[1] > 0:
        return SUPPORTED, "; ".join(ev)
    if len(losses) == len(comp):
        return _c6_all_lost(prediction, ev), "; ".join(ev)
    if len(wins) and not sure:
        ev.append(f"no sure win: the wins have fewer than {C6_MIN_SEEDS} seeds or a seed at "
                  f"or below 1 ({', '.join(thin)}); run those cells on ≥{C6_MIN_SEEDS} seeds")
    if sure and not (growth and growth[1] > 0):
        ev.append("the sketch surely wins somewhere, but the growth of its margin with n is "
                  "not established")
    return UNDECIDED, "; ".join(ev)


def _sure_wins(cells: pd.DataFrame, wins: pd.DataFrame, ev: list[str]
               ) -> tuple[list[str], list[str]]:
    """(the won cells whose every seed is a win on ≥ C6_MIN_SEEDS seeds, the won cells
    that are not), written to ``ev``."""
    per_seed = seed_ratios(cells, wins)
    sure, thin = [], []
    for r in per_seed.itertuples(index=False):
        text = f"(n={int(r.n)}, m={int(r.m)}): {r.seeds} seed(s)" + (
            f", lowest {r.low:.2g}" if r.seeds else "")
        (sure if r.seeds >= C6_MIN_SEEDS and r.low > 1 else thin).append(text)
    if sure:
        ev.append("sure wins (every seed above 1): " + ", ".join(sure))
    return sure, thin


def _c6_all_lost(prediction: dict | None, ev: list[str]) -> str:
    """The verdict when the sketch surely lost every cell: contradicted only when the cost
    model predicts no win beyond the measured cells either."""
    if prediction is not None and prediction.get("predicted_win") is False:
        return CONTRADICTED
    ev.append("slower in every cell measured; without a cost-model prediction of no win "
              "within the memory budget this is no verdict" if prediction is None
              else "slower in every cell measured, but the cost model predicts a win beyond "
              "them")
    return UNDECIDED
