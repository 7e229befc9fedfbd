"""Preconditioner quality against the sketch ratio s/n, per sketch type (spec §4: "report for
each: time, and the condition number of R⁻ᵀ G R⁻¹ (small problems) or the inner iteration
count (large ones), as a function of s/n")."""

from __future__ import annotations

import json
import re

import pandas as pd
from matplotlib.lines import Line2D

from harness.reporting import style
from harness.reporting.figures.common import (
    DONE,
    context_parts,
    count_axis,
    fmt_value,
    legend_below,
    log_axis,
    main_context,
    new_figure,
    panel_tag,
    params,
    size_ticks,
)
from harness.reporting.figures.registry import Drawn, Inputs, NotDrawn, figure

#: Sketch ratios a panel needs: with two, each line is two points and the figure says little.
MIN_RATIOS = 3


def sketch_keys(cells: pd.DataFrame) -> tuple[str | None, str | None]:
    """(sketch-ratio hyperparameter, sketch-type hyperparameter) of gn_sketch, if any."""
    keys = {k for p in params(cells) for k in p}
    ratio = next((k for k in ("sketch_ratio", "ratio", "oversampling", "sketch_factor", "c")
                  if k in keys), None)
    if ratio is None:
        ratio = next((k for k in sorted(keys) if "ratio" in k), None)
    kind = next((k for k in ("sketch", "sketch_type", "sketch_name") if k in keys), None)
    return ratio, kind


def cond_column(rows: pd.DataFrame) -> str | None:
    """A per-iteration condition-number column, if the runs recorded one."""
    return next((c for c in rows.columns
                 if re.search(r"(^|_)(cond|kappa|condition)(_|$)", c, re.I)
                 and pd.api.types.is_numeric_dtype(rows[c])), None)


@figure(6, "precond_vs_ratio", "Preconditioner quality vs sketch ratio")
def precond_vs_ratio(data: Inputs) -> list[Drawn]:
    cells, rows = data.cells, data.rows
    sk = cells[(cells["algorithm"] == "gn_sketch") & cells["status"].isin(DONE)].copy()
    if not len(sk):
        raise NotDrawn("no gn_sketch runs")
    ratio, kind = sketch_keys(sk)
    if ratio is None:
        raise NotDrawn("gn_sketch runs have no sketch-ratio parameter")
    ps = params(sk)
    sk["ratio"] = pd.to_numeric(pd.Series([p.get(ratio) for p in ps], index=sk.index),
                                errors="coerce")
    sk["sketch"] = [str(p.get(kind, "default")) for p in ps]
    sk = sk[sk["ratio"].notna()]
    if sk["ratio"].nunique() < MIN_RATIOS:
        raise NotDrawn(f"fewer than {MIN_RATIOS} sketch ratios measured "
                       f"({sk['ratio'].nunique()}): too few points for a trend")
    cond = cond_column(rows) if len(rows) else None
    if cond:
        sk["cond"] = sk["cell"].map(rows[rows["iter"] > 0].groupby("cell")[cond].mean())
    ctx = main_context(sk)
    per_size = ctx.groupby(["n", "m"]).agg(r=("ratio", "nunique"), c=("cell", "count"))
    per_size = per_size.reset_index().sort_values(["r", "c", "n", "m"], ascending=False)
    n, m = per_size["n"].iloc[0], per_size["m"].iloc[0]
    ctx = ctx[(ctx["n"] == n) & (ctx["m"] == m)].copy()
    # what else varies (e.g. refresh) is told by line style; what does not goes to the caption
    ps = params(ctx)
    keys = sorted({k for p in ps for k in p} - {ratio, kind})
    varying = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in ps}) > 1]
    fixed = ", ".join(f"{k}={fmt_value(ps[0][k])}" for k in keys if k not in varying)
    ctx["other"] = [", ".join(f"{k}={fmt_value(p.get(k))}" for k in varying) for p in ps]
    others = sorted(ctx["other"].unique())
    dash = dict(zip(others, ("-", "--", ":", "-.") * 4))
    panels = [("mean_inner_iters", "mean inner iterations", True),
              ("time_per_iter_s", "time per outer iteration (s)", False)]
    if cond and ctx["cond"].notna().any():
        panels.append(("cond", r"condition number of $R^{-T} G R^{-1}$", False))
    sketches = sorted(ctx["sketch"].unique())
    n_entries = len(sketches) + (len(others) if len(others) > 1 else 0)
    fig, axes = new_figure(len(panels), legend_entries=n_entries, legend_ncol=5,
                           title_lines=1)
    for i, (ax, (col, label, counts)) in enumerate(zip(axes, panels)):
        for (sketch, other), g in ctx.groupby(["sketch", "other"], sort=True):
            med = g.groupby("ratio")[col].median().dropna()
            st = style.sketch_style(sketch)
            ax.plot(med.index, med.values, color=st["color"], marker=st["marker"],
                    ls=dash[other])
        ax.set_xscale("log", base=2)
        (count_axis if counts else log_axis)(ax, "y")
        size_ticks(ax, sorted(ctx["ratio"].unique()))
        ax.set_xlabel(f"sketch ratio s/n ({ratio})")
        ax.set_ylabel(label)
        ax.set_title(panel_tag(i, len(panels)).strip(), loc="left", fontweight="bold")
    handles = [Line2D([], [], color=style.sketch_style(s)["color"],
                      marker=style.sketch_style(s)["marker"]) for s in sketches]
    labels = [style._label_text(s) for s in sketches]
    if len(others) > 1:
        handles += [Line2D([], [], color="0.3", ls=dash[o]) for o in others]
        labels += [style._label_text(o) for o in others]
    legend_below(fig, handles, labels, ncol=min(5, len(handles)))
    where = f"n = {int(n)}, m = {int(m)}, " + ", ".join(context_parts(ctx).values())
    fig.suptitle(where)
    cap = (f"gn_sketch per sketch type (colour and marker) against the sketch ratio s/n, {where}; "
           "median over seeds. (a) mean inner iterations per outer iteration, (b) time per "
           "outer iteration (the price of a larger sketch)")
    if len(panels) > 2:
        cap += f", (c) condition number of the preconditioned system ({cond})"
    else:
        cap += ("; the condition number of R⁻ᵀ G R⁻¹ was not recorded by these runs, so the "
                "inner iteration count stands in for it (spec §4)")
    if len(others) > 1:
        cap += f". Line style: {', '.join(varying)}"
    if fixed:
        cap += f". Fixed: {fixed}"
    return [Drawn(fig, cap + ".")]
