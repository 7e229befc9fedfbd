"""Where the time and the memory go: the phases of one step, and peak memory against n."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from harness.reporting import style
from harness.reporting.figures.common import (
    DONE,
    Palette,
    collect_handles,
    context_parts,
    legend_below,
    log_axis,
    main_context,
    method_order,
    new_figure,
    not_measured,
    panel_tag,
    size_ticks,
    slices,
    split_parts,
)
from harness.reporting.figures.registry import Drawn, Inputs, NotDrawn, figure
from harness.reporting.tables import fmt_time

PHASE_METHODS = ("gn_sketch", "gn_gram")
MIB = 2.0**20
#: A process's peak RSS moves by about this much between identical runs (allocator, page
#: cache); a rise above the floor smaller than this is not drawn.
NOISE_MIB = 1.0


def phase_shares(cells: pd.DataFrame, names: list[str],
                 rows: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Per n (median over seeds): each phase's share of the mean step time, every phase
    averaged over ALL steps. A step that does not run a phase (gn_sketch's sketch and factor
    between refreshes) records no time for it: it counts as zero, not as missing, so the
    shares of a step add to at most 1. Taken from the per-step ``rows`` where they hold the
    phase; else from the cell's ``mean_t_<phase>`` (a mean over the steps that ran it) times
    ``refresh_frac`` for the phases that run only on a refresh. Returns (shares with columns
    ``mean_t_<phase>``, median mean step time per n)."""
    cols = [f"mean_t_{p}" for p in names]
    per_cell = cells.set_index("cell")[cols].astype(float).copy()
    steps = None
    if rows is not None and len(rows) and "cell" in rows:
        steps = rows[rows["cell"].isin(per_cell.index) & (rows["iter"] > 0)]
    frac = (pd.to_numeric(cells.set_index("cell")["refresh_frac"], errors="coerce")
            .fillna(1.0) if "refresh_frac" in cells else pd.Series(1.0, index=per_cell.index))
    for p in names:
        col = f"t_{p}"
        if steps is not None and col in steps and steps[col].notna().any():
            over_all = steps[col].fillna(0.0).groupby(steps["cell"]).mean()
            per_cell[f"mean_t_{p}"] = over_all.reindex(per_cell.index).fillna(
                per_cell[f"mean_t_{p}"])
        elif p in REFRESH_PHASES:
            per_cell[f"mean_t_{p}"] = per_cell[f"mean_t_{p}"] * frac
    per_cell = per_cell.fillna(0.0)
    per_cell["n"] = cells.set_index("cell")["n"]
    med = per_cell.groupby("n")[cols].median()
    total = cells.groupby("n")["mean_step_time_s"].median()
    return med.div(total, axis=0).fillna(0.0), total


#: Phases a method with ``refresh=adaptive`` runs only when it rebuilds its preconditioner.
REFRESH_PHASES = ("sketch", "factor", "nystrom")


@figure(8, "phases", "Time per phase: gn_sketch and gn_gram across n")
def phases(data: Inputs) -> list[Drawn]:
    cells = data.cells
    phase_cols = [c for c in cells.columns if c.startswith("mean_t_")]
    sub = cells[cells["algorithm"].isin(PHASE_METHODS) & cells["status"].isin(DONE)]
    if not len(sub) or not phase_cols:
        raise NotDrawn("no gn_sketch / gn_gram runs with phase times")
    panels = []
    for alg in PHASE_METHODS:
        a = sub[sub["algorithm"] == alg]
        if not len(a):
            continue
        variant = a["variant"].value_counts().idxmax()  # the most measured variant
        a = main_context(a[a["variant"] == variant])
        m = a.groupby("m")["n"].nunique().idxmax()
        panels.append((variant, a[a["m"] == m], m))
    present = {c for _, a, _ in panels for c in phase_cols if a[c].notna().any()}
    names = sorted((c.removeprefix("mean_t_") for c in present), key=style.phase_order)
    fig, axes = new_figure(len(panels), "page" if len(panels) > 1 else "column",
                           legend_entries=len(names), legend_ncol=min(len(names), 7),
                           sharey=True)
    palette = Palette(pd.concat([a for _, a, _ in panels]))
    for i, (ax, (variant, a, m)) in enumerate(zip(axes, panels)):
        share, total = phase_shares(a, names, data.rows)
        xs = np.arange(len(share))
        bottom = np.zeros(len(share))
        for p in names:
            st = style.phase_style(p)
            ax.bar(xs, share[f"mean_t_{p}"].to_numpy(), bottom=bottom, color=st["color"],
                   hatch=st["hatch"], edgecolor="0.25", linewidth=0.4, width=0.72, label=p)
            bottom += share[f"mean_t_{p}"].to_numpy()
        ax.set_xticks(xs, [f"{int(n)}\n{fmt_time(total[n])}" for n in share.index])
        ax.tick_params(axis="x", length=0)
        ax.grid(False)
        ax.set_ylim(0, max(1.0, float(bottom.max()) * 1.02))
        ax.set_xlabel("n (mean step time below)")
        ax.set_title(f"{panel_tag(i, len(panels))}{palette.label(variant)}, m = {int(m)}")
    axes[0].set_ylabel("share of step time")
    handles, labels = collect_handles(axes[:1] + axes[1:])
    legend_below(fig, handles, labels, ncol=min(len(labels), 7))
    where = ", ".join(context_parts(panels[0][1]).values())
    fixed = " " + palette.caption() if palette.caption() else ""
    caption = ("Share of the mean step time spent in each phase, averaged over all steps (a "
               "phase that runs only on some steps, such as a preconditioner refresh, counts "
               "as zero on the others, so the shares add to at most 1; the gap to 1 is time "
               f"outside named phases); {where}; median over seeds. Under each n: the mean "
               f"step time.{fixed}")
    return [Drawn(fig, caption)]


