"""Claim C2 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import pandas as pd

from harness.reporting import fits
from harness.reporting.claims.common import (
    C2_LEADING_IN_N,
    C2_METHODS,
    FIT_CONSTANTS,
    FIT_RULE,
    finished,
    most_sizes,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim


def _leading_terms(table: pd.DataFrame) -> set[str]:
    return {t.strip() for terms in table["term"].dropna() for t in str(terms).split("→")}


def _needs_c2(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = finished(cells)
    in_n = min((most_sizes(done, [a], "n", "m") for a in C2_METHODS), default=0)
    in_m = min((most_sizes(done, [a], "m", "n") for a in C2_METHODS), default=0)
    k = fits.MIN_SIZES
    return (f"{k} sizes n at one m and {k} widths m at one n, for each of "
            f"{', '.join(C2_METHODS)}", f"{in_n} sizes n, {in_m} widths m (fewest over them)",
            in_n >= k and in_m >= k)


@claim("C2", statement="time per iteration: gn_exact ~ n²md, gn_gram ~ n²(m+d), gn_sketch ~ "
                       "nmd + n³, gd ~ nmd",
       rule="Fit time per iteration (amortised: mean over all steps, refreshes included) vs n "
            "and vs m (" + FIT_RULE + "), against the slope θ of the method's cost model over the "
            "same cells (every term, with the measured inner iterations k and refresh share "
            "f). A fit agrees when its interval lies within θ ± {TOLERANCE:g}, disagrees when "
            "it lies wholly outside. A method agrees in n (m) when it has ≥1 deciding fit and "
            "all its deciding fits agree. Contradicted if any deciding fit of {C2_METHODS} "
            "disagrees; supported if each of them agrees in n and in m, with these terms "
            "leading somewhere in their fits in n: {C2_LEADING_IN_N}.",
       constants={"TOLERANCE": fits.TOLERANCE, "C2_METHODS": C2_METHODS,
                  "C2_LEADING_IN_N": C2_LEADING_IN_N, **FIT_CONSTANTS},
       needs=_needs_c2)
def check_c2(fits_n: pd.DataFrame, fits_m: pd.DataFrame) -> tuple[str, str]:
    ev, agree, disagree, missing = [], [], [], []
    for var, table in (("n", fits_n), ("m", fits_m)):
        table = table if table is not None else pd.DataFrame(columns=fits.FIT_COLUMNS)
        for alg in C2_METHODS:
            mine = table[table["algorithm"] == alg]
            deciding = mine[mine["agrees"].notna()]
            for r in mine.itertuples():
                state = {True: "agrees", False: "disagrees"}.get(r.agrees, "decides nothing")
                ev.append(f"{alg} in {var}: {r.slope:.2f} [{r.lo:.2f}, {r.hi:.2f}] vs model "
                          f"{r.theory:.2f} ({r.term}; {r.range}, {r.fixed}, {r.device}): "
                          f"{state}")
            if not len(deciding):
                missing.append(f"{alg} in {var}: no deciding fit")
                continue
            ok = deciding["agrees"].astype(bool)
            if not ok.all():
                disagree.append(f"{alg} in {var}")
                continue
            need = C2_LEADING_IN_N.get(alg, ()) if var == "n" else ()
            absent = [t for t in need if t not in _leading_terms(deciding)]
            if absent:
                missing.append(f"{alg} in n: term(s) {', '.join(absent)} never lead in a "
                               f"deciding fit")
            else:
                agree.append(f"{alg} in {var}")
    if disagree:
        verdict = CONTRADICTED
        ev.insert(0, f"disagree: {', '.join(disagree)}")
    elif len(agree) == 2 * len(C2_METHODS):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    ev += missing
    return verdict, "; ".join(ev)
