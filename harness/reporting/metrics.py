"""Per-cell quantities the figures, tables and claims use, with censoring made explicit.

For a cell with trajectory rows t = 0..T (row 0 the initial point):

* time per outer iteration, two ways (``harness.execution.results.time_per_iteration``; the runner's
  untimed warm-up step comes before step 1 for every method, so step 1 is an ordinary step):
  ``time_per_iter_median_s``, the median step time over steps 1..T (a steady step; with
  ``refresh=adaptive`` a step that reuses the factor), and ``time_per_iter_amortised_s``, the
  mean over all steps 1..T, refreshes included (what the run paid per step: the fits and the
  crossover table use it). ``time_per_iter_s`` repeats the median for the figures;
  ``time_per_iter_iqr_s`` is the interquartile range of the step times (their spread);
* inner iterations: their mean per outer iteration, and ``inner_capped_frac``, the share of
  steps whose inner solve stopped at its cap (``max_inner``) without reaching its tolerance;
  ``refresh_frac``, the share of steps that rebuilt the preconditioner (1 when not recorded);
* iterations to ε: the first t with L_t / L_0 ≤ ε; time to ε: setup time plus the cumulative
  step time at that t (what a user waits for, evaluation excluded);
* mean inner iterations per outer iteration, and the mean time of each phase ``t_<phase>``.

A cell that does not give a value is *censored*, with the reason: ``skipped`` (the memory
check refused it; nothing measured), ``failed``, ``diverged``, ``max_iters`` or
``time_budget`` (ε not reached: its iterations and time are lower bounds; a diverged run's
time is a lower bound too), ``stopped early``
(the run's own target was looser than ε), ``no data`` (trajectory unreadable).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.execution.results import TARGET_REL_LOSS, time_per_iteration
from harness.reporting.load import Loaded

#: The report's default target relative loss ε (the spec's headline).



def phase_columns(rows: pd.DataFrame) -> list[str]:
    return sorted(c for c in rows.columns if c.startswith("t_"))


#: what names the network of a cell beside its data: cells of different models or depths are
#: never compared as the same problem
MODEL_KEYS = ("model", "depth")


def with_model(keys: list[str], frame: pd.DataFrame) -> list[str]:
    """``keys`` plus the model columns ``frame`` has (tables built by hand may lack them)."""
    return [*keys, *(k for k in MODEL_KEYS if k in frame and k not in keys)]


def cell_metrics(loaded: Loaded, target: float = TARGET_REL_LOSS) -> pd.DataFrame:
    """One row per cell: the run fields plus the measured quantities and their censoring."""
    runs = loaded.runs.copy()
    if not len(runs):
        return runs
    rows = loaded.rows
    phases = phase_columns(rows) if len(rows) else []
    measured = {}
    hyper = {c: _params(h) for c, h in zip(runs["cell"], runs.get("hyperparameters", ""))}
    if len(rows):
        for cell, traj in rows.groupby("cell", sort=False):
            traj = traj.sort_values("iter")
            steps = traj[traj["iter"] > 0]
            rec: dict[str, float] = {}
            for rule in ("median", "amortised"):
                tpi = time_per_iteration(traj, rule)
                rec[f"time_per_iter_{rule}_s"] = np.nan if tpi is None else tpi
            rec["time_per_iter_s"] = rec["time_per_iter_median_s"]
            rec["mean_step_time_s"] = (float(steps["step_time_s"].mean()) if len(steps)
                                       else np.nan)
            rec["n_steps"] = len(steps)
            # the spread over steps: interquartile range of the step times
            rec["time_per_iter_iqr_s"] = (float(steps["step_time_s"].quantile(0.75)
                                                - steps["step_time_s"].quantile(0.25))
                                          if len(steps) else np.nan)
            inner = steps["inner_iters"] if "inner_iters" in steps else pd.Series(dtype=float)
            rec["mean_inner_iters"] = (float(inner.mean()) if inner.notna().any()
                                       else np.nan)
            rec["inner_capped_frac"] = inner_capped_fraction(steps, hyper.get(cell, {}))
            rec["refresh_frac"] = (float(steps["refreshed"].mean())
                                   if "refreshed" in steps and steps["refreshed"].notna().any()
                                   else 1.0)
            for ph in phases:
                col = steps[ph]
                rec[f"mean_{ph}"] = float(col.mean()) if col.notna().any() else np.nan
            hit = traj[traj["rel_loss"] <= target]
            if len(hit):
                first = hit.iloc[0]
                rec["iters_to_target"] = float(first["iter"])
                rec["step_time_to_target_s"] = float(first["time_s"])
            else:
                rec["iters_to_target"] = np.nan
                rec["step_time_to_target_s"] = np.nan
            rec["last_iter"] = float(traj["iter"].iloc[-1])
            rec["last_time_s"] = float(traj["time_s"].iloc[-1])
            rec["min_rel_loss"] = float(traj["rel_loss"].min())
            measured[cell] = rec
    extra = pd.DataFrame.from_dict(measured, orient="index")
    extra.index.name = "cell"
    out = runs.merge(extra, left_on="cell", right_index=True, how="left")
    for col in ("time_per_iter_s", "time_per_iter_median_s", "time_per_iter_amortised_s",
                "inner_capped_frac", "refresh_frac", "iters_to_target",
                "step_time_to_target_s", "last_iter", "last_time_s", "mean_inner_iters",
                "mean_step_time_s"):
        if col not in out:
            out[col] = np.nan
    setup = pd.to_numeric(out["setup_time_s"], errors="coerce").fillna(0.0)
    out["time_to_target_s"] = setup + out["step_time_to_target_s"]
    out["target"] = target
    out["censor"] = [_censor(r, target) for r in out.itertuples(index=False)]
    # Lower bounds for runs that stopped before ε: they ran at least this long.
    lb = out["censor"].isin(["max_iters", "time_budget", "stopped early"])
    # A diverged run did not reach ε in the time it ran: a (weak) lower bound on time to ε.
    time_lb = lb | (out["censor"] == "diverged")
    out["iters_lower_bound"] = np.where(lb, out["last_iter"], np.nan)
    out["time_lower_bound_s"] = np.where(time_lb, setup + out["last_time_s"], np.nan)
    return out


def _params(text) -> dict:
    try:
        params = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


#: Per-step relative residual of the last inner solve, by the name each method records it.
RESIDUAL_COLUMNS = ("cg_rel_residual", "inner_rel_residual")


def inner_capped_fraction(steps: pd.DataFrame, params: dict) -> float:
    """Share of steps whose inner solve ran into its cap: the recorded relative residual is
    above ``tol`` (when a method records one), else ``inner_iters`` ≥ ``max_inner``. NaN for a
    method without inner iterations or without a cap. A capped step's inner count is the cap,
    not a measurement of what the solver needs."""
    if "inner_iters" not in steps or not steps["inner_iters"].notna().any():
        return np.nan
    cap, tol = params.get("max_inner"), params.get("tol")
    residual = next((c for c in RESIDUAL_COLUMNS if c in steps and steps[c].notna().any()),
                    None)
    if residual is not None and isinstance(tol, (int, float)):
        capped = steps[residual] > tol * (1 + 1e-9)
    elif isinstance(cap, (int, float)):
        capped = steps["inner_iters"] >= cap
    else:
        return np.nan
    return float(capped[steps["inner_iters"].notna()].mean())


def _censor(r, target: float) -> str | None:
    if r.status == "skipped":
        return "skipped"
    if not r.data_ok or r.last_iter != r.last_iter:  # NaN: no rows read
        return "failed" if r.status == "failed" else "no data"
    if r.iters_to_target == r.iters_to_target:  # reached ε
        return None
    if r.status in ("failed", "diverged", "max_iters", "time_budget"):
        return r.status
    if r.status == "converged":  # converged to its own looser target
        return "stopped early"
    return "no data"
