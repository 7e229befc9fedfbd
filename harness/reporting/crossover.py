r"""The crossover map: in the (n, m) plane, which method is fastest, by how much, and where the
sketched Gauss–Newton step (BPSW21) beats the exact Gram step. Shared by the phase-diagram
figure and claim C6.

Censoring (what a cell can say):

* a run that reached ε gives its time exactly;
* a run that stopped before ε (``max_iters``, ``time_budget``, a looser own target) gives a
  *lower bound*: it needed more than the time it ran;
* ``skipped``, ``failed`` and ``diverged`` runs give nothing (they are listed, never ranked).

A cell's winner is *decided* only when the fastest exact time is below every lower bound of
the cell (no stopped run could still have beaten it). The margin is the runner-up's time over
the winner's; where the runner-up is a lower bound the margin is one too (``≥``).

For C6, per cell: S = the best ``gn_sketch`` variant, E = the best exact-Gram baseline
(``EXACT_BASELINES``: the O(mn²) methods the paper improves on), ratio = E / S (> 1: the
sketch wins). Both exact: a number; S exact and E a lower bound: ratio ≥ E/S; S a lower bound
and E exact: ratio ≤ E/S; both bounds: undecided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.reporting.metrics import MODEL_KEYS

#: The methods whose per-iteration cost is the O(mn²) exact Gram step that BPSW21 improves on.
EXACT_BASELINES = ("gn_gram", "ngd")
SKETCH_METHOD = "gn_sketch"
#: the BPSW21 variant of gn_sketch (its named preset), reported at the paper's accuracy beside
#: the fastest variant (tables.es_spread)
PAPER_VARIANT = "gn_sketch_paper"
#: What the map can rank: time to ε (every method), or time per outer iteration (amortised:
#: every step, refreshes included) among the Gauss–Newton family, whose steps all solve the
#: same regression (a first-order step is cheaper per iteration and says nothing by that).
METRICS = {"time_to_target": "time to ε",
           "time_per_iter": "time per Gauss–Newton iteration (amortised)"}


def gauss_newton(cells: pd.DataFrame) -> pd.Series:
    """Whether each cell's method is of the Gauss–Newton family (registry ``family``)."""
    from algorithms.base import ALGORITHMS

    def family(name: str) -> str:
        try:
            return ALGORITHMS.get(name).family
        except Exception:  # a method of a store whose plugin is not installed here
            return "unknown"
    fam = {a: family(a) for a in cells["algorithm"].dropna().unique()}
    return cells["algorithm"].map(fam) == "gauss_newton"
_BOUNDED = ("max_iters", "time_budget", "stopped early")


def method_names(cells: pd.DataFrame) -> pd.Series:
    """The name a cell is ranked under: its named preset (``gn_sketch_paper``) where it runs
    one other than the method's own defaults, else the method."""
    if "preset" not in cells:
        return cells["algorithm"].astype(str)
    preset = cells["preset"].where(cells["preset"].notna() & (cells["preset"] != ""), None)
    return pd.Series([p if isinstance(p, str) and p != a else a
                      for p, a in zip(preset, cells["algorithm"])], index=cells.index)


def _per_iter_column(cells: pd.DataFrame) -> str:
    for col in ("time_per_iter_amortised_s", "mean_step_time_s", "time_per_iter_s"):
        if col in cells:
            return col
    raise KeyError("no time-per-iteration column")