def _rss_like(kind: str) -> bool:
    return "rss" in kind.lower() or "process" in kind.lower()


@figure(10, "memory_vs_n", "Peak memory vs n")
def memory_vs_n(data: Inputs) -> list[Drawn]:
    drawn = []
    for device, devs, panels in slices(data.cells, "n", "estimated_memory_bytes",
                                       max_panels=1):
        panel, fixed = panels[0]
        palette = Palette(panel)
        kind = (str(panel["peak_memory_kind"].dropna().iloc[0])
                if panel["peak_memory_kind"].notna().any() else "unknown")
        measured = panel[panel["status"].isin(DONE)]["peak_memory_bytes"].astype(float)
        base = float(measured.min()) if _rss_like(kind) and measured.notna().any() else 0.0
        variants = sorted(panel["variant"].unique(), key=method_order)
        fig, (ax_est, ax_meas) = new_figure(2, legend_entries=len(variants) + 1,
                                            sharey=True, title_lines=1)
        skipped = False
        for variant in variants:
            g = panel[panel["variant"] == variant]
            st, label = palette(variant), palette.label(variant)
            est = g.groupby("n")["estimated_memory_bytes"].median().dropna() / MIB
            if len(est):
                ax_est.plot(est.index, est.values, color=st["color"], marker=st["marker"],
                            ls=st["linestyle"], label=label)
            sk = g[g["status"] == "skipped"]
            if len(sk):  # refused by the memory check: open, at its estimate
                ax_est.plot(sk["n"], sk["estimated_memory_bytes"] / MIB, ls="none",
                            marker=st["marker"], mfc="white", mec=st["color"], ms=4.5,
                            label="_censor_skip")
                not_measured(ax_meas, sorted(set(sk["n"])), st)
                skipped = True
            meas = g[g["status"].isin(DONE)].groupby("n")["peak_memory_bytes"].median()
            meas = (meas.astype(float) - base) / MIB
            meas = meas[meas >= NOISE_MIB]
            if len(meas):
                ax_meas.plot(meas.index, meas.values, color=st["color"], marker=st["marker"],
                             ls=st["linestyle"], label=label)
        budget = pd.to_numeric(panel["memory_budget_bytes"], errors="coerce").dropna()
        top = pd.to_numeric(panel["estimated_memory_bytes"], errors="coerce").max()
        # the budget line only where it is near the data; far above, it would flatten them
        if len(budget) and np.isfinite(budget.min()) and budget.min() <= 10 * top:
            for ax in (ax_est, ax_meas):
                ax.axhline(float(budget.min()) / MIB, color="0.4", ls=":", lw=0.7,
                           label="_ref_budget")
        for ax in (ax_est, ax_meas):
            log_axis(ax, "y")
            ax.set_xscale("log")
            size_ticks(ax, sorted(set(panel["n"])))
            ax.set_xlabel("n")
        ax_est.set_ylabel("memory (MiB)")
        ax_est.set_title("(a) planned estimate (memory check)")
        ax_meas.set_title("(b) measured peak" + (f" above {base / MIB:.0f} MiB floor"
                                                 if base else ""))
        handles, labels = collect_handles([ax_est, ax_meas])
        if skipped:
            handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="0.3"))
            labels.append("open: skipped by the memory check")
        legend_below(fig, handles, labels)
        parts = {**context_parts(panel), "fixed": f"m = {int(fixed)}"}
        where = split_parts([parts])[1]
        fig.suptitle(where)
        caption = (f"Peak memory against n, {where}. (a) The estimate each method's memory "
                   "check uses before running; (b) the measured peak ("
                   f"{kind})")
        if base:
            caption += (f", less the smallest peak of any cell here ({base / MIB:.0f} MiB: the "
                        "interpreter and torch, which every process pays), so that what a "
                        "method allocates reads on the same axis as its estimate; sizes where "
                        f"the peak rises less than {NOISE_MIB:g} MiB above that floor are not "
                        "drawn")
        caption += "."
        if len(budget):
            caption += (f" The memory budget is {budget.min() / MIB:.0f} MiB"
                        + (" (dotted)." if budget.min() <= 10 * top else "."))
        if skipped:
            caption += (" Open markers: cells the memory check skipped (at their estimate "
                        "in (a), on the top edge in (b)).")
        if palette.caption():
            caption += " " + palette.caption()
        drawn.append(Drawn(fig, caption, "_" + device if len(devs) > 1 else ""))
    if not drawn:
        raise NotDrawn("no memory figures recorded")
    return drawn
