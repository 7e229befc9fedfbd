r"""Scaling-law fits: log-log slopes with bootstrap 95% intervals, judged against each
method's cost model with its measured inner iteration counts.

A per-iteration time T(x) ≈ C·xᵖ is a line of slope p in log-log coordinates:
log T = log C + p·log x + ε. The slope is the least-squares fit; its interval is a studentised
residual bootstrap (bootstrap-t): residuals e_i (leverage-corrected, e_i / √(1 − h_ii), centred)
are resampled onto the fitted line, the slope p* and its standard error se* are refitted, and
the interval is p̂ − t*_{0.975}·se ≤ p ≤ p̂ − t*_{0.025}·se with t* = (p* − p̂)/se*.

Coverage of the nominal 95% interval, measured on simulated power laws with log-normal noise
at the report's sizes (n = 64·2^i, m = 256–16384; 400 draws each; docs/reports.md): 64% with
3 sizes and one run each, 92–93% with 4, 93–96% with 5 or 6 (one or two runs per size), the
same for any noise scale (the interval is studentised). Hence ``MIN_SIZES`` = 5.

The spec's costs (§3) are sums of monomials, and some carry measured quantities: the inner
iteration count k of the CG methods and, for a preconditioner that is rebuilt only sometimes
(``refresh=adaptive``), the share f of steps that rebuilt it. Each method declares its own
model on its class (``Algorithm.cost_terms``, ``cost_text``; terms from ``harness.common.flops``);
``cost_terms`` here gives every term of a registered method's model at one measured cell.
A fit of T against x is compared with the slope the model itself has over the same points
(``theory``): if T = C·model·noise the two agree whatever the curvature, so a fit can run
over a range where the leading term changes (``term`` names the terms that lead somewhere in
the range). The interval is the bootstrap-t interval of the
slope of log(T/model), shifted by the model's slope: curvature of the model is not mistaken
for noise. The point estimate is the ordinary least-squares slope of log T.

Agreement is judged on the interval (``agreement``): a fit *agrees* when its whole interval
lies within theory ± ``TOLERANCE``, *disagrees* when its whole interval lies outside that band,
and decides nothing otherwise or when the interval is wider than ``MAX_CI_WIDTH``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from algorithms.base import ALGORITHMS
from harness.common.flops import Term
from harness.execution.results import DONE_STATUSES

#: A fit agrees with theory when its whole 95% interval lies within θ ± TOLERANCE. The models
#: count flops; what they cannot know is how the flop rate changes with size (cache, BLAS
#: blocking, threads). A slope error of 0.2 lets that rate drift by 2^(0.2·5) = 2× over the
#: five octaves of n in a sweep (64–2048), while exponents one apart (n vs n², n² vs n³)
#: stay separated by 0.6 between their bands.
TOLERANCE = 0.2
#: A fit whose 95% interval is wider than this decides nothing: at most half the distance
#: between exponents one apart, so that one interval cannot fit two theories' bands.
MAX_CI_WIDTH = 0.5
#: Per-iteration times below this are set by per-call overheads (Python, kernel launches).
DEFAULT_MIN_TIME_S = 1e-3
#: Sizes (distinct x) a fit needs before it decides anything: the bootstrap-t interval covers
#: about 70% at 3 sizes and 90% at 4, 95% from 5 (module docstring).
MIN_SIZES = 5
#: The quantity the exponent fits use: the amortised time per iteration (every step,
#: refreshes included), which is what the cost models with the refresh share f count.
TIME_COLUMN = "time_per_iter_amortised_s"


@dataclass
class SlopeFit:
    slope: float
    intercept: float
    lo: float
    hi: float
    n_points: int
    n_sizes: int
    x_min: float
    x_max: float

    def interval(self) -> str:
        return f"{self.slope:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


def fit_loglog(x, y, n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> SlopeFit:
    """Slope of log y on log x with a bootstrap-t interval (see the module docstring).

    >>> fit = fit_loglog([1, 2, 4, 8], [3, 12, 48, 192])
    >>> round(fit.slope, 6), round(fit.lo, 6), round(fit.hi, 6)
    (2.0, 2.0, 2.0)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    lx, ly = np.log(x[keep]), np.log(y[keep])
    n, sizes = len(lx), len(np.unique(lx))
    if n < 3 or sizes < 2:
        raise ValueError(f"need at least 3 points on 2 sizes, got {n} points on {sizes}")
    A = np.column_stack([np.ones(n), lx])
    AtA_inv = np.linalg.inv(A.T @ A)
    P = AtA_inv @ A.T  # β = P y
    beta = P @ ly
    fitted = A @ beta
    resid = ly - fitted
    dof = n - 2
    s = math.sqrt(max(resid @ resid / dof, 0.0)) if dof > 0 else 0.0
    se = s * math.sqrt(AtA_inv[1, 1])
    lo = hi = float(beta[1])
    if se > 1e-12 * max(1.0, abs(beta[1])):
        lev = np.einsum("ij,jk,ik->i", A, AtA_inv, A)
        mod = resid / np.sqrt(np.clip(1.0 - lev, 1e-12, None))
        mod -= mod.mean()
        rng = np.random.default_rng(seed)
        ystar = fitted[None, :] + mod[rng.integers(0, n, size=(n_boot, n))]
        bstar = ystar @ P.T  # (n_boot, 2)
        rstar = ystar - bstar @ A.T
        sstar = np.sqrt((rstar**2).sum(axis=1) / dof) * math.sqrt(AtA_inv[1, 1])
        ok = sstar > 1e-12 * se
        tstar = (bstar[ok, 1] - beta[1]) / sstar[ok]
        alpha = (1.0 - level) / 2.0
        q_lo, q_hi = np.quantile(tstar, [alpha, 1.0 - alpha])
        lo, hi = float(beta[1] - q_hi * se), float(beta[1] - q_lo * se)
    return SlopeFit(float(beta[1]), float(beta[0]), lo, hi, n, sizes,
                    float(np.exp(lx.min())), float(np.exp(lx.max())))


