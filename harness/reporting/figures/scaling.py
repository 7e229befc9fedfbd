"""Scaling figures: a quantity against n (or m) at fixed other sizes, log-log, one panel per
slice of the data, medians over seeds; censored cells drawn, never dropped."""

from __future__ import annotations

import textwrap

import pandas as pd

from algorithms.base import ALGORITHMS
from harness.reporting import fits as F
from harness.reporting import style
from harness.reporting.figures.common import (
    DONE,
    Palette,
    censor_handles,
    collect_handles,
    context_parts,
    count_axis,
    disturbed_points,
    legend_below,
    legend_columns,
    log_axis,
    lower_bound,
    method_order,
    new_figure,
    not_measured,
    panel_tag,
    params,
    size_ticks,
    slices,
    split_parts,
    spread,
    theory_guides,
)
from harness.reporting.figures.registry import Drawn, Inputs, NotDrawn, figure
from harness.reporting.fits import context_key

#: A lower bound above this many times the largest measured value is drawn at that height.
BOUND_HEADROOM = 4.0
TIME_LABEL = "time per outer iteration (s)"


def _theory(panel: pd.DataFrame, var: str, y: str, palette: Palette) -> dict[str, tuple]:
    """label -> (exponent in ``var``, term) of each variant's leading cost term at its
    largest measured size (spec §3 cost models)."""
    out = {}
    got = panel[panel[y].notna() & panel["status"].isin(DONE)]
    for variant, g in got.groupby("variant"):
        r = g.sort_values(var).iloc[-1]
        hp = params(g.sort_values(var).iloc[[-1]])[0]
        dom = F.dominant_term(str(r["algorithm"]), r["n"], r["m"], r["d"], hp,
                              depth=int(r.get("depth", 1)), model=r.get("model", "two_layer"))
        if dom is not None:
            out[palette.label(variant)] = (dom[0].exponents[var], dom[0].label)
    return out


def _panel(ax, panel: pd.DataFrame, var: str, y: str, palette: Palette,
           lower: str | None, cap: float | None = None,
           floor: float | None = None) -> tuple[set[str], list[str]]:
    """Draw one slice; returns (kinds of censoring drawn, labels measured at one size only,
    which are left out)."""
    kinds: set[str] = set()
    single: list[str] = []
    for variant in sorted(panel["variant"].unique(), key=method_order):
        group = panel[panel["variant"] == variant]
        st, label = palette(variant), palette.label(variant)
        got = group[group[y].notna() & group["status"].isin(DONE)]
        med = got.groupby(var)[y].median()
        lb = group[group[y].isna() & group[lower].notna()] if lower else group.iloc[:0]
        # a bound far below every measured value says nothing, and would stretch the axis
        # down by empty decades: such a cell reads as not measured
        low = lb[lb[lower] < floor] if floor and lower else lb.iloc[:0]
        lb = lb.drop(low.index)
        top = sorted((set(group.loc[group[y].isna() & group["censor"].isin(
            ["skipped", "failed", "diverged", "no data"]), var]) | set(low[var]))
            - set(got[var]) - set(lb[var]))
        if len(med) < 2 and not len(lb) and not top:
            if len(med):
                single.append(label)
            continue
        ax.plot(med.index, med.values, color=st["color"], marker=st["marker"],
                ls=st["linestyle"], label=label)
        if spread(ax, got, var, y, med, st):
            kinds.add("bars")
        if disturbed_points(ax, got, var, med, st):
            kinds.add("disturbed")
        if len(lb):
            lower_bound(ax, lb[var], lb[lower], st, cap)
            kinds.add("lb")
        if top:
            not_measured(ax, top, st)
            kinds.add("top")
    return kinds, single


