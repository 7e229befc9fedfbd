"""Claim C3 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.reporting import fits
from harness.reporting.claims.common import (
    CAP_FACTOR,
    FIT_CONSTANTS,
    FIT_RULE,
    FLAT_MAX,
    finished,
    most_sizes,
    slices,
    slope_in_n,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim


def _cap_at_large_n(stuck: pd.DataFrame, free: pd.DataFrame) -> bool:
    """Every stuck run sits at an n above all unstuck ones, and the unstuck runs needed at
    most max_inner / CAP_FACTOR inner iterations: the count went from well below the cap to
    the cap as n grew."""
    if not len(free) or stuck["n"].min() <= free["n"].max():
        return False
    caps = [json.loads(h).get("max_inner") if isinstance(h, str) else None
            for h in stuck["hyperparameters"]]
    caps = [c for c in caps if c]
    cap = min(caps) if caps else free["mean_inner_iters"].max() * CAP_FACTOR * 2
    return bool(free["mean_inner_iters"].max() * CAP_FACTOR <= cap)


def _needs_c3(cells: pd.DataFrame) -> tuple[str, str, bool]:
    have = most_sizes(finished(cells), ["gn_sketch"], "n", "m")
    return (f"{fits.MIN_SIZES} sizes n at one m for gn_sketch", f"{have} sizes n",
            have >= fits.MIN_SIZES)


@claim("C3", statement="sketch preconditioning makes the inner iteration count independent "
                       "of n",
       rule="Per gn_sketch variant and slice: runs with any step whose CG stopped at "
            "max_inner are stuck and left out of the fit; log-log slope of mean inner "
            "iterations vs n over the rest (" + FIT_RULE + "). A slice grows if its interval "
            "lies above {FLAT_MAX}, or if its stuck runs are all at sizes n above every "
            "unstuck size while the unstuck runs stay below max_inner/{CAP_FACTOR:g} (the cap "
            "reached only at large n is growth, not noise); a run stuck at the smallest n "
            "is evidence of the cap only. Supported if some variant has ≥1 fitted slice, no "
            "stuck run, and every slope interval below {FLAT_MAX}; contradicted if every "
            "variant that decides has a growing slice. gn_cg's slope is shown for contrast.",
       constants={"FLAT_MAX": FLAT_MAX, "CAP_FACTOR": CAP_FACTOR, **FIT_CONSTANTS},
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
                free = s[~s["_stuck"]]
                if len(stuck):
                    stuck_any = True
                    at = sorted(int(x) for x in stuck["n"].unique())
                    if s["n"].nunique() >= fits.MIN_SIZES and _cap_at_large_n(stuck, free):
                        grows.append(True)
                        flats.append(False)
                        ev.append(f"{where}: inner solve stopped at max_inner at n={at} only, "
                                  f"above every n where it converged (at most "
                                  f"{free['mean_inner_iters'].max():.1f} iterations): grows")
                    else:
                        ev.append(f"{where}: inner solve stopped at max_inner at n={at} "
                                  f"(evidence of the cap only)")
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
