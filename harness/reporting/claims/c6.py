"""Claim C6 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from harness.reporting import crossover
from harness.reporting.claims.common import (
    C6_MIN_CELLS,
    C6_MIN_GROWTH_CELLS,
    C6_MIN_RATIOS,
    SLICE_KEYS,
    finished,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim


def _growth(comp: pd.DataFrame) -> tuple[float, float, float, int] | None:
    """OLS slope of log(E/S) against log(m/n) over the cells with exact ratios, with its 95%
    t-interval: (slope, low, high, cells); None with too few cells or values of m/n."""
    exact = comp[comp["kind"] == "exact"]
    if len(exact) < C6_MIN_GROWTH_CELLS or exact["m_over_n"].nunique() < C6_MIN_RATIOS:
        return None
    x = np.log(exact["m_over_n"].to_numpy(float))
    y = np.log(exact["ratio"].to_numpy(float))
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half), len(x)


def _cell_text(r) -> str:
    sign = {"exact": "", "lower bound": "≥", "upper bound": "≤", "undecided": "?"}[r.kind]
    return f"(n={int(r.n)}, m={int(r.m)}): {sign}{r.ratio:.2g}"


def _needs_c6(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = finished(cells)
    grid, ratios = 0, 0
    if len(done):
        keys = SLICE_KEYS + ["n", "m"]
        sk = done[done["algorithm"] == crossover.SKETCH_METHOD]
        ex = done[done["algorithm"].isin(crossover.EXACT_BASELINES)]
        both = sk[keys].drop_duplicates().merge(ex[keys].drop_duplicates())
        if len(both):
            per_slice = both.groupby(SLICE_KEYS)
            grid = int(per_slice.size().max())
            ratios = int(per_slice.apply(lambda g: (g["m"] / g["n"]).nunique()).max())
    return (f"{C6_MIN_CELLS} (n, m) cells with gn_sketch and an exact-Gram baseline, "
            f"{C6_MIN_RATIOS} values of m/n", f"{grid} cells, {ratios} values of m/n",
            grid >= C6_MIN_CELLS and ratios >= C6_MIN_RATIOS)


@claim("C6", statement="wall-clock time to ε: the sketched step beats the exact Gram step where "
                       "m ≫ n ≫ d, by a margin that grows with m/n",
       rule="On the (n, m) grid of the crossover sweep (the slice with most cells): per cell, "
            "E/S = the best exact-Gram baseline ({EXACT_BASELINES}) over the best gn_sketch "
            "variant, in time to ε (median over seeds). A run that stopped before ε gives a "
            "lower bound, so E/S is a number, a lower bound (E stopped), an upper bound (S "
            "stopped) or open (both); only a bound on the right side of 1 decides a cell. The "
            "rule needs ≥{C6_MIN_CELLS} cells. Supported if gn_sketch surely wins some cell "
            "and its margin grows with m/n: the 95% interval of the slope of log(E/S) against "
            "log(m/n), over ≥{C6_MIN_GROWTH_CELLS} cells with exact ratios and "
            "≥{C6_MIN_RATIOS} values of m/n, lies above 0. Contradicted if it surely loses "
            "every cell and the calibrated cost model predicts no win within the memory "
            "budget; otherwise not enough data.",
       constants={"EXACT_BASELINES": crossover.EXACT_BASELINES, "C6_MIN_CELLS": C6_MIN_CELLS,
                  "C6_MIN_GROWTH_CELLS": C6_MIN_GROWTH_CELLS, "C6_MIN_RATIOS": C6_MIN_RATIOS},
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
    growth = _growth(comp)
    if growth:
        ev.append(f"slope of log(E/S) vs log(m/n): {growth[0]:.2f} [{growth[1]:.2f}, "
                  f"{growth[2]:.2f}] over {growth[3]} cells")
    if prediction:
        ev.append(f"cost model: {prediction.get('text', '')}")
    if len(comp) < C6_MIN_CELLS:
        ev.append(f"{len(comp)} cells compared: the rule needs {C6_MIN_CELLS}")
        verdict = UNDECIDED
    elif len(wins):
        verdict = SUPPORTED if growth and growth[1] > 0 else UNDECIDED
        if verdict == UNDECIDED:
            ev.append("the sketch wins somewhere, but the growth of its margin with m/n is "
                      "not established")
    elif len(losses) == len(comp):
        verdict = _c6_all_lost(prediction, ev)
    else:
        verdict = UNDECIDED
    return verdict, "; ".join(ev)


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
