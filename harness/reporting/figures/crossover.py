"""The crossover map: the fastest method in each (n, m) cell, to ε and per iteration."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.patches import Patch, Rectangle

from harness.reporting import style
from harness.reporting.crossover import METRICS, grid_slice, rankings
from harness.reporting.figures.common import (
    legend_below,
    method_order,
    new_figure,
    panel_tag,
)
from harness.reporting.figures.registry import Drawn, Inputs, NotDrawn, figure
from harness.reporting.style import _label_text

_UNMEASURED = "#E8E8E8"


def _pow2(v: int) -> str:
    k = math.log2(v)
    return f"$2^{{{int(k)}}}$" if k == int(k) else f"{v:g}"


def _margin_text(r) -> str:
    if r.winner is None:
        return "–"
    if r.margin != r.margin:
        return "only"
    if not r.decided:  # a run that stopped early may still have been faster: no margin
        return "?"
    return f"{'≥' if r.margin_is_bound else ''}{r.margin:.2f}×"


@figure(11, "crossover_map", "Fastest method in the (n, m) plane")
def crossover_map(data: Inputs) -> list[Drawn]:
    grid = grid_slice(data.cells)
    if not len(grid):
        raise NotDrawn("needs a grid of cells in both n and m (the crossover sweep)")
    ns = sorted(int(v) for v in grid["n"].unique())
    ms = sorted(int(v) for v in grid["m"].unique())
    panels = [(metric, rankings(data.cells, metric)) for metric in METRICS]
    winners = sorted({w for _, r in panels if len(r) for w in r["winner"].dropna()},
                     key=method_order)
    fig, axes = new_figure(len(panels), legend_entries=len(winners) + 1, sharey=True)
    for i, (ax, (metric, ranked)) in enumerate(zip(axes, panels)):
        for r in ranked.itertuples(index=False):
            x, y = ns.index(r.n), ms.index(r.m)
            color = style.method_color(r.winner) if r.winner else _UNMEASURED
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=color,
                                   edgecolor="white", linewidth=1.2,
                                   hatch="" if r.decided or r.winner is None else "////",
                                   alpha=0.85 if r.winner else 1.0))
            dark = r.winner is not None and style.method_color(r.winner) in (
                "#000000", "#0072B2", "#882255", "#332288", "#D55E00")
            ax.text(x, y, _margin_text(r), ha="center", va="center", fontsize=5.5,
                    color="white" if dark else "black")
        ax.set_xlim(-0.5, len(ns) - 0.5)
        ax.set_ylim(-0.5, len(ms) - 0.5)
        ax.set_xticks(range(len(ns)), [_pow2(v) for v in ns])
        ax.set_yticks(range(len(ms)), [_pow2(v) for v in ms])
        ax.grid(False)
        ax.set_xlabel("samples n")
        if i == 0:
            ax.set_ylabel("width m")
        ax.set_title(f"{panel_tag(i, len(panels))}{METRICS[metric]}")
    handles = [Patch(facecolor=style.method_color(w), label=_label_text(w)) for w in winners]
    handles.append(Patch(facecolor="white", edgecolor="#666666", hatch="////",
                         label="winner not decided"))
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=4)
    context = grid.iloc[0]
    caption = (f"Each square: the method with the least {METRICS['time_to_target']} (a) and "
               f"{METRICS['time_per_iter']} (b), coloured by method; the number is the "
               "runner-up's time over the winner's (≥: the runner-up stopped before ε, a "
               "lower bound). Hatched with '?': a run that stopped early might still have "
               "won. Grey '–': nothing measured (skipped above the memory budget, or failed). "
               f"Data: {context.get('dataset')}, d = {context.get('d')}, "
               f"{context.get('dtype')}, {context.get('device')}; median over seeds.")
    if not np.isfinite([len(r) for _, r in panels]).all():
        raise NotDrawn("no ranking")
    return [Drawn(fig, caption)]
