"""The NTK regime (DZPS19): the initial Gram matrix against its infinite-width limit, the
smallest eigenvalue of G_t along training, and how far each neuron moves, against width m.

What it draws is computed in ``harness.reporting.ntk``, which the claims check reads too.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from harness.reporting import style
from harness.reporting.figures.common import (
    Palette,
    count_axis,
    legend_clear,
    log_axis,
    method_names,
    method_order,
    new_figure,
    settle_legends,
    size_ticks,
)
from harness.reporting.figures.registry import Drawn, Inputs, NotDrawn, figure
from harness.reporting.fits import fit_loglog
from harness.reporting.ntk import lambda_ratio, neuron_movement, ntk_columns

#: The theory keeps λ_min(G_t) ≥ λ/2 along training.
LAMBDA_HALF = 0.5
#: The longest legend entry inside a third of the page (longer: the slope goes to the caption).
PANEL_LEGEND_CHARS = 30
LINE_NAMES = {"-": "solid", "--": "dashed", "-.": "dash-dotted", ":": "dotted"}


def _slope_text(x, y) -> str:
    """``slope −0.49 [−0.55, −0.43]`` of a log-log fit, or '' with too few points."""
    try:
        f = fit_loglog(x, y, n_boot=1000)
    except ValueError:
        return ""
    return f"slope {f.slope:.2f} [{f.lo:.2f}, {f.hi:.2f}]"


def _inverse_sqrt(ax, med: pd.Series) -> None:
    ref = med.iloc[0] * np.sqrt(med.index[0] / med.index.to_numpy(float))
    ax.plot(med.index, ref, color="0.45", ls=(0, (3, 2)), lw=0.8,
            label=r"theory $\propto m^{-1/2}$")


def _gram_gap(ax, cells: pd.DataFrame, col: str) -> str:
    g = cells[cells[col].notna()].drop_duplicates(["m", "seed", "n", "dataset", "data_params"])
    med = g.groupby("m")[col].median()
    ax.plot(g["m"], g[col], ls="none", marker="o", mfc="none", mec="0.55", mew=0.6, ms=3,
            label="one initialisation")
    fit = _slope_text(g["m"], g[col])
    full = "median" + (f", {fit}" if fit else "")
    ax.plot(med.index, med.values, color="k", marker="o",
            label=full if len(full) <= PANEL_LEGEND_CHARS else "median")
    if len(med):
        _inverse_sqrt(ax, med)
    log_axis(ax, "y")
    ax.set_xscale("log")
    size_ticks(ax, sorted(set(med.index)))
    ax.set_xlabel("width m")
    ax.set_ylabel(r"$\|G_0 - H^\infty\|_2$")
    legend_clear(ax)
    return fit


def _lambda_path(ax, rows: pd.DataFrame, series: pd.Series, palette: Palette) -> str:
    r = rows.assign(_lam=series)[lambda f: f["_lam"].notna() & (f["iter"] >= 1)]
    widths = sorted(r["m"].unique())
    cmap = plt.get_cmap(style.SEQUENTIAL_CMAP)
    shade = {m: cmap(0.85 * i / max(len(widths) - 1, 1)) for i, m in enumerate(widths)}
    variants = sorted(r["variant"].unique(), key=method_order)
    for variant in variants:
        gv = r[r["variant"] == variant]
        for m in widths:
            med = gv[gv["m"] == m].groupby("iter")["_lam"].median()
            if len(med):
                ax.plot(med.index, med.values, color=shade[m], lw=1.0,
                        ls=palette(variant)["linestyle"])
    ax.axhline(LAMBDA_HALF, color="0.4", ls=":", lw=0.7, label="_ref_half")
    ax.annotate("theory bound ½", (0.0, LAMBDA_HALF), xycoords=("axes fraction", "data"),
                xytext=(2, 2), textcoords="offset points", ha="left", va="bottom",
                fontsize=6, color="0.3")
    ax.set_xscale("log")
    count_axis(ax, "x")
    ax.set_ylim(min(0.45, float(r["_lam"].min()) - 0.02), max(1.02, float(r["_lam"].max())))
    ax.set_xlabel("outer iteration t (log scale)")
    ax.set_ylabel(r"$\lambda_{\min}(G_t)/\lambda$")
    handles = [Line2D([], [], color=shade[m], lw=1.2) for m in widths]
    labels = [f"m = {int(m)}" for m in widths]
    if len(variants) > 1:  # line style tells the methods apart: key it in grey
        handles += [Line2D([], [], color="0.4", lw=1.0, ls=palette(v)["linestyle"])
                    for v in variants]
        labels += [f"{LINE_NAMES.get(palette(v)['linestyle'], 'line')}: {palette.label(v)}"
                   for v in variants]
    legend_clear(ax, handles, labels, ncol=2 if len(handles) > 3 else 1, fontsize=5.5)
    return ", ".join(f"{LINE_NAMES.get(palette(v)['linestyle'], 'solid')}: "
                     f"{palette.label(v)}" for v in variants)


def _movement(ax, rows: pd.DataFrame, cols: dict, palette: Palette) -> list[str]:
    last = neuron_movement(rows, cols)
    fits = []
    for variant in sorted(last["variant"].unique(), key=method_order):
        g = last[last["variant"] == variant]
        med = g.groupby("m")["neuron_move"].median()
        st = palette(variant)
        fit = _slope_text(g["m"], g["neuron_move"])
        label = palette.label(variant)
        full = f"{label}, {fit}" if fit else label  # a long one: the slope is in the caption
        ax.plot(med.index, med.values, color=st["color"], marker=st["marker"],
                ls=st["linestyle"], label=full if len(full) <= PANEL_LEGEND_CHARS else label)
        if fit:
            fits.append(f"{label} {fit}")
    med = last.groupby("m")["neuron_move"].median()
    if len(med):
        _inverse_sqrt(ax, med)
    log_axis(ax, "y")
    ax.set_xscale("log")
    size_ticks(ax, sorted(set(last["m"])))
    ax.set_xlabel("width m")
    ax.set_ylabel(r"final $\|W_t - W_0\|_F/\sqrt{m}$")
    legend_clear(ax)
    return fits


@figure(7, "ntk", "NTK regime: ‖G₀ − H∞‖ vs m, λ_min(G_t)/λ along training, movement")
def ntk(data: Inputs) -> list[Drawn]:
    cells, rows = data.cells, data.rows
    cols = ntk_columns(cells, rows)
    lam = lambda_ratio(cells, rows, cols) if len(rows) else None
    panels = [p for p, ok in (("g0", cols["g0_hinf"]),
                              ("lam", lam is not None and lam.notna().any()),
                              ("w", cols["w_move"])) if ok]
    if not panels:
        raise NotDrawn("no NTK diagnostic fields (run with record.ntk=true, e.g. the ntk sweep)")
    shown = cells[cells["cell"].isin(rows["cell"])] if len(rows) else cells
    if len(shown):  # one variant per method (its most run one): the panels stay legible
        keep = [g["variant"].value_counts().sort_index().idxmax()
                for _, g in shown.groupby(method_names(shown))]
        shown = shown[shown["variant"].isin(keep)]
        rows = rows[rows["cell"].isin(shown["cell"])]
    palette = Palette(shown)
    fig, axes = new_figure(len(panels), "page" if len(panels) > 1 else "column")
    parts = []
    for i, (ax, panel) in enumerate(zip(axes, panels)):
        tag = f"({'abc'[i]})"
        ax.set_title(tag, loc="left", fontweight="bold")
        if panel == "g0":
            fit = _gram_gap(ax, cells, cols["g0_hinf"])
            parts.append(f"{tag} spectral distance of the initial Gram matrix to its "
                         "infinite-width limit against m (open: single initialisations)"
                         + (f", fitted {fit}" if fit else ""))
        elif panel == "lam":
            lines = _lambda_path(ax, rows, lam, palette)
            parts.append(f"{tag} λ_min(G_t)/λ along training, median over seeds; colour: "
                         f"width m; line style: method ({lines}); dotted: the ½ the theory "
                         "keeps it above")
        else:
            fits = _movement(ax, rows, cols, palette)
            parts.append(f"{tag} root-mean-square movement of one neuron at the end of "
                         "training, ‖W_t − W_0‖_F/√m, against m" +
                         (f", fitted {'; '.join(fits)}" if fits else ""))
    settle_legends(fig)
    caption = ("; ".join(parts) + ". Grey dashed: the 1/√m of the theory (DZPS19), through "
               "the first median; slopes with 95% bootstrap intervals. Fields: "
               + ", ".join(f"{k}={v}" for k, v in cols.items() if v) + ".")
    return [Drawn(fig, caption)]
