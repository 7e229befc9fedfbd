"""Claim C4 of the spec (§5): its rule and what it needs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.reporting.claims.common import (
    C4_AGREE,
    C4_DISAGREE,
    C4_MIN_PAIRS,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim
from harness.reporting.metrics import with_model


def trajectory_gaps(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per gn_sketch run and its exact partner that reached ε: the largest gap in decades
    and the largest relative gap |L_s − L_e| / L_e over iterations where both are above ε
    (infinite when the gn_sketch run diverged)."""
    out = []
    if not len(rows):
        return pd.DataFrame(out)
    key = with_model(["dataset", "data_params", "n", "m", "d", "seed", "dtype", "device"], cells)
    ok = cells[cells["data_ok"].astype(bool)]
    exact = ok[ok["algorithm"].isin(["gn_gram", "gn_exact"]) & ok["iters_to_target"].notna()]
    by_cell = {c: g.set_index("iter")["rel_loss"] for c, g in rows.groupby("cell")}
    for r in ok[ok["algorithm"] == "gn_sketch"].itertuples(index=False):
        match = exact
        for k in key:
            match = match[match[k] == getattr(r, k)]
        if not len(match):
            continue
        match = match.sort_values("algorithm", ascending=False)  # gn_gram before gn_exact
        partner = match.iloc[0]
        s, e = by_cell.get(r.cell), by_cell.get(partner["cell"])
        if s is None or e is None:
            continue
        both = pd.concat([s, e], axis=1, keys=["s", "e"]).dropna()
        both = both[(both.index > 0) & (both["s"] > r.target) & (both["e"] > r.target)]
        diverged = r.status == "diverged"
        if not len(both) and not diverged:
            continue
        dec = np.abs(np.log10(both["s"] / both["e"])) if len(both) else pd.Series([0.0])
        rel = (np.abs(both["s"] - both["e"]) / both["e"]) if len(both) else pd.Series([0.0])
        out.append({"variant": r.variant, "partner": partner["algorithm"], "n": r.n, "m": r.m,
                    "seed": r.seed, "sketch_status": r.status,
                    "sketch_reached": r.iters_to_target == r.iters_to_target,
                    "gap_decades": float("inf") if diverged else float(dec.max()),
                    "max_rel_gap": float("inf") if diverged else float(rel.max()),
                    "iters_sketch": r.iters_to_target,
                    "iters_exact": partner["iters_to_target"]})
    return pd.DataFrame(out)


def _needs_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str, bool]:
    try:
        pairs = len(trajectory_gaps(cells, rows)) if len(cells) else 0
    except Exception:  # odd data: the claims check reports it
        pairs = 0
    return (f"{C4_MIN_PAIRS} gn_sketch runs with an exact partner (same problem and seed) "
            f"that reached ε", f"{pairs} pairs", pairs >= C4_MIN_PAIRS)


@claim("C4", statement="gn_sketch follows the exact Gauss–Newton trajectory",
       rule="Pair each gn_sketch run with the gn_gram (else gn_exact) run of the same problem "
            "and seed that reached ε (diverged or capped partners give no pair); per pair the "
            "largest gap |log10(L_sketch/L_exact)| over the iterations where both relative "
            "losses are above ε (a gn_sketch run that diverged: infinite). With "
            "≥{C4_MIN_PAIRS} pairs: supported if the median gap is ≤ {C4_AGREE} decades and "
            "every gn_sketch run of the pairs reached ε; contradicted if the median is > "
            "{C4_DISAGREE}.",
       constants={"C4_MIN_PAIRS": C4_MIN_PAIRS, "C4_AGREE": C4_AGREE,
                  "C4_DISAGREE": C4_DISAGREE},
       needs=_needs_c4)
def check_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str]:
    gaps = trajectory_gaps(cells, rows)
    if len(gaps) < C4_MIN_PAIRS:
        return UNDECIDED, (f"{len(gaps)} gn_sketch run(s) with an exact GN partner that "
                           f"reached ε (same problem and seed); the rule needs {C4_MIN_PAIRS}")
    med = float(gaps["gap_decades"].median())
    unreached = gaps[~gaps["sketch_reached"].astype(bool)]
    ev = [f"{len(gaps)} pairs; median largest gap {med:.2f} decades, worst "
          f"{gaps['gap_decades'].max():.2f}; largest relative loss gap "
          f"{gaps['max_rel_gap'].max():.2g}"]
    if len(unreached):
        ev.append(f"{len(unreached)} gn_sketch run(s) of the pairs did not reach ε ("
                  + ", ".join(sorted(set(unreached["sketch_status"]))) + ")")
    for variant, g in gaps.groupby("variant"):
        its = g.dropna(subset=["iters_sketch", "iters_exact"])
        extra = (f", iterations to ε {its['iters_sketch'].median():g} vs "
                 f"{its['iters_exact'].median():g}" if len(its) else "")
        ev.append(f"{variant}: median gap {g['gap_decades'].median():.2f} decades{extra}")
    if med > C4_DISAGREE:
        verdict = CONTRADICTED
    elif med <= C4_AGREE and not len(unreached):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    return verdict, "; ".join(ev)