def fit_against_model(x, y, model) -> tuple[SlopeFit, float]:
    """(fit of y against x, slope of the model over the same points). The fit's slope and
    intercept are the least-squares ones of log y; its interval is the bootstrap-t interval
    of the slope of log(y/model) plus the model's slope (module docstring)."""
    x, y, model = (np.asarray(v, float) for v in (x, y, model))
    keep = (x > 0) & (y > 0) & (model > 0) & np.isfinite(x) & np.isfinite(y) & \
        np.isfinite(model)
    x, y, model = x[keep], y[keep], model[keep]
    ratio = fit_loglog(x, y / model)
    lx, lm = np.log(x), np.log(model)
    m_slope, m_int = np.polyfit(lx, lm, 1)
    fit = SlopeFit(ratio.slope + m_slope, ratio.intercept + m_int, ratio.lo + m_slope,
                   ratio.hi + m_slope, ratio.n_points, ratio.n_sizes, ratio.x_min, ratio.x_max)
    return fit, float(m_slope)


def agreement(lo: float, hi: float, theory: float, tolerance: float = TOLERANCE,
              max_width: float = MAX_CI_WIDTH) -> bool | None:
    """True when [lo, hi] lies within theory ± tolerance, False when it lies wholly outside,
    None (decides nothing) when it straddles an edge or is wider than ``max_width``.

    >>> agreement(1.9, 2.1, 2.0), agreement(1.27, 1.57, 2.0), agreement(0.46, 0.91, 1.0)
    (True, False, None)
    """
    if not (theory == theory and hi - lo <= max_width):
        return None
    if theory - tolerance <= lo and hi <= theory + tolerance:
        return True
    if hi < theory - tolerance or lo > theory + tolerance:
        return False
    return None


# --- cost models: each method's own (``Algorithm.cost_terms``, spec §3) --------------------------


def _method(algorithm: str):
    """The registered class of ``algorithm``, or None (results of a method not installed)."""
    return ALGORITHMS.get(algorithm) if algorithm in ALGORITHMS else None


class _CostTexts(Mapping):
    """``THEORY_TEXT[name]``: a registered method's ``cost_text``, as the tables print it
    (k: measured inner iterations, f: measured share of steps that rebuilt the
    preconditioner, c = s/n). Methods without a model are absent."""

    def __getitem__(self, algorithm: str) -> str:
        cls = _method(algorithm)
        if cls is None or not cls.cost_text:
            raise KeyError(algorithm)
        return cls.cost_text

    def __iter__(self):
        return (name for name in ALGORITHMS.names() if ALGORITHMS.get(name).cost_text)

    def __len__(self) -> int:
        return sum(1 for _ in self)


THEORY_TEXT: Mapping[str, str] = _CostTexts()


def cost_terms(algorithm: str, n: float, m: float, d: float, params: dict,
               inner: float | None = None, refresh: float | None = None,
               depth: int = 1, model: str = "two_layer") -> list[Term] | None:
    """Every term of ``algorithm``'s model at one cell of ``model`` with ``depth`` hidden
    layers (its class's ``flops``); None for a method not registered, without a model
    there, or whose model needs the measured inner iteration count ``inner`` and it is
    missing (None or NaN). A missing ``refresh`` share counts as 1: every step rebuilt."""
    cls = _method(algorithm)
    if cls is None:
        return None
    k = None if inner is None or inner != inner else float(inner)
    f = 1.0 if refresh is None or refresh != refresh else float(refresh)
    return cls.flops(float(n), float(m), float(d), params, k, f, depth=int(depth), model=model)


