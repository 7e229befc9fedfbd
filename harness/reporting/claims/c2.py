"""Claim C2 of the spec (§5): its rule and what it needs.

A per-step time is a sum of the method's cost terms, each at its own rate, plus what no flop
counts (Python, dispatch, allocation): a per-step constant. A finite-range slope of such a sum
lies below the leading exponent wherever the constant or a lower term still matters, so the
rule fits the sum itself, with non-negative coefficients, and asks whether the named terms
take most of the fitted time at the largest cell measured.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from harness.execution.results import DONE_STATUSES as DONE
from harness.reporting import fits
from harness.reporting.claims.common import (
    C2_ABSENT,
    C2_DOMINANT,
    C2_FIT_BAD,
    C2_FIT_GOOD,
    C2_LEADING,
    C2_METHODS,
    finished,
    most_sizes,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim

#: what one C2 fit holds fixed besides the method variant
FIT_KEYS = ["variant", "device", "dtype"]


def nnls_relative(A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative c minimising Σ_i ((A c)_i / t_i − 1)²: least squares on relative error,
    so that a 1 ms cell weighs as much as a 1 s one (columns scaled for conditioning)."""
    Aw = A / t[:, None]
    scale = Aw.max(axis=0)
    scale[scale <= 0] = 1.0
    c, _ = nnls(Aw / scale, np.ones(len(t)))
    return c / scale


def _cubic(term) -> bool:
    """A factorisation's n³ term (Cholesky, QR): a kernel of its own, with its own rate."""
    return term.exponents.get("n") == 3 and not term.exponents.get("m")


def fit_cost_form(algorithm: str, g: pd.DataFrame, value: str = fits.TIME_COLUMN
                  ) -> dict | None:
    """The method's cost terms plus a per-step constant fitted to ``value`` over the cells
    ``g`` (one variant): t ≈ c₀ + c₁·(named terms) + c₂·(factorisation n³) + c₃·(the
    rest), c ≥ 0: the named terms (``C2_LEADING``) at one rate, a factorisation at its own,
    the remaining lower-order terms at one more, so that no lower term can stand in for a
    leading one by a rate of its own (a sweep in n at one m and in m at one n cannot tell
    n²m from n²d + nmd). Returns the relative misfit and, at
    the cell where the named terms do the most work, their share of the fitted time and the
    constant's; None where a cell has no cost model (no model, or no inner count)."""
    params = json.loads(g["hyperparameters"].iloc[0]) if isinstance(
        g["hyperparameters"].iloc[0], str) else {}
    named_labels = C2_LEADING.get(algorithm, ())
    rows, labels = [], None
    for r in g.itertuples(index=False):
        terms = fits.cost_terms(algorithm, r.n, r.m, r.d, params,
                                getattr(r, "mean_inner_iters", None),
                                getattr(r, "refresh_frac", None), getattr(r, "depth", 1),
                                getattr(r, "model", "two_layer"))
        if not terms:
            return None
        labels = [t.label for t in terms]
        named = sum(t.value for t in terms if t.label in named_labels)
        cubic = sum(t.value for t in terms if t.label not in named_labels and _cubic(t))
        rows.append([1.0, named, cubic, sum(t.value for t in terms) - named - cubic])
    A, t = np.array(rows, float), g[value].to_numpy(float)
    coef = nnls_relative(A, t)
    fitted = A @ coef
    misfit = float(np.sqrt(np.mean(np.log(t / fitted) ** 2)))
    top = int(np.argmax(A[:, 1]))
    return {"misfit": misfit, "share": float(coef[1] * A[top, 1] / fitted[top]),
            "constant": float(coef[0]) / fitted[top], "n": int(g["n"].iloc[top]),
            "m": int(g["m"].iloc[top]), "cells": len(g), "terms": labels,
            "constant_s": float(coef[0])}


