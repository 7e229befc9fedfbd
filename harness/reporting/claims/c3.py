"""Claim C3 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.reporting import fits
from harness.reporting.claims.common import (
    FIT_CONSTANTS,
    FIT_RULE,
    FLAT_MAX,
    finished,
    most_sizes,
    slices,
    slope_in_n,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim


def _needs_c3(cells: pd.DataFrame) -> tuple[str, str, bool]:
    have = most_sizes(finished(cells), ["gn_sketch"], "n", "m")
    return (f"{fits.MIN_SIZES} sizes n at one m for gn_sketch", f"{have} sizes n",
            have >= fits.MIN_SIZES)


@claim("C3", statement="sketch preconditioning makes the inner iteration count independent "
                       "of n",
       rule="Per gn_sketch variant and slice: runs with any step whose CG stopped at "
            "max_inner are stuck (evidence of the cap only) and left out; log-log slope of "
            "mean inner iterations vs n over the rest (" + FIT_RULE + "). Supported if some "
            "variant has ≥1 fitted slice, no stuck run, and every slope interval below "
            "{FLAT_MAX}; contradicted if every fitted variant has a slice whose interval lies "
            "above {FLAT_MAX}. gn_cg's slope is shown for contrast.",
       constants={"FLAT_MAX": FLAT_MAX, **FIT_CONSTANTS},
       needs=_needs_c3)
def check_c3(cells: pd.DataFrame) -> tuple[str, str]:
    ev, flat_variants, grow_variants, fitted_variants = [], [], [], []
    done = cells[cells["status"].isin(("converged", "max_iters", "time_budget"))
                 & cells["mean_inner_iters"].notna()]
    capped_col = done["inner_capped_frac"] if "inner_capped_frac" in done else \
        pd.Series(np.nan, index=done.index)
    done = done.assign(_stuck=capped_col.fillna(0) > 0)
    for alg in ("gn_sketch", "gn_cg"):
        for variant, g in done[done["algorithm"] == alg].groupby("variant"):
            flats, grows, stuck_any = [], [], False
            for key, s in slices(g, "m"):
                where = f"{variant} ({key[1]}, m={int(key[-1])})"
                stuck = s[s["_stuck"]]
                if len(stuck):
                    stuck_any = True
                    ev.append(f"{where}: inner solve stopped at max_inner at "
                              f"n={sorted(int(x) for x in stuck['n'].unique())} (evidence of "
                              f"the cap only)")
                free = s[~s["_stuck"]]
                if free["n"].nunique() < fits.MIN_SIZES:
                    continue
                fit = slope_in_n(free, "mean_inner_iters", f"{where}: inner iterations",
                                  lambda v: f"{v:.1f}", ev)
                if fit is None:
                    continue
                flats.append(fit.hi < FLAT_MAX)
                grows.append(fit.lo > FLAT_MAX)
            if alg == "gn_sketch" and flats:
                fitted_variants.append(variant)
                if all(flats) and not stuck_any:
                    flat_variants.append(variant)
                if any(grows):
                    grow_variants.append(variant)
    if flat_variants:
        verdict = SUPPORTED
    elif fitted_variants and len(grow_variants) == len(fitted_variants):
        verdict = CONTRADICTED
    else:
        verdict = UNDECIDED
        if not fitted_variants:
            ev.append(f"no gn_sketch variant with a deciding slope (inner iterations below "
                      f"the cap at ≥{fits.MIN_SIZES} sizes n)")
    return verdict, "; ".join(ev)