def _fit_caption(fits: pd.DataFrame | None, panels, var: str, y: str, palette: Palette,
                 device: str, theory: list[dict]) -> str:
    other = "m" if var == "n" else "n"
    done: list[str] = []
    missing: dict[str, list[str]] = {}
    for i, (panel, f) in enumerate(panels):
        tag = panel_tag(i, len(panels)).strip()
        ctx = context_key(panel["dataset"].iloc[0], panel["d"].iloc[0], panel["dtype"].iloc[0])
        got = panel[panel[y].notna() & panel["status"].isin(DONE)]
        for variant in sorted(got["variant"].unique(), key=method_order):
            label = palette.label(variant)
            th = theory[i].get(label)
            th_txt = f"theory {th[0]:g} ({th[1]})" if th else "no cost model"
            rows = pd.DataFrame() if fits is None or not len(fits) else fits[
                (fits["variant"] == variant) & (fits["device"] == device)
                & (fits["fixed"] == f"{other}={int(f)}") & (fits["context"] == ctx)]
            if len(rows):
                slopes = "; ".join(f"{r.slope:.2f} [{r.lo:.2f}, {r.hi:.2f}] on {r.range}"
                                   for r in rows.itertuples())
                done.append(f"{tag} {label}: {slopes}, {th_txt}".strip())
            else:
                k = got.loc[got["variant"] == variant, var].nunique()
                why = (f"{k} size(s) measured" if k < F.MIN_SIZES else
                       f"no {F.MIN_SIZES} sizes above the time floor with a cost model")
                missing.setdefault(why, []).append(f"{tag} {label}".strip())
    text = ""
    if done:
        text += (f" Fitted log-log slopes in {var} with 95% bootstrap intervals, and the "
                 "exponent of the leading cost term at the largest size: " + "; ".join(done)
                 + ".")
    if missing:
        text += " No slope fitted: " + "; ".join(f"{', '.join(labels)} ({why})"
                                                 for why, labels in missing.items()) + "."
    return text


def scaling_figure(cells: pd.DataFrame, var: str, y: str, ylabel: str, what: str,
                   fits: pd.DataFrame | None = None, lower: str | None = None,
                   counts: bool = False, theory: bool = False) -> list[Drawn]:
    other = "m" if var == "n" else "n"
    drawn = []
    for device, devs, panels in slices(cells, var, y):
        shown = pd.concat([p for p, _ in panels])
        palette = Palette(shown)
        parts = [{**context_parts(p), "fixed": f"{other} = {int(f)}"} for p, f in panels]
        differ, shared = split_parts(parts)
        width = "page" if len(panels) > 1 else "column"
        names = (list(palette.labels.values()) + ["open, on top edge: not measured"]
                 + [k for k, there in (("bar: spread", True), ("hollow: disturbed", (
                     "disturbed" in shown and shown["disturbed"].eq(True).any())))
                    if there])
        ncol = legend_columns(names, style.PAGE_IN if width == "page" else style.COLUMN_IN)
        fig, axes = new_figure(len(panels), width, legend_entries=len(names) + 1,
                               legend_ncol=ncol, sharey=True, title_lines=2)
        kinds: set[str] = set()
        singles, exps = [], []
        measured = shown.loc[shown["status"].isin(DONE), y].astype(float)
        cap = float(measured.max()) * BOUND_HEADROOM if measured.notna().any() else None
        floor = (float(measured[measured > 0].min()) / BOUND_HEADROOM
                 if (measured > 0).any() else None)
        for i, (ax, (panel, _)) in enumerate(zip(axes, panels)):
            k, single = _panel(ax, panel, var, y, palette, lower, cap, floor)
            kinds |= k
            singles += [f"{panel_tag(i, len(panels)).strip()} {s}".strip() for s in single]
            (count_axis if counts else log_axis)(ax, "y")
            ax.set_xscale("log")
            size_ticks(ax, sorted(set(panel[var].dropna())))
            ax.set_xlabel(var)
            title = f"{panel_tag(i, len(panels))}{differ[i]}".strip()
            ax.set_title(textwrap.fill(title, int(110 / len(panels))) if title else None)
            exps.append(_theory(panel, var, y, palette) if theory else {})
        if counts:  # shared limits are known only once every panel is drawn
            count_axis(axes[0], "y")
        if theory:
            for ax, th in zip(axes, exps):
                theory_guides(ax, [e for e, _ in th.values()], var)
        axes[0].set_ylabel(ylabel)
        handles, labels = collect_handles(axes)
        if handles:  # one legend in method order, whichever panel a method first appears in
            labels, handles = map(list, zip(*sorted(zip(labels, handles),
                                                    key=lambda lh: method_order(lh[0]))))
        extra, extra_labels = censor_handles(kinds)
        legend_below(fig, handles + extra, labels + extra_labels, ncol)
        fig.suptitle(shared)
        caption = f"{what} Median over seeds; {shared}."
        if theory:
            caption += (" Grey dashed lines: slopes of the leading terms of the cost models "
                        "(spec §3) of the methods shown, drawn from the lowest point.")
            caption += _fit_caption(fits, panels, var, y, palette, device, exps)
        if kinds & {"lb", "top"}:
            caption += (" Open markers with an arrow: runs that stopped before the target "
                        "(the value is a lower bound; one more than "
                        f"{BOUND_HEADROOM:g}× the largest measured value is drawn at that "
                        "height); open markers on the top edge: cells skipped by the memory "
                        "check or failed, and runs whose bound lies below "
                        f"1/{BOUND_HEADROOM:g} of the smallest measured value (it says "
                        "nothing).")
        if "bars" in kinds:
            caption += (" Bars: least to largest value over seeds where two or more seeds "
                        "were measured; with one seed, the interquartile range of its step "
                        "times (time per iteration only), centred on the median.")
        if "disturbed" in kinds:
            caption += (" Hollow markers on a line: sizes whose median includes a cell "
                        "measured on a disturbed machine (nlt-report --include-disturbed); "
                        "read them with care.")
        if singles:
            caption += " Measured at one size only (not drawn): " + "; ".join(singles) + "."
        caption += (" " + palette.caption()) if palette.caption() else ""
        drawn.append(Drawn(fig, caption, "_" + device if len(devs) > 1 else ""))
    if not drawn:
        raise NotDrawn(f"fewer than 2 sizes {var} measured in any slice")
    return drawn