def judge(fit: dict) -> bool | None:
    """True: the named terms take ≥ C2_DOMINANT of the fitted time at the largest cell and
    the form describes the data; False: the form misses the data, or the size-dependent part
    dominates there and the named terms take less than C2_ABSENT of it (absent, not merely
    not yet leading); None otherwise."""
    variable = 1.0 - fit["constant"]
    if fit["misfit"] > C2_FIT_BAD:
        return False
    if fit["share"] >= C2_DOMINANT and fit["misfit"] <= C2_FIT_GOOD:
        return True
    if variable >= C2_DOMINANT and fit["share"] < C2_ABSENT * variable:
        return False
    return None


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
       rule="Per method of {C2_METHODS} and variant (device, dtype): the amortised time per "
            "iteration (mean over all steps, refreshes included) of its finished cells, over "
            "≥{MIN_SIZES} sizes n or ≥{MIN_SIZES} widths m (an agreeing fit needs both), "
            "fitted as a per-step constant "
            "plus the method's cost model (every term, with the measured inner iterations k "
            "and refresh share f) in three parts, the named terms, a factorisation's n³ and "
            "the rest, each part with one non-negative coefficient (least squares on relative "
            "error). At the cell where the named terms ({C2_LEADING}) do the most "
            "work, a fit agrees when they take ≥ {C2_DOMINANT:g} of the fitted time and the "
            "RMS of log(measured/fitted) is ≤ {C2_FIT_GOOD:g}; it disagrees when that RMS is "
            "> {C2_FIT_BAD:g}, or when the size-dependent part takes ≥ {C2_DOMINANT:g} of the "
            "fitted time there and the named terms less than {C2_ABSENT:g} of that part "
            "(absent); otherwise (the constant or a lower term still leads) it decides "
            "nothing. Contradicted if any fit "
            "of the four disagrees; supported if each has an agreeing fit.",
       constants={"C2_METHODS": C2_METHODS, "C2_LEADING": C2_LEADING,
                  "C2_DOMINANT": C2_DOMINANT, "C2_ABSENT": C2_ABSENT, "C2_FIT_GOOD": C2_FIT_GOOD,
                  "C2_FIT_BAD": C2_FIT_BAD, "MIN_SIZES": fits.MIN_SIZES},
       needs=_needs_c2)
def check_c2(cells: pd.DataFrame) -> tuple[str, str]:
    ev, agree, disagree, missing = [], [], [], []
    value = fits.TIME_COLUMN
    done = cells[cells["status"].isin(DONE)] if len(cells) else cells
    if len(done) and value in done:
        done = done[done[value].notna() & (done[value] > 0)]
    for alg in C2_METHODS:
        mine = done[done["algorithm"] == alg] if len(done) and value in done else done.iloc[0:0]
        states = []
        for key, g in mine.groupby(FIT_KEYS, dropna=False):
            both = g["n"].nunique() >= fits.MIN_SIZES and g["m"].nunique() >= fits.MIN_SIZES
            if g["n"].nunique() < fits.MIN_SIZES and g["m"].nunique() < fits.MIN_SIZES:
                continue
            fit = fit_cost_form(alg, g, value)
            if fit is None:
                continue
            state = judge(fit)
            word = {True: "agrees", False: "disagrees"}.get(state, "decides nothing")
            if state is True and not both:  # a sweep in one size cannot support
                state, word = None, "agrees in one size only (decides nothing)"
            states.append(state)
            ev.append(f"{key[0]} ({key[1]}, {key[2]}): constant {fit['constant_s']:.2g} s + "
                      f"{' + '.join(fit['terms'])} over {fit['cells']} cells, RMS misfit "
                      f"{fit['misfit']:.2f}; at n={fit['n']}, m={fit['m']} "
                      f"{'/'.join(C2_LEADING[alg])} take {fit['share']:.0%} of the fitted "
                      f"time, the constant {fit['constant']:.0%}: {word}")
        if any(s is False for s in states):
            disagree.append(alg)
        elif any(s is True for s in states):
            agree.append(alg)
        else:
            missing.append(f"{alg}: no deciding fit (≥{fits.MIN_SIZES} sizes n and "
                           f"≥{fits.MIN_SIZES} widths m, the named terms leading)")
    if disagree:
        verdict = CONTRADICTED
        ev.insert(0, f"disagree: {', '.join(disagree)}")
    elif len(agree) == len(C2_METHODS):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    ev += missing
    return verdict, "; ".join(ev) or "no runs"
