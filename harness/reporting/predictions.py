"""What the calibrated cost model (harness/costmodel/) adds to a report: predicted against
measured time per iteration, the predicted crossover frontier m*(n) on this machine and on
datasheet machines, and the prediction C6 needs where the sketch loses every measured cell.

Profiles: a measured one (``nlt-bench --calibrate``) is used for the cells' machine when its
``device_name`` matches theirs; datasheet profiles (``"source": "datasheet ..."``) only ever
give labelled predictions, never a comparison with measured cells.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from harness import costmodel as CM
from harness.common.errors import ConfigError
from harness.common.provenance import REPO_ROOT
from harness.execution.config import CONF_DIR
from harness.reporting.crossover import grid_slice

#: The held-out preset: its (n, m, d, seed) identities are scored apart from every other cell.
HELDOUT_PRESET = Path(CONF_DIR) / "sweep" / "heldout.yaml"

PROFILE_DIR = REPO_ROOT / "reports" / "profiles"
#: Widths the frontier is searched over: 2^10 … 2^24 (what fits the profile's memory).
FRONTIER_MS = tuple(2**k for k in range(10, 25))
FRONTIER_NS = tuple(2**k for k in range(8, 15))
#: Outer iterations to ε when the cells measured none: 2 for the exact step, 3 for the sketch
#: (the committed CPU report: every full-batch GN method needs 2–4).
DEFAULT_OUTER = {"gn_gram": 2.0, "gn_sketch": 3.0}


def is_datasheet(profile: CM.Profile) -> bool:
    return profile.is_datasheet


def label(profile: CM.Profile) -> str:
    kind = "datasheet prediction" if is_datasheet(profile) else "measured rates"
    return f"{profile.data.get('device_name')} ({kind})"


def load_profiles(cells: pd.DataFrame, paths: list[str] | None = None
                  ) -> tuple[CM.Profile | None, list[CM.Profile]]:
    """(the measured profile of the cells' machine or None, every datasheet profile).

    ``paths``: explicit profile files (the first measured one is the machine's); None: every
    ``reports/profiles/*.json``, the machine's chosen by matching ``device_name``.
    """
    files = [Path(p) for p in paths] if paths else sorted(PROFILE_DIR.glob("*.json"))
    profiles = [CM.Profile.load(p) for p in files]
    sheets = [p for p in profiles if is_datasheet(p)]
    measured = [p for p in profiles if not is_datasheet(p)]
    if paths:
        return (measured[0] if measured else None), sheets
    names = set(cells["device_name"].dropna()) if "device_name" in cells else set()
    # several calibrations of one machine: the most recent
    return CM.newest_measured(measured, names), sheets


def measured_outer(cells: pd.DataFrame) -> dict[str, float]:
    """Median outer iterations to ε of gn_gram and gn_sketch (defaults) where measured."""
    out = dict(DEFAULT_OUTER)
    if not len(cells) or "iters_to_target" not in cells:
        return out
    for method in out:
        got = cells.loc[(cells["algorithm"] == method) & cells["iters_to_target"].notna(),
                        "iters_to_target"]
        if "preset" in cells and method == "gn_sketch":
            got = cells.loc[(cells["algorithm"] == method) & (cells["preset"] == "gn_sketch")
                            & cells["iters_to_target"].notna(), "iters_to_target"]
        if len(got):
            out[method] = float(got.median())
    return out


def frontier(profile: CM.Profile, cells: pd.DataFrame, d: int | None = None) -> pd.DataFrame:
    """The predicted m*(n) of gn_sketch (its defaults) against gn_gram, per iteration and
    to ε, for n in the cells' grid (else ``FRONTIER_NS``)."""
    grid = grid_slice(cells) if len(cells) else cells
    ns = sorted(int(v) for v in grid["n"].unique()) if len(grid) else list(FRONTIER_NS)
    if d is None:
        d = int(grid["d"].iloc[0]) if len(grid) else 16
    return CM.frontier(profile, ns, FRONTIER_MS, d, outer_iters=measured_outer(cells))


def c6_prediction(profile: CM.Profile | None, cells: pd.DataFrame) -> dict | None:
    """What C6 needs from the model: does it predict a win to ε within the machine's
    memory at the grid's n? None without a measured profile of this machine."""
    if profile is None or is_datasheet(profile):
        return None
    table = frontier(profile, cells)
    wins = table[table["m_to_target"].notna()]
    parts = [f"n={int(r.n)}: m*={int(r.m_to_target)}" for r in wins.itertuples()]
    fits = [f"n={int(r.n)}: none up to m={r.m_max_fits}" for r in
            table[table["m_to_target"].isna()].itertuples()]
    text = (f"predicted frontier to ε from {label(profile)}: "
            + "; ".join(parts + fits))
    return {"predicted_win": bool(len(wins)), "text": text}


def measured_profiles(paths: list[str] | None = None) -> list[CM.Profile]:
    """Every measured (not datasheet) profile: of ``paths``, else of reports/profiles/."""
    files = [Path(p) for p in paths] if paths else sorted(PROFILE_DIR.glob("*.json"))
    return [p for p in (CM.Profile.load(f) for f in files) if not is_datasheet(p)]


def vs_measured(profile: CM.Profile | None, cells: pd.DataFrame,
                measured: list[CM.Profile] | tuple = ()) -> tuple[pd.DataFrame, dict]:
    """Predicted against measured per cell (every cell the model covers). Each cell is priced
    with the newest of ``measured`` calibrated on its own machine (``device_name``), else with
    ``profile``: a report of stores from two machines scores each on its own rates."""
    if not len(cells) or (profile is None and not measured):
        return pd.DataFrame(), CM.ratio_summary(pd.DataFrame())
    names = (cells["device_name"].fillna("") if "device_name" in cells
             else pd.Series("", index=cells.index))
    parts = []
    for name, part in cells.groupby(names, sort=True):
        prof = CM.newest_measured(list(measured), {name}) or profile
        if prof is None:
            continue
        rows = CM.predicted_vs_measured(part, prof)
        if len(rows):
            parts.append(rows.assign(profile=label(prof)))
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return rows, CM.ratio_summary(rows)


def pow2_text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    k = math.log2(float(v))
    return f"2^{int(k)}" if k == int(k) else f"{float(v):g}"


def frontier_table(profiles: list[CM.Profile], cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (profile, n): m* per iteration and to ε, the largest m that fits."""
    out = []
    for prof in profiles:
        for r in frontier(prof, cells).itertuples():
            out.append({"profile": label(prof), "n": int(r.n),
                        "m* per iteration": pow2_text(r.m_per_iteration),
                        "m* to ε": pow2_text(r.m_to_target),
                        "largest m in memory": pow2_text(r.m_max_fits),
                        "gram/sketch at that m": (f"{r.ratio_at_max:.2f}"
                                                  if r.ratio_at_max is not None
                                                  and np.isfinite(r.ratio_at_max) else "–")})
    return pd.DataFrame(out)


# --- in sample and held out ----------------------------------------------------------------


def _values(v) -> list:
    return [x.strip() for x in str(v).split(",")] if v is not None else []


def heldout_identities(path: Path = HELDOUT_PRESET) -> set[tuple[int, int, int, int]]:
    """(n, m, d, seed) of every cell of the held-out preset (``heldout.yaml``): shapes and
    seeds no calibration and no model revision used."""
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    params = cfg.get("hydra", {}).get("sweeper", {}).get("params", {})
    ns, ms = _values(params.get("data.n")), _values(params.get("model.m"))
    d = int(cfg.get("data", {}).get("d"))
    seeds = _values(params.get("seed")) or ["0"]
    return {(int(n), int(m), d, int(s)) for n in ns for m in ms for s in seeds}


def is_heldout(rows: pd.DataFrame, ids: set | None = None) -> pd.Series:
    """Per row (cells or predicted-vs-measured rows with n, m, d, seed): held out or not."""
    ids = heldout_identities() if ids is None else ids
    if not len(rows) or "seed" not in rows:
        return pd.Series(False, index=rows.index)
    return pd.Series([(int(r.n), int(r.m), int(r.d), int(r.seed)) in ids
                      for r in rows[["n", "m", "d", "seed"]].itertuples()], index=rows.index)


def accuracy_table(rows: pd.DataFrame, ids: set | None = None) -> pd.DataFrame:
    """The cost model's accuracy in sample and held out, side by side: per set, the share of
    cells within ``GOOD_RATIO``× with the predicted k and f (the model's accuracy) and with
    the cells' measured k and f fed in (what that would change). ``rows``: ``vs_measured``."""
    if not len(rows):
        return pd.DataFrame()
    held = is_heldout(rows, ids)
    out = []
    for name, part in (("in sample", rows[~held]), ("held out", rows[held])):
        if not len(part):
            continue
        rec = {"cells": name, "n cells": len(part)}
        for label_, column in (("predicted k, f", "ratio"),
                               ("measured k, f", "ratio_measured_k")):
            summary = CM.ratio_summary(part, column=column)
            if summary["cells"]:
                rec[f"within {summary['band']:g}× ({label_})"] = (
                    f"{summary['within']}/{summary['cells']} "
                    f"({100 * summary['fraction_within']:.0f}%)")
                rec[f"median ratio ({label_})"] = f"{summary['median_ratio']:.2f}"
        out.append(rec)
    return pd.DataFrame(out)


def tier_width(n: int, d: int = 16, profile: CM.Profile | None = None,
               memory_bytes: float | None = None,
               methods: tuple[tuple[str, dict], ...] = (("gn_gram", {}), ("gn_sketch", {})),
               ms: tuple[int, ...] = FRONTIER_MS) -> dict:
    """The width of an optional large-n tier (crossover_16384.yaml): the widest m of ``ms``
    at which every method's memory plan fits ``memory_bytes`` (default: the profile's), and
    the predicted time per step of each there. ``profile``: default this machine's newest
    measured one in reports/profiles/."""
    import torch

    if profile is None:
        profile = CM.machine_profile("auto", torch.device("cpu"))
        if profile is None:
            raise ConfigError("no measured profile of this machine in reports/profiles/ "
                              "(nlt-bench --calibrate writes one)")
    limit = profile.memory_bytes if memory_bytes is None else memory_bytes
    best = None
    for m in sorted(ms):
        if all(CM.fits_memory(name, params, n, m, d, limit) for name, params in methods):
            best = m
    if best is None:
        return {"n": n, "m": None}
    seconds = {f"{name}{'' if not params else ' ' + str(params)}": CM.predict(
        name, params, n, best, d, profile)["total"] for name, params in methods}
    return {"n": n, "m": best, "seconds_per_step": seconds}
