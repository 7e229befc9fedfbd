r"""Scaling-law fits: log-log slopes with bootstrap 95% intervals, fitted only where the cost
model's leading term dominates.

A per-iteration time T(n) ≈ C·nᵖ is a line of slope p in log-log coordinates:
log T = log C + p·log n + ε. The slope is the least-squares fit; its interval is a studentised
residual bootstrap (bootstrap-t): residuals e_i (leverage-corrected, e_i / √(1 − h_ii), centred)
are resampled onto the fitted line, the slope p* and its standard error se* are refitted, and
the interval is p̂ − t*_{0.975}·se ≤ p ≤ p̂ − t*_{0.025}·se with t* = (p* − p̂)/se*. Unlike a
percentile bootstrap it keeps its coverage with the four or five sizes a sweep has.

The spec's costs (§3) are sums of monomials, e.g. ``gn_gram``: 2n²m + 2n²d + n³/3 + 4nmd. Over a
measured range, the term that carries at least ``DOMINANCE`` of the modelled cost gives the
theoretical exponent; a slope is fitted only on a contiguous run of sizes where the same term
dominates (and the measured time is above a floor where fixed per-call overheads, not
arithmetic, set the time), and the table says which range and which term.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: A term dominates where it is at least this share of the modelled cost (twice the rest).
DOMINANCE = 2.0 / 3.0
#: A fitted exponent agrees with theory when its 95% interval meets [θ − TOL, θ + TOL]: the
#: cost models are leading-order, and BLAS efficiency still changes with size on one machine.
TOLERANCE = 0.3
#: A fit whose 95% interval is wider than this decides nothing (agrees is left empty).
MAX_CI_WIDTH = 1.0
#: Per-iteration times below this are set by per-call overheads (Python, kernel launches).
DEFAULT_MIN_TIME_S = 1e-3
MIN_SIZES = 3


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


# --- cost models of the spec, §3 ---------------------------------------------------------------

@dataclass
class Term:
    label: str
    value: float
    exponents: dict[str, float]  # exponent of n, m, d in this term


def _t(label: str, coef: float, n: float, m: float, d: float, en: float, em: float,
       ed: float) -> Term:
    return Term(label, coef * n**en * m**em * d**ed, {"n": en, "m": em, "d": ed})


def _batch(params: dict, n: float) -> tuple[float, float]:
    """(b, exponent of n in b): a mini-batch of fixed size b < n does not grow with n."""
    b = params.get("batch_size") or params.get("b")
    if b is None or not isinstance(b, (int, float)) or b >= n:
        return n, 1.0
    return float(b), 0.0


def _model_gd(n, m, d, p):
    return [_t("nmd", 4, n, m, d, 1, 1, 1)]


def _model_sgd(n, m, d, p):
    b, eb = _batch(p, n)
    return [Term("bmd", 4 * b * m * d, {"n": eb, "m": 1, "d": 1})]


def _model_gn_exact(n, m, d, p):
    return [_t("n²md", 2, n, m, d, 2, 1, 1), _t("n³", 1 / 3, n, m, d, 3, 0, 0),
            _t("nmd", 4, n, m, d, 1, 1, 1)]


def _model_gn_gram(n, m, d, p):
    return [_t("n²m", 2, n, m, d, 2, 1, 0), _t("n²d", 2, n, m, d, 2, 0, 1),
            _t("n³", 1 / 3, n, m, d, 3, 0, 0), _t("nmd", 4, n, m, d, 1, 1, 1)]


def _model_kfac(n, m, d, p):
    return [_t("n²m", 2, n, m, d, 2, 1, 0), _t("n³", 1 / 3, n, m, d, 3, 0, 0),
            _t("d³", 1, n, m, d, 0, 0, 3), _t("nmd", 4, n, m, d, 1, 1, 1)]


def _model_ggn(n, m, d, p):
    b, eb = _batch(p, n)
    return [Term("b²m", 2 * b * b * m, {"n": 2 * eb, "m": 1, "d": 0}),
            Term("b³", b**3 / 3, {"n": 3 * eb, "m": 0, "d": 0}),
            Term("bmd", 4 * b * m * d, {"n": eb, "m": 1, "d": 1})]


def _model_gn_cg(n, m, d, p):
    # k·nmd with k the measured inner iterations: the fit adds the slope of k (see fit table).
    return [_t("k·nmd", 4, n, m, d, 1, 1, 1)]


def _model_lbfgs(n, m, d, p):
    # k function evaluations (forward + Jᵀr; k = inner_iters, usually 1) and the two-loop
    # recursion over h pairs, about 4h·md flops
    h = p.get("history_size") or 10
    h = float(h) if isinstance(h, (int, float)) else 10.0
    return [_t("k·nmd", 4, n, m, d, 1, 1, 1), _t("h·md", 4 * h, n, m, d, 0, 1, 1)]


def _model_gn_sketch(n, m, d, p):
    c = p.get("sketch_ratio") or p.get("ratio") or p.get("c") or 2
    c = float(c) if isinstance(c, (int, float)) else 2.0
    terms = [_t("nmd", 4 * 10, n, m, d, 1, 1, 1),  # ~10 CG products with J, Jᵀ
             _t("n³", 2 * c, n, m, d, 3, 0, 0)]  # QR of the s×n sketch, s = c·n
    # Forming S Jᵀ (spec §4): dense sketches touch all of Jᵀ; the tensor and hashing
    # sketches never form it and cost O(n(m + d) + ns), below the terms above.
    sketch = str(p.get("sketch", ""))
    if sketch == "gaussian":
        terms.append(_t("n²md", 2 * c, n, m, d, 2, 1, 1))
    elif sketch == "srht":
        terms.append(_t("nmd·log(md)", math.log2(max(m * d, 2)), n, m, d, 1, 1, 1))
    return terms


def _model_gn_nystrom(n, m, d, p):
    ell = p.get("rank") or p.get("ell") or 50
    ell = float(ell) if isinstance(ell, (int, float)) else 50.0
    return [Term("ℓnmd", 4 * ell * n * m * d, {"n": 1, "m": 1, "d": 1}),
            Term("nℓ²", n * ell * ell, {"n": 1, "m": 0, "d": 0})]


#: Leading-order flop models per registry name (coefficients: the counts of the spec, §2–3).
COST_MODELS: dict[str, Callable[..., list[Term]]] = {
    "gd": _model_gd, "adam": _model_gd, "sgd": _model_sgd, "gn_exact": _model_gn_exact,
    "gn_gram": _model_gn_gram, "ngd": _model_gn_gram, "kfac": _model_kfac, "ggn": _model_ggn,
    "gn_cg": _model_gn_cg, "gn_sketch": _model_gn_sketch, "gn_nystrom": _model_gn_nystrom,
    "lbfgs": _model_lbfgs,
}

#: The per-iteration cost of each method as the spec states it (shown in the tables).
THEORY_TEXT = {
    "gd": "nmd", "adam": "nmd", "sgd": "bmd", "gn_exact": "n²md + n³",
    "gn_gram": "n²(m+d) + n³", "ngd": "n²(m+d) + n³", "kfac": "n²m + n³ + d³",
    "ggn": "b²(m+d) + b³ + bmd", "gn_cg": "k·nmd",
    "gn_sketch": "nmd + n³ (gaussian sketch: + c·n²md)", "gn_nystrom": "ℓ·nmd + nℓ²",
    "lbfgs": "k·nmd + h·md",
}


def dominant_term(algorithm: str, n: float, m: float, d: float,
                  params: dict) -> tuple[Term, float] | None:
    """(leading term, its share of the modelled cost), or None without a model."""
    model = COST_MODELS.get(algorithm)
    if model is None:
        return None
    terms = model(float(n), float(m), float(d), params)
    total = sum(t.value for t in terms)
    top = max(terms, key=lambda t: t.value)
    return top, top.value / total


def _segments(algorithm: str, points: pd.DataFrame, var: str, params: dict):
    """Contiguous runs of sizes (in ``var``) with one dominant term of share ≥ DOMINANCE."""
    segs: list[tuple[str, float, list[float]]] = []
    for x in sorted(points[var].unique()):
        row = points[points[var] == x].iloc[0]
        dom = dominant_term(algorithm, row["n"], row["m"], row["d"], params)
        if dom is None:
            label, expo = "—", float("nan")
        else:
            term, share = dom
            if share < DOMINANCE:
                segs.append(("", float("nan"), []))  # a break: no single term dominates
                continue
            label, expo = term.label, term.exponents[var]
        if segs and segs[-1][0] == label and segs[-1][2]:
            segs[-1][2].append(x)
        else:
            segs.append((label, expo, [x]))
    return [s for s in segs if s[2]]


FIT_COLUMNS = ["variant", "algorithm", "device", "var", "fixed", "context", "range", "term",
               "theory", "slope", "lo", "hi", "intercept", "x_min", "x_max", "n_points",
               "agrees", "note"]


def context_key(dataset: str, d, dtype: str) -> str:
    return f"{dataset} d={int(d)} {dtype}"


def scaling_fits(cells: pd.DataFrame, var: str, min_time_s: float = DEFAULT_MIN_TIME_S,
                 value: str = "time_per_iter_s") -> pd.DataFrame:
    """Fitted exponents of ``value`` in ``var`` ('n' or 'm'), one row per method variant,
    slice (the other sizes fixed) and dominant-term range with at least MIN_SIZES sizes."""
    other = "m" if var == "n" else "n"
    ok = cells[cells["status"].isin(["converged", "max_iters", "time_budget", "diverged"])
               & cells[value].notna()]
    out = []
    keys = ["variant", "algorithm", "device", "dataset", "data_params", "d", "dtype", other]
    for key, group in ok.groupby(keys, sort=True, dropna=False):
        variant, algorithm, device, dataset, _, d, dtype, fixed = key
        if group[var].nunique() < MIN_SIZES:
            continue
        params = json.loads(group["hyperparameters"].iloc[0])
        above = group[group[value] >= min_time_s]
        n_below = group[var].nunique() - above[var].nunique()
        for label, expo, xs in _segments(algorithm, above, var, params):
            seg = above[above[var].isin(xs)]
            note = []
            if n_below:
                note.append(f"{n_below} size(s) below the {min_time_s:g} s floor left out")
            if len(xs) < MIN_SIZES:
                continue
            fit = fit_loglog(seg[var], seg[value])
            theory = expo
            if algorithm == "gn_cg" and label == "k·nmd" and var == "n":
                k = seg.dropna(subset=["mean_inner_iters"])
                if k[var].nunique() >= 2 and len(k) >= 3:
                    kfit = fit_loglog(k[var], k["mean_inner_iters"], n_boot=200)
                    theory = expo + kfit.slope
                    note.append(f"theory 1 + slope of k ({kfit.slope:.2f})")
            agrees = None
            if theory == theory and fit.hi - fit.lo <= MAX_CI_WIDTH:
                agrees = bool(fit.lo <= theory + TOLERANCE and fit.hi >= theory - TOLERANCE)
            elif theory == theory:
                note.append(f"interval wider than {MAX_CI_WIDTH:g}: too noisy to decide")
            out.append({
                "variant": variant, "algorithm": algorithm, "device": device,
                "var": var, "fixed": f"{other}={int(fixed)}",
                "context": context_key(dataset, d, dtype),
                "range": f"{var}={_num(min(xs))}–{_num(max(xs))}", "term": label,
                "theory": theory, "slope": fit.slope, "lo": fit.lo, "hi": fit.hi,
                "intercept": fit.intercept, "x_min": fit.x_min, "x_max": fit.x_max,
                "n_points": fit.n_points, "agrees": agrees, "note": "; ".join(note)})
    return pd.DataFrame(out, columns=FIT_COLUMNS)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