def grid_slice(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of the (dataset, d, dtype, device) slice with the most (n, m) pairs among
    those that form a grid (two or more n, each at two or more m); empty if there is none."""
    keys = [k for k in ("dataset", "d", "dtype", "device", *MODEL_KEYS) if k in cells]
    best, best_size = cells.iloc[0:0], 0
    for _, g in cells.groupby(keys, dropna=False) if keys else [(None, cells)]:
        pairs = g[["n", "m"]].drop_duplicates()
        # a grid: at least two values of n each measured at two or more widths
        widths = pairs.groupby("n")["m"].nunique()
        if (widths >= 2).sum() >= 2 and len(pairs) > best_size:
            best, best_size = g, len(pairs)
    return best


@dataclass
class Entry:
    """One method in one (n, m) cell: its value, and whether it is exact or a lower bound."""

    method: str
    value: float  # seconds (nan: nothing measured)
    kind: str  # "exact" | "lower bound" | the status that gave nothing


def _entry(method: str, r, metric: str, per_iter_col: str) -> Entry:
    if metric == "time_per_iter":
        v = getattr(r, per_iter_col)
        if v == v and r.status not in ("skipped", "failed"):
            return Entry(method, float(v), "exact")
        return Entry(method, math.nan, str(r.status))
    if r.censor is None or r.censor != r.censor:
        return Entry(method, float(r.time_to_target_s), "exact")
    if r.censor in _BOUNDED and r.time_lower_bound_s == r.time_lower_bound_s:
        return Entry(method, float(r.time_lower_bound_s), "lower bound")
    return Entry(method, math.nan, str(r.censor))


def cell_entries(cells: pd.DataFrame, metric: str = "time_to_target"
                 ) -> dict[tuple[int, int], list[Entry]]:
    """(n, m) -> every method's entry (the median over seeds where a method ran several)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {list(METRICS)}")
    per_iter_col = _per_iter_column(cells) if metric == "time_per_iter" else ""
    if metric == "time_per_iter":
        cells = cells[gauss_newton(cells)]
    cells = cells.assign(_method=method_names(cells).values)
    out: dict[tuple[int, int], list[Entry]] = {}
    for (n, m, method), g in cells.groupby(["n", "m", "_method"], sort=True):
        entries = [_entry(method, r, metric, per_iter_col) for r in g.itertuples(index=False)]
        exact = [e.value for e in entries if e.kind == "exact"]
        bounds = [e.value for e in entries if e.kind == "lower bound"]
        if exact and len(exact) >= len(bounds):
            best = Entry(method, float(np.median(exact)), "exact")
        elif bounds:
            best = Entry(method, float(np.median(bounds + exact)), "lower bound")
        else:
            best = entries[0]
        out.setdefault((int(n), int(m)), []).append(best)
    return out


@dataclass
class Ranking:
    n: int
    m: int
    winner: str | None  # None: no method measured
    winner_time: float
    decided: bool  # no lower bound below the winner's time
    runner_up: str | None
    margin: float  # runner-up / winner (nan: none)
    margin_is_bound: bool  # the runner-up is a lower bound: margin ≥ this
    unmeasured: list[str]


def rank(entries: list[Entry], n: int, m: int) -> Ranking:
    exact = sorted((e for e in entries if e.kind == "exact"), key=lambda e: e.value)
    bounds = [e for e in entries if e.kind == "lower bound"]
    unmeasured = [f"{e.method} ({e.kind})" for e in entries if e.value != e.value]
    if not exact:
        return Ranking(n, m, None, math.nan, False, None, math.nan, False, unmeasured)
    win = exact[0]
    decided = all(b.value >= win.value for b in bounds)
    others = sorted([*exact[1:], *bounds], key=lambda e: e.value)
    if others:
        ru = others[0]
        return Ranking(n, m, win.method, win.value, decided, ru.method, ru.value / win.value,
                       ru.kind == "lower bound", unmeasured)
    return Ranking(n, m, win.method, win.value, decided, None, math.nan, False, unmeasured)


def rankings(cells: pd.DataFrame, metric: str = "time_to_target") -> pd.DataFrame:
    """One row per (n, m) of the grid slice: winner, decided, runner-up, margin."""
    grid = grid_slice(cells)
    rows = [rank(entries, n, m).__dict__ for (n, m), entries
            in cell_entries(grid, metric).items()] if len(grid) else []
    return pd.DataFrame(rows, columns=list(Ranking.__dataclass_fields__))


@dataclass
class SketchComparison:
    n: int
    m: int
    ratio: float  # E / S
    kind: str  # "exact" | "lower bound" | "upper bound" | "undecided"
    sketch: str  # the best sketch variant
    baseline: str  # the best exact baseline

    @property
    def wins(self) -> bool | None:
        """True/False where decided, None where the bounds leave it open."""
        if self.kind == "exact":
            return bool(self.ratio > 1)
        if self.kind == "lower bound":
            return True if self.ratio > 1 else None
        if self.kind == "upper bound":
            return False if self.ratio <= 1 else None
        return None


def _best(entries: list[Entry]) -> Entry | None:
    exact = [e for e in entries if e.kind == "exact"]
    if exact:
        return min(exact, key=lambda e: e.value)
    bounds = [e for e in entries if e.kind == "lower bound"]
    return min(bounds, key=lambda e: e.value) if bounds else None


def sketch_vs_exact(cells: pd.DataFrame, metric: str = "time_to_target") -> pd.DataFrame:
    """Per (n, m) of the grid slice where both a gn_sketch variant and an exact baseline ran:
    E/S with its censoring (see the module docstring)."""
    grid = grid_slice(cells)
    rows = []
    if not len(grid):
        return pd.DataFrame()
    for (n, m), entries in cell_entries(grid, metric).items():
        sk = _best([e for e in entries if e.method.startswith(SKETCH_METHOD)])
        ex = _best([e for e in entries if e.method in EXACT_BASELINES])
        if sk is None or ex is None:
            continue
        kind = {("exact", "exact"): "exact", ("exact", "lower bound"): "lower bound",
                ("lower bound", "exact"): "upper bound"}.get((sk.kind, ex.kind), "undecided")
        comp = SketchComparison(n, m, ex.value / sk.value, kind, sk.method, ex.method)
        rows.append({**comp.__dict__, "wins": comp.wins, "m_over_n": m / n})
    return pd.DataFrame(rows)


def seed_ratios(grid: pd.DataFrame, n: int, m: int, sketch: str, baseline: str
                ) -> tuple[pd.Series, bool]:
    """E/S seed by seed in one cell of ``grid`` (a grid slice): the ``baseline`` method's time
    to ε over the ``sketch`` variant's (ranked names, ``method_names``), over the seeds where
    the sketch reached ε and the baseline reached it or stopped (its lower bound: the ratio
    is then one too). Returns (ratios indexed by seed, whether some ratio is a lower bound)."""
    names = method_names(grid)
    here = (grid["n"] == n) & (grid["m"] == m)
    s = grid[here & (names == sketch) & grid["time_to_target_s"].notna()]
    e = grid[here & (names == baseline)]
    reached = e["time_to_target_s"].notna()
    e_time = e["time_to_target_s"]
    if "time_lower_bound_s" in e:
        e_time = e_time.fillna(e["time_lower_bound_s"])
    e = e.assign(_t=e_time, _bound=~reached)[lambda f: f["_t"].notna()]
    s_by_seed = s.groupby("seed")["time_to_target_s"].min()
    # per seed the baseline's fastest run, and whether that run stopped before ε
    e_best = e.sort_values("_t").groupby("seed").head(1).set_index("seed")
    both = pd.concat([s_by_seed.rename("s"), e_best["_t"].rename("e"),
                      e_best["_bound"].rename("bound")], axis=1).dropna(subset=["s", "e"])
    return both["e"] / both["s"], bool(both["bound"].astype(bool).any())
