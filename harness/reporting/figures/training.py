"""Training curves: relative loss against outer iteration and against wall-clock time, for one
problem size (the one with the most methods), one variant per method and per named preset."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from harness.reporting.figures.common import (
    CONTEXT_COLS,
    Palette,
    collect_handles,
    context_parts,
    count_axis,
    legend_below,
    log_axis,
    method_names,
    method_order,
    new_figure,
)
from harness.reporting.figures.registry import Drawn, Inputs, NotDrawn, figure

#: Characters per title line of a one-column figure (its axes are narrower than the page's
#: column by the y label; longer titles wrap rather than run off the edge).
TITLE_CHARS = 46
#: Relative losses below this are drawn at it (float64 round-off; log axes need > 0).
FLOOR = 1e-16


def _problem(cells: pd.DataFrame) -> pd.DataFrame | None:
    """Cells of the (context, device, n, m) with the most methods that have trajectories,
    one variant per method (its most run one), so an ablation does not crowd the plot."""
    got = cells[cells["data_ok"].astype(bool) & cells["last_iter"].notna()]
    if not len(got):
        return None
    keys = CONTEXT_COLS + ["device", "n", "m"]
    score = got.groupby(keys, dropna=False).agg(a=("algorithm", "nunique"),
                                                s=("seed", "nunique"), c=("cell", "count"))
    best = score.reset_index().sort_values(["a", "s", "c", "n"], ascending=False).iloc[0]
    mask = np.ones(len(got), bool)
    for k in keys:
        mask &= (got[k] == best[k]).to_numpy()
    prob = got[mask]
    # one variant per method, and one per named preset of it (gn_sketch_paper: the paper's
    # variant is a question of its own, never dropped for the defaults)
    keep = [g["variant"].value_counts().sort_index().idxmax()
            for _, g in prob.groupby(method_names(prob))]
    return prob[prob["variant"].isin(keep)]


def _trajectories(data: Inputs):
    prob = _problem(data.cells)
    if prob is None or not len(data.rows):
        raise NotDrawn("no readable trajectories")
    traj = data.rows[data.rows["cell"].isin(prob["cell"])].copy()
    if not len(traj):
        raise NotDrawn("no readable trajectories")
    traj = traj.merge(prob[["cell", "algorithm"]], on="cell", how="left")
    parts = context_parts(prob)
    where = (f"n = {int(prob['n'].iloc[0])}, m = {int(prob['m'].iloc[0])}, "
             + ", ".join(parts.values()))
    return prob, traj, where


def _seeds_text(traj: pd.DataFrame, palette: Palette) -> str:
    seeds = traj.groupby("variant")["cell"].nunique()
    common = int(seeds.mode().iloc[0])
    odd = [f"{palette.label(v)}: {int(k)}" for v, k in seeds.items() if k != common]
    return f"median over {common} seed{'s' * (common > 1)}" + (
        f" ({', '.join(odd)})" if odd else "") + (" (band: min–max)" if seeds.max() > 1 else "")


def _marks(n_points: int):
    """Markers on every point of a short curve, ten spread along a long one (greyscale)."""
    return None if n_points <= 12 else 0.1


def _target_line(ax, eps: float) -> None:
    ax.axhline(eps, color="0.4", lw=0.6, ls=":", zorder=1, label="_ref_target")
    ax.annotate(f"ε = {eps:g}", (0.0, eps), xycoords=("axes fraction", "data"),
                xytext=(2, -2), textcoords="offset points", ha="left", va="top",
                fontsize=6, color="0.3")


def _finish(fig, ax, where: str) -> None:
    handles, labels = collect_handles([ax])
    legend_below(fig, handles, labels, ncol=3)
    ax.set_title(textwrap.fill(where, TITLE_CHARS), fontsize=6.5)
    ax.set_ylabel("relative loss $L_t/L_0$")


@figure(3, "loss_vs_iter", "Relative loss vs outer iteration")
def loss_vs_iter(data: Inputs) -> list[Drawn]:
    prob, traj, where = _trajectories(data)
    palette = Palette(prob)
    variants = sorted(traj["variant"].unique(), key=method_order)
    fig, (ax,) = new_figure(1, "column", legend_entries=len(variants), legend_ncol=3,
                            title_lines=len(textwrap.wrap(where, TITLE_CHARS)))
    for variant in variants:
        g = traj[(traj["variant"] == variant) & (traj["iter"] >= 1)]
        stats = g.groupby("iter")["rel_loss"].agg(["median", "min", "max"]).clip(lower=FLOOR)
        if not len(stats):
            continue
        st = palette(variant)
        ax.plot(stats.index, stats["median"], color=st["color"], ls=st["linestyle"],
                marker=st["marker"], markevery=_marks(len(stats)), label=palette.label(variant))
        if g["cell"].nunique() > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=st["color"],
                            alpha=0.15, lw=0)
    log_axis(ax, "y")
    ax.set_xscale("log")
    count_axis(ax, "x")
    ax.set_xlabel("outer iteration t (log scale)")
    _target_line(ax, data.target)
    _finish(fig, ax, where)
    caption = (f"Relative loss after t outer iterations, {where}; {_seeds_text(traj, palette)}; "
               "one variant per method (its most run one) and per named preset (the paper's "
               "variant). Logarithmic t, so that methods "
               "that converge in a few iterations and those that need hundreds read on one "
               f"axis (t = 0 is L_0/L_0 = 1). Dotted: the target ε = {data.target:g}. "
               + palette.caption())
    return [Drawn(fig, caption.strip())]


def _wall_curves(group: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Per cell, L_t/L_0 at each grid time: 1 until setup ends, then the loss of the last
    finished step (a step function); after the run ended, its last value."""
    vals = []
    for _, c in group.groupby("cell"):
        c = c.sort_values("iter")
        wall = c["wall"].to_numpy(float)
        loss = c["rel_loss"].to_numpy(float)
        idx = np.searchsorted(wall, grid, side="right") - 1
        vals.append(np.where(idx < 0, 1.0, loss[np.clip(idx, 0, None)]))
    return np.clip(np.array(vals), FLOOR, None)


