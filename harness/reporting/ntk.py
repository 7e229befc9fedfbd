"""The NTK diagnostics of a store (``record.ntk=true``): which fields a store has, λ_min(G_t)/λ
along training, and how far each neuron moved. What claim C5 decides on and figure 7 draws."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: The NTK diagnostic's fields (``record.ntk=true``, harness/execution/runner.py); patterns are the
#: fallback for stores written by other versions.
NTK_FIELDS = {"g0_hinf": ("ntk_gram_gap", r"h_?inf|hinf|gram_gap"),
              "lam_ratio": ("ntk_lambda_min_ratio",
                            r"(lambda|lam)_?min.*(ratio|over|rel)|(ratio|rel).*(lambda|lam)_?min"),
              "lam_min": ("ntk_lambda_min", None), "lam": ("ntk_lambda", None),
              "w_move": ("ntk_weight_change", r"weight_(change|dist|move)|w_?minus_?w0")}
_NTK_IN_ROWS = ("lam_ratio", "lam_min", "w_move")


def ntk_columns(cells: pd.DataFrame, rows: pd.DataFrame) -> dict[str, str | None]:
    """Names of the NTK diagnostic's fields present: ``g0_hinf`` (run.json, ‖G_0 − H∞‖₂),
    ``lam_ratio`` (rows, λ_min(G_t)/λ) or ``lam_min`` with a run-level ``lam`` (λ),
    ``w_move`` (rows, ‖W_t − W_0‖_F)."""
    found: dict[str, str | None] = {}
    for key, (name, pattern) in NTK_FIELDS.items():
        frame = rows if key in _NTK_IN_ROWS else cells
        found[key] = None
        if not len(frame):
            continue
        names = [name] + [c for c in frame.columns if pattern and re.search(pattern, c, re.I)]
        for c in names:
            if c in frame.columns and pd.api.types.is_numeric_dtype(frame[c]) \
                    and frame[c].notna().any():
                found[key] = c
                break
    return found


def lambda_ratio(cells: pd.DataFrame, rows: pd.DataFrame, cols: dict) -> pd.Series | None:
    """λ_min(G_t)/λ per row, measured directly or from λ_min(G_t) and the run's λ."""
    if cols["lam_ratio"]:
        return rows[cols["lam_ratio"]]
    if cols["lam_min"] and cols["lam"]:
        return rows[cols["lam_min"]] / rows["cell"].map(cells.set_index("cell")[cols["lam"]])
    return None


def neuron_movement(rows: pd.DataFrame, cols: dict) -> pd.DataFrame:
    """Final ‖W_t − W_0‖_F/√m per cell: the root-mean-square movement of one neuron w_r, the
    quantity DZPS19 bound by O(1/√m) (the Frobenius norm itself stays O(1))."""
    col = cols["w_move"]
    last = rows[rows[col].notna()].sort_values("iter").groupby("cell").last().reset_index()
    last["neuron_move"] = last[col] / np.sqrt(last["m"].astype(float))
    return last
