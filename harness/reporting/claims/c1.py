"""Claim C1 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import json

import pandas as pd

from harness.execution.results import DONE_STATUSES as DONE
from harness.reporting import fits
from harness.reporting.claims.common import (
    C1_GROWTH,
    C1_SLACK,
    CAP_FACTOR,
    FLAT_MAX,
    GD_GROWTH,
    decides,
    family,
    finished,
    fmt_fit,
    most_sizes,
    slices,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim


def _full_batch(row) -> bool:
    """False for a mini-batch run (``batch_size`` < n): a stochastic method, whatever its
    family, is not a full-batch Gauss–Newton step and does not speak to C1."""
    try:
        params = json.loads(row["hyperparameters"]) if isinstance(row["hyperparameters"], str) \
            else {}
    except ValueError:
        params = {}
    batch = params.get("batch_size")
    return batch is None or batch >= row["n"]


def _c1_gauss_newton(done: pd.DataFrame, ev: list[str]) -> tuple[bool, list[bool]]:
    """The full-batch GN variants' slopes of iterations to ε in n, and their max_iters
    bounds: (contradicted?, per deciding slope: is it flat?); evidence goes to ``ev``."""
    contra, flat = False, []
    gn = done[[(family(a) == "gauss_newton") and _full_batch(row)
               for a, (_, row) in zip(done["algorithm"], done.iterrows())]]
    for variant, g in gn.groupby("variant"):
        conv = g[g["iters_to_target"].notna()]
        for key, s in slices(conv, "m"):
            if s["n"].nunique() < fits.MIN_SIZES:
                if s["n"].nunique() > 1:  # single-size slices (m sweeps) are not news
                    ev.append(f"{variant} ({key[1]}, m={int(key[-1])}): reached ε at only "
                              f"{s['n'].nunique()} sizes n")
                continue
            where = f"{variant} ({key[1]}, m={int(key[-1])})"
            state = integer_growth(s, where, ev)
            if state is False:
                contra = True
            flat.append(state is True)
        capped = g[(g["censor"] == "max_iters") & g["iters_lower_bound"].notna()]
        if len(capped) and len(conv) and \
                capped["iters_lower_bound"].max() > CAP_FACTOR * conv["iters_to_target"].max():
            contra = True
            top = int(capped["iters_lower_bound"].max())
            at = sorted(int(x) for x in capped["n"])
            ev.append(f"{variant}: stopped by max_iters at ≥{top} iterations (n={at}) while its "
                      f"converged runs needed ≤{int(conv['iters_to_target'].max())}")
    return contra, flat


def integer_growth(s: pd.DataFrame, where: str, ev: list[str]) -> bool | None:
    """The iterations to ε of one slice, median over seeds per n, then the median over the
    smaller half of the sizes (K_lo) and over the larger half (K_hi; the middle size of an
    odd count in both), so that one size cannot decide: True (bounded) when K_hi ≤ K_lo +
    C1_SLACK; False (grows) when K_hi ≥ C1_GROWTH·K_lo and K_hi − K_lo > C1_SLACK, or when
    the counts are large enough for their log-log slope to decide and its interval lies
    above FLAT_MAX; None between."""
    per_n = s.groupby("n")["iters_to_target"].median().sort_index()
    half = (len(per_n) + 1) // 2
    first = float(per_n.iloc[:half].median())
    last = float(per_n.iloc[len(per_n) - half:].median())
    rise = last - first
    fit = fits.fit_loglog(s["n"], s["iters_to_target"], n_boot=1000)
    counts = ", ".join(f"{v:g}" for v in per_n)
    text = (f"{where}: iterations {counts} over n={int(per_n.index[0])}–"
            f"{int(per_n.index[-1])} (slope {fmt_fit(fit)})")
    halves = f"; median {first:g} over the smaller sizes, {last:g} over the larger"
    if rise <= C1_SLACK:
        ev.append(text + halves + ": bounded")
        return True
    if last >= C1_GROWTH * first and rise > C1_SLACK:
        ev.append(text + halves + f": grows (≥ {C1_GROWTH:g}×)")
        return False
    if decides(fit) and fit.lo > FLAT_MAX:
        ev.append(text + halves + f": grows (slope interval above {FLAT_MAX})")
        return False
    ev.append(text + ": neither bounded nor doubled")
    return None


def _c1_gd(done: pd.DataFrame, ev: list[str]) -> tuple[bool, bool | None]:
    """gd's iterations at its smallest and largest n per slice: (contradicted?, grows?: None
    when no slice decides); evidence goes to ``ev``."""
    contra, gd_grows = False, None
    for key, s in slices(done[done["algorithm"] == "gd"], "m"):
        if s["n"].nunique() < 2:
            continue
        k = s["iters_to_target"].fillna(s["iters_lower_bound"])  # NaN: diverged, no bound
        exact = s["iters_to_target"].notna()
        lo_n, hi_n = s["n"].min(), s["n"].max()
        at_lo, at_hi = s["n"] == lo_n, s["n"] == hi_n
        k_lo, k_hi = k[at_lo].median(), k[at_hi].median()
        where = f"gd ({key[1]}, m={int(key[-1])})"
        if k_lo != k_lo or k_hi != k_hi or not exact[at_lo].all():
            ev.append(f"{where}: smallest n={int(lo_n)} did not reach ε or largest "
                      f"n={int(hi_n)} has no bound: does not decide")
            continue
        bound = "" if exact[at_hi].all() else "≥"
        ev.append(f"{where}: {k_lo:g} iterations at n={int(lo_n)}, {bound}{k_hi:g} at "
                  f"n={int(hi_n)} ({k_hi / k_lo:.2f}×)")
        if exact[at_hi].all() and k_hi <= k_lo:
            gd_grows, contra = False, True
        elif k_hi >= GD_GROWTH * k_lo:
            gd_grows = True if gd_grows is None else gd_grows
        else:
            ev.append(f"{where}: growth below {GD_GROWTH}×"
                      + (" (a lower bound: the cap, not the method)" if bound else ""))
    return contra, gd_grows


def _needs_c1(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = finished(cells)
    gn = [a for a in done["algorithm"].unique() if family(a) == "gauss_newton"] \
        if len(done) else []
    have = most_sizes(done, gn, "n", "m")
    return (f"{fits.MIN_SIZES} sizes n at one m for a Gauss–Newton-type method, gd at 2 sizes",
            f"{have} sizes n", have >= fits.MIN_SIZES)


@claim("C1", statement="GN-type methods reach ε in O(log 1/ε) iterations independent of n; GD "
                       "needs iterations growing with n/λ",
       rule="Per full-batch Gauss–Newton-type variant (batch_size < n excluded) and slice "
            "(same m, data, device), over the runs that reached ε at ≥{MIN_SIZES} sizes n: "
            "the iterations to ε per n (median over seeds), small integers ⌈ln(1/ε)/ln(1/ρ)⌉ "
            "for a per-step contraction ρ; K_lo, K_hi: their medians over the smaller and "
            "the larger half of the sizes. Bounded if K_hi ≤ K_lo + {C1_SLACK} (one rounding "
            "step); grows if K_hi ≥ {C1_GROWTH:g}·K_lo and K_hi − K_lo > {C1_SLACK} (ln(1/ρ) "
            "halved), or if the log-log slope of the counts in n has a 95% interval at most "
            "{MAX_CI_WIDTH:g} wide lying above {FLAT_MAX}. Runs stopped by max_iters give "
            "lower bounds; diverged runs give nothing. Contradicted if a GN slice grows, or "
            "a GN run's max_iters lower bound is over {CAP_FACTOR:g}× what its converged "
            "runs needed, or gd (converged at both ends) needs no more iterations at the "
            "largest n than at the smallest. Supported if ≥1 GN slice decides, every GN "
            "slice is bounded, and gd's iterations grow ≥{GD_GROWTH}× from the smallest n "
            "(reached ε) to the largest (a lower bound counts).",
       constants={"MIN_SIZES": fits.MIN_SIZES, "C1_SLACK": C1_SLACK, "C1_GROWTH": C1_GROWTH,
                  "MAX_CI_WIDTH": fits.MAX_CI_WIDTH, "FLAT_MAX": FLAT_MAX,
                  "CAP_FACTOR": CAP_FACTOR, "GD_GROWTH": GD_GROWTH},
       needs=_needs_c1)
def check_c1(cells: pd.DataFrame) -> tuple[str, str]:
    ev: list[str] = []
    done = cells[cells["status"].isin(DONE)]
    gn_contra, flat = _c1_gauss_newton(done, ev)
    gd_contra, gd_grows = _c1_gd(done, ev)
    if gn_contra or gd_contra:
        verdict = CONTRADICTED
    elif flat and all(flat) and gd_grows:
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
        if not flat:
            ev.append(f"no GN-type variant has a bounded slice (reached ε at ≥{fits.MIN_SIZES} "
                      f"sizes n)")
        if gd_grows is None:
            ev.append(f"no gd slice shows growth ≥{GD_GROWTH}× from a converged smallest n")
    return verdict, "; ".join(ev) or "no runs"
