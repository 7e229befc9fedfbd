"""The cost model against the clock: predicted and measured seconds per iteration of the
cells of a store (``predicted_vs_measured``) or of an ``nlt-bench`` report, and how many
agree within ``GOOD_RATIO``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from algorithms.base import ALGORITHMS
from harness.common.errors import ConfigError
from harness.costmodel.predict import (
    method_params,
    modelled,
    predict,
    predicted_inner,
    predicted_refresh_every,
)
from harness.costmodel.profile import Profile

#: Ratio band counted as a good prediction.
GOOD_RATIO = 1.5


def _params_of(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("hyperparameters")
    if isinstance(raw, str) and raw:
        return dict(json.loads(raw))
    if isinstance(raw, Mapping):
        return dict(raw)
    return {}


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def predicted_vs_measured(cells: pd.DataFrame, profile: Profile,
                          dtype: str | None = None) -> pd.DataFrame:
    """One row per measured cell: predicted and measured seconds per iteration, their ratio.

    ``cells``: the report's per-cell table (``harness.reporting.metrics.cell_metrics``):
    algorithm, n, m, d, hyperparameters (JSON), time_per_iter_s (median), mean_step_time_s
    (amortised), mean_inner_iters, n_steps, refresh_frac, optionally dtype, ``model`` and
    ``depth`` (missing: the two-layer model). Methods with ``refresh=adaptive`` are compared
    on the amortised time, the others on the median. Cells without a time or of a method
    the model lacks are left out.

    The prediction (``predicted_s``, ``ratio``) uses the *predicted* inner iterations k and
    refresh share f (``predicted_inner``, ``predicted_refresh_every`` over the cell's run
    length ``n_steps``), never the cell's measured ones; ``predicted_measured_k_s`` and
    ``ratio_measured_k`` feed the cell's measured k (``mean_inner_iters``) and f
    (``refresh_every``, else ``refresh_frac``) instead, to show what that would change.
    """
    out = []
    for _, r in cells.iterrows():
        r = r.to_dict()
        alg = r.get("algorithm")
        if alg not in ALGORITHMS or not modelled(alg):
            continue
        params = _params_of(r)
        try:
            full = method_params(alg, params)
        except ConfigError:
            continue
        adaptive = full.get("refresh") == "adaptive"
        cols = (("time_per_iter_amortised_s", "mean_step_time_s") if adaptive
                else ("time_per_iter_median_s", "time_per_iter_s"))
        measured = next((r.get(c) for c in cols if _finite(r.get(c))), None)
        if not _finite(measured) or float(measured) <= 0:
            continue
        measured_every = None  # what the cell did: steps per rebuild
        if adaptive:
            measured_every = r.get("refresh_every")
            if (not _finite(measured_every) and _finite(r.get("refresh_frac"))
                    and r["refresh_frac"] > 0):
                measured_every = 1.0 / float(r["refresh_frac"])
            if not _finite(measured_every) and _finite(r.get("n_steps")):
                measured_every = max(1.0, float(r["n_steps"]))
            measured_every = float(measured_every) if _finite(measured_every) else None
        inner = r.get("mean_inner_iters")
        inner = float(inner) if _finite(inner) else None
        cell_dtype = dtype or (r.get("dtype") if isinstance(r.get("dtype"), str) else None)
        depth = int(r["depth"]) if _finite(r.get("depth")) else 1
        model = r["model"] if isinstance(r.get("model"), str) else "two_layer"
        run_steps = float(r["n_steps"]) if _finite(r.get("n_steps")) else None
        kw = dict(dtype=cell_dtype, depth=depth, model=model)
        try:
            k_pred = predicted_inner(alg, full, int(r["n"]), profile)
            every = predicted_refresh_every(alg, full, profile, run_steps)
            # the prediction: k and f predicted, never the cell's (its run length T only)
            pred = predict(alg, params, int(r["n"]), int(r["m"]), int(r["d"]), profile,
                           k_pred, refresh_every=every, **kw)
            # what feeding the cell's measured k and f would give instead
            fed = predict(alg, params, int(r["n"]), int(r["m"]), int(r["d"]), profile,
                          inner if inner is not None else k_pred,
                          refresh_every=measured_every if adaptive else None,
                          run_steps=run_steps, **kw)
        except ConfigError:
            continue
        row = {"algorithm": alg, "hyperparameters": json.dumps(params, sort_keys=True),
               "n": int(r["n"]), "m": int(r["m"]), "d": int(r["d"]), "depth": depth,
               "dtype": cell_dtype or profile.default_dtype, "measure": "amortised" if adaptive
               else "median", "inner_iters": inner, "inner_iters_pred": k_pred,
               "refresh_every": measured_every, "refresh_every_pred": every,
               "measured_s": float(measured), "predicted_s": pred["total"],
               "ratio": pred["total"] / float(measured),
               "predicted_measured_k_s": fed["total"],
               "ratio_measured_k": fed["total"] / float(measured)}
        for key in ("variant", "store", "preset", "sweep", "seed"):  # where it came from
            if key in r:
                row[key] = r[key]
        for phase, seconds in pred.items():
            if phase != "total":
                row[f"pred_{phase}"] = seconds
                meas = r.get(f"mean_t_{phase}")
                row[f"meas_{phase}"] = float(meas) if _finite(meas) else np.nan
        out.append(row)
    return pd.DataFrame(out)


def ratio_summary(rows: pd.DataFrame, band: float = GOOD_RATIO,
                  column: str = "ratio") -> dict[str, Any]:
    """Fraction of cells predicted within ``band``× (either way), median and worst ratio
    (predicted / measured; the worst is the one farthest from 1 on a log scale).
    ``column``: ``ratio`` (predicted k and f) or ``ratio_measured_k`` (the cells' own)."""
    if not len(rows) or column not in rows:
        return {"cells": 0, "within": 0, "fraction_within": None, "band": band,
                "median_ratio": None, "worst_ratio": None, "worst_cell": None}
    ratio = rows[column].astype(float)
    within = int(((ratio <= band) & (ratio >= 1 / band)).sum())
    worst = int(np.argmax(np.abs(np.log(ratio.to_numpy()))))
    w = rows.iloc[worst]
    return {"cells": len(rows), "within": within, "fraction_within": within / len(rows),
            "band": band, "median_ratio": float(ratio.median()),
            "worst_ratio": float(ratio.iloc[worst]),
            "worst_cell": f"{w['algorithm']} n={w['n']} m={w['m']} d={w['d']}"}


def predicted_vs_bench(report: Mapping[str, Any], profile: Profile) -> pd.DataFrame:
    """The same comparison for an ``nlt-bench --json`` report (per_iteration, crossover):
    ``ratio`` with predicted k and f, ``ratio_measured_k`` with the report's own."""
    meta = report.get("meta", {})
    dtype = meta.get("dtype", profile.default_dtype)
    rows = []

    def add(name: str, n: int, m: int, d: int, res: Mapping[str, Any], params=None,
            every=None):
        if "seconds" not in res:
            return
        inner = [k for k in res.get("inner_iters") or [] if k is not None]
        mean_inner = float(np.mean(inner)) if inner else None
        steps = float(res["steps"]) if _finite(res.get("steps")) else None
        # predicted k and f (as predicted_vs_measured); the measured ones beside
        pred = predict(name, params, n, m, d, profile, dtype=dtype, run_steps=steps)
        fed = predict(name, params, n, m, d, profile, mean_inner, dtype=dtype,
                      refresh_every=every)
        rows.append({"algorithm": name, "params": json.dumps(params or {}), "n": n, "m": m,
                     "d": d, "inner_iters": mean_inner, "measured_s": res["seconds"],
                     "predicted_s": pred["total"],
                     "ratio": pred["total"] / res["seconds"],
                     "ratio_measured_k": fed["total"] / res["seconds"]})

    pi = report.get("per_iteration")
    if pi:
        for name, res in pi["methods"].items():
            if name in ALGORITHMS and modelled(name):
                add(name, pi["n"], pi["m"], pi["d"], res)
            elif name == "gn_sketch adaptive" and "seconds" in res:
                builds = sum(1 for x in res.get("refreshed") or [] if x)
                every = res["steps"] / max(builds, 1)
                add("gn_sketch", pi["n"], pi["m"], pi["d"], res, {"refresh": "adaptive"}, every)
    cr = report.get("crossover")
    if cr:
        for row in cr["rows"]:
            for name in ("gn_sketch", "gn_gram"):
                add(name, row["n"], row["m"], row["d"], row[name])
    return pd.DataFrame(rows)