@figure(4, "loss_vs_time", "Relative loss vs wall-clock time")
def loss_vs_time(data: Inputs) -> list[Drawn]:
    prob, traj, where = _trajectories(data)
    palette = Palette(prob)
    setup = prob.set_index("cell")["setup_time_s"].astype(float).fillna(0.0)
    traj["wall"] = traj["time_s"].astype(float) + traj["cell"].map(setup).astype(float)
    variants = sorted(traj["variant"].unique(), key=method_order)
    fig, (ax,) = new_figure(1, "column", legend_entries=len(variants), legend_ncol=3,
                            title_lines=len(textwrap.wrap(where, TITLE_CHARS)))
    # the axis starts a little before the first step anywhere: setup times near zero would
    # otherwise stretch a flat L = 1 over decades
    first = traj[traj["iter"] >= 1].groupby("variant")["wall"].min()
    left = max(float(first.min()) / 3 if len(first) else 1e-5, 1e-6)
    for variant in variants:
        g = traj[traj["variant"] == variant]
        start = max(float(g.groupby("cell")["wall"].min().min()), left)
        end = max(float(g.groupby("cell")["wall"].max().max()), start * 1.01)
        grid = np.geomspace(start, end, 400)
        vals = _wall_curves(g, grid)
        med = np.median(vals, axis=0)
        steps = np.flatnonzero(np.diff(med, prepend=med[0] + 1) != 0)  # where it drops
        marks = list(steps[:: max(1, len(steps) // 8)]) + [len(grid) - 1]
        st = palette(variant)
        ax.plot(grid, med, color=st["color"], ls=st["linestyle"], marker=st["marker"],
                markevery=marks, label=palette.label(variant))
        if len(vals) > 1:
            ax.fill_between(grid, vals.min(axis=0), vals.max(axis=0), color=st["color"],
                            alpha=0.15, lw=0, step="post")
    ax.set_xlim(left=left)
    log_axis(ax, "y")
    log_axis(ax, "x")
    ax.set_xlabel("time (s): setup + cumulative step time")
    _target_line(ax, data.target)
    _finish(fig, ax, where)
    caption = (f"Same runs as figure 3 against wall-clock time; {_seeds_text(traj, palette)}. "
               "Each curve starts at L_t/L_0 = 1 when its setup ends (or at the left edge) "
               "and drops as steps finish (evaluation excluded); markers where it drops. "
               + palette.caption())
    return [Drawn(fig, caption.strip())]
