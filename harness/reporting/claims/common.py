"""What several claim checks share: censoring conventions, slices of the grid, fits in n,
and the constants more than one rule reads."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from algorithms import ALGORITHMS
from harness.execution.results import DONE_STATUSES as DONE
from harness.reporting import fits
from harness.reporting.metrics import with_model

# Censoring, for every claim: a run that did not reach ε gives a lower bound on its iterations
# and time to ε (metrics: ``iters_lower_bound``, ``time_lower_bound_s``), never a value and
# never a ratio of 0; a step whose inner solve stopped at ``max_inner`` gives the cap, not a
# count; a claim is *supported* only with the minimum evidence its rule names.

#: C1, C3: a count is flat in n when the 95% interval of its log-log slope in n lies below
#: FLAT_MAX (at most 2.4× over the five octaves 64–2048), and grows when the interval lies
#: above it. The theory says flat (O(log 1/ε) iterations; O(log 1/tol) inner iterations);
#: unpreconditioned CG grows like √κ ~ n^0.5.
FLAT_MAX = 0.25
#: C1: outer iteration counts are small integers, K = ⌈ln(1/ε) / ln(1/ρ)⌉ for a per-step loss
#: contraction ρ that the theorems bound independently of n. A ρ that wanders with the draw
#: moves K across one rounding step, so a count that rises by at most C1_SLACK iteration from
#: the smallest n to any larger n is bounded; a count that at least doubles (C1_GROWTH×, and
#: by more than C1_SLACK) means ln(1/ρ) halved: the rate depends on n.
C1_SLACK, C1_GROWTH = 1, 2.0
#: C1: GD's iterations to ε grow when they rise by this factor from the smallest to the
#: largest n measured; the smallest n must have reached ε, the largest may be a lower bound.
GD_GROWTH = 1.5
#: C1: a GN run stopped by max_iters contradicts when its lower bound is this many times the
#: iterations the variant's converged runs needed at most.
CAP_FACTOR = 2.0
#: C2: the methods whose costs the claim names, and the terms of each method's cost model
#: that the claim says lead (gn_sketch: the CG products and the cubic factorisation, nmd + n³).
C2_METHODS = ("gd", "gn_exact", "gn_gram", "gn_sketch")
C2_LEADING = {"gd": ("nmd",), "gn_exact": ("n²md",), "gn_gram": ("n²m",),
              "gn_sketch": ("k·nmd", "nmd", "n³ (factor)")}
#: C2: the fitted share of the named terms in the fitted time at the largest cell that
#: makes them dominate; the RMS of log(measured / fitted) below which the cost form
#: describes the data (the seed-to-seed spread of the committed 3-seed cells, 4–30% in time
#: to ε, about 20% typical, plus a 10% drift of a kernel's rate with size), and above which
#: it cannot (a factor 2: no noise measured here comes near it).
C2_DOMINANT, C2_FIT_GOOD, C2_FIT_BAD = 0.5, 0.3, 0.69
#: C2: the named terms are absent when they take less than this share of the size-dependent
#: time at the largest cell: they are ≥ 80% of the flops there in the committed sweeps, so
#: they would have to run over 50× faster per flop than the rest (no two kernels here are
#: that far apart).
C2_ABSENT = 0.05
#: C4: BPSW21 prove that the residual norm halves every outer iteration; to ε in the relative
#: loss that is at most ⌈ln(1/ε) / ln(1/C4_RATE²)⌉ iterations (10 at ε = 1e-6).
C4_RATE = 0.5
#: C4: the paper's accuracy requirement as the harness reads it (docs/model.md): linearised,
#: r_{t+1} = (r_t − G g_t) + e_t, so a CG solve to relative residual tol gives
#: ‖r_{t+1}‖ ≤ (tol + ‖e_t‖/‖r_t‖)·‖r_t‖; the rate ½ with half of it left to the
#: nonlinear remainder e_t needs tol ≤ ¼.
C4_PAPER_TOL = 0.25
#: C4 diagnostic: gap between two loss curves in decades, |log10(L_sketch/L_exact)|, while
#: both are above ε; at least C4_MIN_PAIRS pairs whose exact partner reached ε are needed.
C4_AGREE, C4_DISAGREE = 0.5, 1.0
C4_MIN_PAIRS = 3
#: C5: λ_min(G_t)/λ must stay at or above this (the theorems' λ/2); slopes against −½, within
#: C5_TOLERANCE: the exponent is a law of large numbers, not a flop rate, so no machine drift
#: widens it; E‖G₀ − H∞‖ = a/√m·(1 + b/√m) bends the slope by ½·b/√m ≤ 0.03 from m = 256
#: for b ≤ 1, and 0.1 leaves room for three times that.
LAMBDA_FRACTION = 0.5
NTK_SLOPE = -0.5
C5_TOLERANCE = 0.1
#: C6: (n, m) cells compared; cells with exact ratios in the growth fit along n (in m/n
#: groups with ≥ 2 sizes n) and the distinct n among them; seeds a sure win needs, each
#: above 1.
C6_MIN_CELLS, C6_MIN_GROWTH_CELLS, C6_MIN_NS, C6_MIN_SEEDS = 6, 5, 3, 3


# --- shared by the checks ------------------------------------------------------------------------

#: the fits' part of a rule, and the constants it is written from
FIT_RULE = ("≥{MIN_SIZES} sizes; a fit decides only when its 95% interval is at most "
        "{MAX_CI_WIDTH:g} wide")
FIT_CONSTANTS = {"MIN_SIZES": fits.MIN_SIZES, "MAX_CI_WIDTH": fits.MAX_CI_WIDTH}
#: what one slice of the least-data counts holds fixed (with the other size)
SLICE_KEYS = ["device", "dataset", "d", "dtype"]


def family(algorithm: str) -> str:
    """The method's ``family``; a method not registered here counts as first order."""
    return ALGORITHMS.get(algorithm).family if algorithm in ALGORITHMS else "first_order"


def slices(frame: pd.DataFrame, other: str):
    keys = [*with_model(["device", "dataset", "data_params", "d", "dtype"], frame), other]
    return frame.groupby(keys, dropna=False)


def fmt_fit(f: fits.SlopeFit) -> str:
    return f"{f.slope:.2f} [{f.lo:.2f}, {f.hi:.2f}]"


def decides(f: fits.SlopeFit) -> bool:
    return f.hi - f.lo <= fits.MAX_CI_WIDTH


def slope_in_n(s: pd.DataFrame, col: str, label: str, show: Callable[[float], str],
                ev: list[str]) -> fits.SlopeFit | None:
    """The log-log slope of a count ``col`` vs n over the slice ``s``, written to ``ev``
    after ``label`` with the count's range (``show`` writes a value); None when its interval
    is too wide to decide."""
    fit = fits.fit_loglog(s["n"], s[col], n_boot=1000)
    text = (f"{label} {show(s[col].min())}–{show(s[col].max())} over n={int(s['n'].min())}–"
            f"{int(s['n'].max())}, slope {fmt_fit(fit)}")
    if not decides(fit):
        ev.append(text + " (too wide to decide)")
        return None
    ev.append(text)
    return fit


def finished(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["status"].isin(DONE)] if len(cells) else cells


def most_sizes(done: pd.DataFrame, algs, var: str, fixed: str) -> int:
    """The most distinct ``var`` that one of ``algs`` finished in one slice at one ``fixed``."""
    sub = done[done["algorithm"].isin(algs)]
    if not len(sub):
        return 0
    return int(sub.groupby(with_model(["algorithm", *SLICE_KEYS, fixed], sub))[var]
               .nunique().max())