@figure(1, "time_vs_n", "Time per outer iteration vs n")
def time_vs_n(data: Inputs) -> list[Drawn]:
    return scaling_figure(data.cells, "n", "time_per_iter_s", TIME_LABEL,
                          "Time per outer iteration against n at fixed m.", data.fits_n,
                          theory=True)


@figure(2, "time_vs_m", "Time per outer iteration vs m")
def time_vs_m(data: Inputs) -> list[Drawn]:
    return scaling_figure(data.cells, "m", "time_per_iter_s", TIME_LABEL,
                          "Time per outer iteration against m at fixed n.", data.fits_m,
                          theory=True)


def inner_methods() -> list[str]:
    """Registered methods whose inner_iters count a linear solve's iterations."""
    return [a for a in ALGORITHMS.names() if ALGORITHMS.get(a).reports_inner_iters]


@figure(5, "inner_iters_vs_n", "Inner (CG) iterations per outer iteration vs n")
def inner_iters_vs_n(data: Inputs) -> list[Drawn]:
    cells = data.cells
    methods = inner_methods()
    sub = cells[cells["algorithm"].isin(methods) & cells["mean_inner_iters"].notna()]
    if not len(sub):
        raise NotDrawn(f"no {' / '.join(methods)} runs with inner iterations")
    return scaling_figure(sub, "n", "mean_inner_iters", "mean inner iterations",
                          "Mean inner iterations per outer iteration against n: "
                          "unpreconditioned CG and Nyström-preconditioned CG against the "
                          "sketch-preconditioned solver (claim C3: flat in n).", counts=True)


@figure(9, "time_to_target_vs_n", "Time to relative loss {target:g} vs n")
def time_to_target_vs_n(data: Inputs) -> list[Drawn]:
    eps = data.target
    return scaling_figure(data.cells, "n", "time_to_target_s",
                          "time to ε (s)",
                          f"Time to ε: setup plus cumulative step time until L_t/L_0 ≤ ε = "
                          f"{eps:g}.",
                          lower="time_lower_bound_s")