def dominant_term(algorithm: str, n: float, m: float, d: float, params: dict,
                  inner: float | None = None, refresh: float | None = None,
                  depth: int = 1, model: str = "two_layer") -> tuple[Term, float] | None:
    """(leading term, its share of the modelled cost), or None without a model."""
    terms = cost_terms(algorithm, n, m, d, params, inner, refresh, depth, model)
    if not terms:
        return None
    top = max(terms, key=lambda t: t.value)
    return top, top.value / sum(t.value for t in terms)


FIT_COLUMNS = ["variant", "algorithm", "device", "var", "fixed", "context", "range", "term",
               "theory", "slope", "lo", "hi", "intercept", "x_min", "x_max", "n_points",
               "n_sizes", "agrees", "note"]


def context_key(dataset: str, d, dtype: str) -> str:
    return f"{dataset} d={int(d)} {dtype}"


def _model_values(algorithm: str, frame: pd.DataFrame, params: dict):
    """(modelled flops per row, leading term per row), or None where a row has no model."""
    values, leads = [], []
    for r in frame.itertuples(index=False):
        terms = cost_terms(algorithm, r.n, r.m, r.d, params, getattr(r, "mean_inner_iters", None),
                           getattr(r, "refresh_frac", None), getattr(r, "depth", 1),
                           getattr(r, "model", "two_layer"))
        if not terms:
            return None
        values.append(sum(t.value for t in terms))
        leads.append(max(terms, key=lambda t: t.value).label)
    return np.array(values), leads


def scaling_fits(cells: pd.DataFrame, var: str, min_time_s: float = DEFAULT_MIN_TIME_S,
                 value: str = TIME_COLUMN) -> pd.DataFrame:
    """Fitted exponents of ``value`` in ``var`` ('n' or 'm'), one row per method variant and
    slice (the other sizes fixed) with at least MIN_SIZES sizes above ``min_time_s``, beside
    the slope of the method's cost model over the same cells (``theory``) and the verdict of
    ``agreement``."""
    other = "m" if var == "n" else "n"
    if value not in cells:
        return pd.DataFrame(columns=FIT_COLUMNS)
    ok = cells[cells["status"].isin(DONE_STATUSES)
               & cells[value].notna()]
    out = []
    keys = ["variant", "algorithm", "device", "dataset", "data_params", "d", "dtype", other]
    for key, group in ok.groupby(keys, sort=True, dropna=False):
        variant, algorithm, device, dataset, _, d, dtype, fixed = key
        params = json.loads(group["hyperparameters"].iloc[0])
        seg = group[group[value] >= min_time_s].sort_values(var)
        note = []
        n_below = group[var].nunique() - seg[var].nunique()
        if n_below:
            note.append(f"{n_below} size(s) below the {min_time_s:g} s floor left out")
        if seg[var].nunique() < MIN_SIZES or len(seg) < 3:
            continue
        modelled = _model_values(algorithm, seg, params)
        if modelled is None:
            fit, theory, term = fit_loglog(seg[var], seg[value]), float("nan"), "—"
            note.append("no cost model (or no measured inner iteration count)")
        else:
            flops, leads = modelled
            fit, theory = fit_against_model(seg[var], seg[value], flops)
            term = " → ".join(dict.fromkeys(leads))  # leading terms, smallest size first
        agrees = agreement(fit.lo, fit.hi, theory)
        if theory == theory and fit.hi - fit.lo > MAX_CI_WIDTH:
            note.append(f"interval wider than {MAX_CI_WIDTH:g}: too noisy to decide")
        elif theory == theory and agrees is None:
            note.append(f"interval straddles theory ± {TOLERANCE:g}: undecided")
        out.append({
            "variant": variant, "algorithm": algorithm, "device": device,
            "var": var, "fixed": f"{other}={int(fixed)}",
            "context": context_key(dataset, d, dtype),
            "range": f"{var}={_num(seg[var].min())}–{_num(seg[var].max())}", "term": term,
            "theory": theory, "slope": fit.slope, "lo": fit.lo, "hi": fit.hi,
            "intercept": fit.intercept, "x_min": fit.x_min, "x_max": fit.x_max,
            "n_points": fit.n_points, "n_sizes": fit.n_sizes, "agrees": agrees,
            "note": "; ".join(note)})
    return pd.DataFrame(out, columns=FIT_COLUMNS)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
