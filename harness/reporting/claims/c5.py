"""Claim C5 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import pandas as pd

from harness.reporting import fits
from harness.reporting.claims.common import (
    C5_TOLERANCE,
    FIT_CONSTANTS,
    FIT_RULE,
    LAMBDA_FRACTION,
    NTK_SLOPE,
    SLICE_KEYS,
    finished,
    fmt_fit,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim
from harness.reporting.ntk import lambda_ratio, neuron_movement, ntk_columns


def _needs_c5(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str, bool]:
    done = finished(cells)
    ntk = ntk_columns(cells, rows) if len(cells) else {}
    widths = 0
    if ntk.get("g0_hinf"):  # ‖G₀ − H∞‖ is per run: the widths that have it
        with_ntk = done[done[ntk["g0_hinf"]].notna()]
        widths = int(with_ntk.groupby([*SLICE_KEYS, "n"])["m"].nunique().max()) \
            if len(with_ntk) else 0
    return (f"NTK diagnostics (record.ntk=true) at {fits.MIN_SIZES} widths m",
            f"{widths} widths m with ‖G₀ − H∞‖" if any(ntk.values()) else "no diagnostics",
            widths >= fits.MIN_SIZES)


def lambda_holds(per_m: pd.Series) -> bool:
    """Part (b) on the minimum λ_min(G_t)/λ per width (index: m): at or above
    LAMBDA_FRACTION at the largest width and at every width from the first one where it
    holds."""
    per_m = per_m.sort_index()
    ok = (per_m >= LAMBDA_FRACTION).to_numpy()
    if not ok[-1]:
        return False
    first = int(ok.argmax())
    return bool(ok[first:].all())


@claim("C5", statement="NTK regime: G₀ → H∞ like 1/√m, λ_min(G_t) ≥ λ/2, weights move "
                       "O(1/√m)",
       rule="(a) log-log slope of ‖G₀ − H∞‖ vs m and (c) of the final per-neuron movement "
            "‖W_t − W₀‖_F/√m vs m (" + FIT_RULE + ") agree when the interval lies within "
            "{NTK_SLOPE} ± {C5_TOLERANCE:g}, fail when it lies wholly outside; (b) the "
            "minimum of λ_min(G_t)/λ along training, per width: it holds when it is ≥ "
            "{LAMBDA_FRACTION} at the largest width and at every width above the smallest "
            "one where it holds (the theorems need m large enough; a wider network must not "
            "leave the regime a narrower one kept), and fails otherwise. Contradicted if a "
            "part fails; supported if (a) agrees and every other measured part holds.",
       constants={"NTK_SLOPE": NTK_SLOPE, "C5_TOLERANCE": C5_TOLERANCE,
                  "LAMBDA_FRACTION": LAMBDA_FRACTION, **FIT_CONSTANTS},
       needs=_needs_c5)
def check_c5(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str]:
    cols = ntk_columns(cells, rows)
    ev, parts = [], {}

    def slope_part(name, frame, col, label):
        frame = frame[frame[col].notna()]
        if frame["m"].nunique() < fits.MIN_SIZES:
            if len(frame):
                ev.append(f"{label}: only {frame['m'].nunique()} widths (rule: "
                          f"≥{fits.MIN_SIZES})")
            return
        fit = fits.fit_loglog(frame["m"], frame[col], n_boot=1000)
        parts[name] = fits.agreement(fit.lo, fit.hi, NTK_SLOPE, C5_TOLERANCE)
        state = {True: "agrees", False: "fails"}.get(parts[name], "decides nothing")
        ev.append(f"{label} vs m: slope {fmt_fit(fit)} (theory {NTK_SLOPE}) over m="
                  f"{int(frame['m'].min())}–{int(frame['m'].max())}: {state}")

    if cols["g0_hinf"]:
        g0 = cells.drop_duplicates(["m", "seed", "n", "dataset", "data_params"])
        slope_part("a", g0, cols["g0_hinf"], "‖G₀ − H∞‖₂")
    lam = lambda_ratio(cells, rows, cols) if len(rows) else None
    if lam is not None and lam.notna().any():
        r = rows.assign(_lam=lam)[lambda f: f["_lam"].notna()]
        per_m = r.groupby("m")["_lam"].min()
        parts["b"] = lambda_holds(per_m)
        ev.append("min λ_min(G_t)/λ: " + ", ".join(f"{v:.2f} at m={int(m)}"
                                                   for m, v in per_m.items())
                  + ("" if parts["b"] else f": below {LAMBDA_FRACTION} at the largest width "
                     f"or at a width above one where it held"))
    if cols["w_move"] and len(rows):
        slope_part("c", neuron_movement(rows, cols), "neuron_move", "final ‖W_t − W₀‖_F/√m")
    if not ev:
        return UNDECIDED, "no NTK diagnostic fields in the runs"
    if any(v is False for v in parts.values()):
        verdict = CONTRADICTED
    elif parts.get("a") is True and all(v is True for v in parts.values()):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    return verdict, "; ".join(ev)
