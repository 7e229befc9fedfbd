r"""Predicted inner iterations k and refresh share f: the part of a step's cost a prediction
must not take from the cell it predicts.

A CG solve preconditioned by a sketch of s = r·n rows (BPSW21, sketch-and-precondition) sees
the system's singular values squeezed into [1 − 1/√r, 1 + 1/√r] (a subspace embedding of
distortion ε ≈ 1/√r), so √κ ≈ (1 + ε)/(1 − ε) and CG's bound to a relative residual ``tol``,

    k ≤ ln(2/tol) / ln((√κ + 1)/(√κ − 1)) = 2 ln(2/tol) / ln r,

depends on the sketch ratio and the tolerance only, not on n, m or d. The model keeps that
shape and fits one constant per method and sketch on the calibration's ladder (``a``: the
sketches are not Gaussian, the bound is not tight):

    k(r, tol)      = a · 2 ln(2/tol) / ln r                     (methods with ``sketch_ratio``)
    k(n, tol)      = a · n^b · ln(2/tol)                        (other inner solves: gn_cg,
                                                                  gn_nystrom; b ∈ [0, ½] fitted)

Under ``refresh=adaptive`` the preconditioner is rebuilt only when k outgrows the built one,
so a run's mean k is ``drift`` × the built k and a share f of its steps rebuild: the first
step always, each later one with probability ``rebuild``, so over a run of T steps

    f(T) = (1 + (T − 1) · rebuild) / T.

``drift`` and ``rebuild`` come from the ladder's adaptive runs (the method's defaults, full
steps). Every number here is fitted on calibration sizes (``harness.perf.calibrate``), none
on a cell a report judges. A profile without this model (older calibrations) gets it from
its ladder's recorded k, with drift 1 and rebuild 0 (noted); a profile without a ladder
(datasheets) falls back to each method's ``default_inner_iters``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: Where a profile keeps the model.
PROFILE_KEY = "inner_model"
#: The exponent b of n is held in this range: unpreconditioned CG needs ~√κ iterations and
#: κ grows at most like n here, so k grows at most like √n.
B_RANGE = (0.0, 0.5)


def theory_k(params: Mapping[str, Any]) -> float:
    """The bound's shape at these parameters: 2 ln(2/tol)/ln r with a sketch ratio r > 1,
    ln(2/tol) without one; inf for a sketch ratio ≤ 1 (no embedding: CG runs to its cap)."""
    tol = float(params.get("tol", 0.1))
    log_tol = math.log(2.0 / tol) if 0 < tol < 2 else 1.0
    if "sketch_ratio" in params:
        r = float(params["sketch_ratio"])
        return 2.0 * log_tol / math.log(r) if r > 1 else math.inf
    return log_tol


def model_key(method: str, params: Mapping[str, Any]) -> str:
    """One constant per method and sketch (``gn_sketch:gaussian``), else per method."""
    return f"{method}:{params['sketch']}" if params.get("sketch") else method


def adaptive(params: Mapping[str, Any]) -> bool:
    return params.get("refresh") == "adaptive"


@dataclasses.dataclass
class InnerModel:
    """Fitted constants: ``coef[key] = {"a", "b", "points"}`` (``model_key``; a method's
    own key pools its sketches), ``drift`` and ``rebuild`` (adaptive refresh), and ``note``
    (how it was obtained, where not by a calibration that fitted it)."""

    coef: dict[str, dict[str, float]]
    drift: float = 1.0
    rebuild: float = 0.0
    note: str = ""

    def k(self, method: str, params: Mapping[str, Any], n: int) -> float | None:
        """Predicted mean inner iterations per step (None: no constant for this method)."""
        entry = self.coef.get(model_key(method, params)) or self.coef.get(method)
        if entry is None:
            return None
        k = entry["a"] * max(n, 1) ** entry.get("b", 0.0) * theory_k(params)
        if adaptive(params):
            k *= self.drift
        cap = float(params.get("max_inner", math.inf))
        return float(min(max(k, 1.0), cap))

    def refresh_share(self, steps: float) -> float:
        """f: the share of a run of ``steps`` steps that rebuilds (adaptive refresh)."""
        steps = max(float(steps), 1.0)
        return (1.0 + (steps - 1.0) * self.rebuild) / steps

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InnerModel:
        return cls({k: dict(v) for k, v in data.get("coef", {}).items()},
                   float(data.get("drift", 1.0)), float(data.get("rebuild", 0.0)),
                   str(data.get("note", "")))


def fit(points: Iterable[Mapping[str, Any]], runs: Iterable[Mapping[str, Any]] = ()
        ) -> InnerModel:
    """Fit the model on ladder points and adaptive runs.

    ``points``: {method, params (the full, validated set), n, inner_iters} of runs that build
    every step (the ladder); ``runs``: {method, params, n, ks (per step), refreshed (0/1 per
    step)} of adaptive runs. Keys with a sketch ratio fit ``a`` alone (b = 0: the bound has
    no n); the others fit a and b by least squares in log–log.
    """
    groups: dict[str, list[tuple[float, float]]] = {}
    sketched: set[str] = set()
    for p in points:
        k, params = float(p["inner_iters"]), p["params"]
        shape = theory_k(params)
        if not (k > 0 and math.isfinite(shape)):
            continue
        for key in {model_key(p["method"], params), p["method"]}:
            groups.setdefault(key, []).append((float(p["n"]), k / shape))
            if "sketch_ratio" in params:
                sketched.add(key)
    coef = {}
    for key, pairs in sorted(groups.items()):
        ns, ys = np.log([x for x, _ in pairs]), np.log([y for _, y in pairs])
        b = 0.0
        if key not in sketched and np.ptp(ns) > 0:
            b = float(np.clip(np.polyfit(ns, ys, 1)[0], *B_RANGE))
        a = float(np.exp(np.mean(ys - b * ns)))
        coef[key] = {"a": a, "b": b, "points": len(pairs)}
    drifts, rebuilds = [], []
    for run in runs:
        ks, built = list(run["ks"]), list(run["refreshed"])
        if len(ks) < 2 or len(ks) != len(built) or not any(built):
            continue
        k_built = np.mean([k for k, b in zip(ks, built) if b])
        if k_built > 0:
            drifts.append(float(np.mean(ks)) / float(k_built))
        rebuilds.append(sum(built[1:]) / (len(built) - 1))
    return InnerModel(coef, float(np.exp(np.mean(np.log(drifts)))) if drifts else 1.0,
                      float(np.mean(rebuilds)) if rebuilds else 0.0,
                      "" if runs else "no adaptive runs: drift 1, rebuild 0 assumed")


def ladder_points(raw: Iterable[Mapping[str, Any]], full_params) -> list[dict[str, Any]]:
    """One point {method, params, n, inner_iters} per (method, params, size) of the ladder's
    raw rows (each phase row carries its run's mean k); ``full_params(method, overrides)``
    gives the validated parameter set."""
    seen, points = set(), []
    for p in raw:
        if not p.get("inner_iters"):
            continue
        ident = (p["method"], json.dumps(p["params"], sort_keys=True), p["n"], p["m"], p["d"],
                 p.get("model", "two_layer"))
        if ident in seen:
            continue
        seen.add(ident)
        try:
            params = full_params(p["method"], p["params"])
        except Exception:  # a method no longer registered, or renamed parameters
            continue
        points.append({"method": p["method"], "params": params, "n": p["n"],
                       "inner_iters": p["inner_iters"]})
    return points


def from_ladder(raw: Iterable[Mapping[str, Any]], full_params) -> InnerModel | None:
    """The model from an older profile's ladder points (``ladder_points``); None where the
    ladder recorded no inner solve."""
    points = ladder_points(raw, full_params)
    if not points:
        return None
    model = fit(points)
    model.note = ("fitted on the ladder's recorded k at load (no adaptive runs in this "
                  "calibration: drift 1, rebuild 0 assumed)")
    return model
