"""What several figures share: legend labels that hold only what varies, the choice of slices
and panels, axes in print style, censored points, theory slope guides, a legend below."""

from __future__ import annotations

import json
import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter

from harness.execution.results import DONE_STATUSES as DONE
from harness.reporting import style
from harness.reporting.figures.registry import fit_legends
from harness.reporting.style import _label_text

CONTEXT_COLS = ["dataset", "data_params", "d", "dtype"]
#: Short names of hyperparameters in legends (the caption spells out the rest).
PARAM_ABBREV = {"sketch_ratio": "s/n", "batch_size": "b", "rank": "ℓ"}


def fmt_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return f"{v:g}"
    return str(v)


def params(cells: pd.DataFrame) -> list[dict]:
    out = []
    for h in cells["hyperparameters"] if "hyperparameters" in cells else [None] * len(cells):
        try:
            p = json.loads(h) if isinstance(h, str) and h else {}
        except ValueError:
            p = {}
        out.append(p if isinstance(p, dict) else {})
    return out


def _short(key: str, value) -> str:
    if isinstance(value, str):  # categorical values read by themselves: tensor_srht, adaptive
        return value
    return f"{PARAM_ABBREV.get(key, key)}={fmt_value(value)}"


def fit_legend(text: str) -> str:
    text = _label_text(text)
    limit = style.MAX_LEGEND_CHARS
    return text if len(text) <= limit else text[: limit - 1] + "…"


def method_names(cells: pd.DataFrame) -> pd.Series:
    """Per cell, the name its method goes by: its named preset where the run chose one that
    is not the plain method (``gn_sketch_paper``), else its algorithm."""
    algs = cells["algorithm"].astype(str)
    if "preset" not in cells:
        return algs
    return pd.Series([p if isinstance(p, str) and p and p != a else a
                      for p, a in zip(cells["preset"], algs)], index=cells.index)


def _variant_extra(variant: str) -> str:
    """What a variant's name holds beyond its hyperparameters: ``gd [mlp L=2]`` -> ``L=2``."""
    m = re.search(r"\[(?:[a-z_]+ )?([^\]]*)\]", variant)
    return m.group(1) if m else variant


class Palette:
    """Legend label and style of each method variant among the cells a figure shows.

    A label names the method and only the hyperparameters that differ between its variants
    in this figure; ``constants`` lists the rest once, for the caption. Colour is the method's
    (``style.method_style``); variants of one method differ in marker (a gn_sketch variant
    takes its sketch type's marker) and line style."""

    def __init__(self, cells: pd.DataFrame):
        self.labels: dict[str, str] = {}
        self.styles: dict[str, dict] = {}
        self.constants: dict[str, str] = {}
        if not len(cells):
            return
        cells = cells.drop_duplicates("variant")
        # a named preset of a method (gn_sketch_paper) is drawn and labelled under its own
        # name, the one the progress lines and the summary use
        for alg, group in cells.groupby(method_names(cells), sort=True):
            ps = params(group)
            keys = sorted({k for p in ps for k in p})
            varying = [k for k in keys
                       if len({json.dumps(p.get(k), default=str) for p in ps}) > 1]
            fixed = [k for k in keys if k not in varying and ps[0].get(k) is not None]
            if fixed:
                self.constants[str(alg)] = ", ".join(f"{k}={fmt_value(ps[0][k])}" for k in fixed)
            base = style.method_style(str(alg))
            rows = sorted(zip(group["variant"], ps),
                          key=lambda vp: [json.dumps(vp[1].get(k), default=str) for k in varying])
            # a named configuration (gn_sketch_paper) is labelled by its name, as everywhere
            named = set(group.loc[[isinstance(x, str) and x != "" for x in group["preset"]],
                                  "variant"]) if "preset" in group else set()
            for i, (variant, p) in enumerate(rows):
                inside = ", ".join(_short(k, p.get(k)) for k in varying)
                self.labels[variant] = fit_legend(
                    str(variant) if variant in named else
                    f"{alg} ({inside})" if inside else str(alg))
                st = dict(base)
                if i:  # same colour and marker, another line style
                    others = [ls for ls in style.variant_linestyles() if ls != base["linestyle"]]
                    st["linestyle"] = others[(i - 1) % len(others)]
                self.styles[variant] = st
            # variants that differ in what the hyperparameters do not hold (the model's
            # depth: ``gd [mlp L=2]``) would share one label, and the legend would key only
            # the first of their line styles: name each by its variant
            mine = [v for v, _ in rows]
            texts = [self.labels[v] for v in mine]
            for v in mine:
                if texts.count(self.labels[v]) > 1:
                    self.labels[v] = fit_legend(f"{self.labels[v]} {_variant_extra(str(v))}")

    def label(self, variant: str) -> str:
        return self.labels.get(variant, fit_legend(variant))

    def __call__(self, variant: str) -> dict:
        algorithm = str(variant).split(" ")[0]
        return self.styles.get(variant, style.method_style(algorithm))

    def caption(self) -> str:
        if not self.constants:
            return ""
        return "Fixed hyperparameters: " + "; ".join(f"{a}: {t}" for a, t in
                                                     sorted(self.constants.items())) + "."


# --- contexts and slices -------------------------------------------------------------------------

def data_label(row) -> str:
    """``synthetic (target=teacher)``: the dataset with its kind and target, if any."""
    try:
        p = json.loads(row["data_params"]) if isinstance(row["data_params"], str) else {}
    except ValueError:
        p = {}
    extra = ", ".join(f"{k}={v}" for k, v in p.items() if k in ("target", "kind"))
    return f"{row['dataset']}{' (' + extra + ')' if extra else ''}"


def context_parts(cells: pd.DataFrame) -> dict[str, str]:
    r = cells.iloc[0]
    return {"data": data_label(r), "d": f"d={int(r['d'])}", "dtype": str(r["dtype"]),
            "device": str(r["device"])}


def split_parts(parts: list[dict[str, str]]) -> tuple[list[str], str]:
    """Per panel, the parts that differ between panels; and the parts they share, joined."""
    keys = list(parts[0])
    same = [k for k in keys if len({p[k] for p in parts}) == 1]
    differ = [", ".join(p[k] for k in keys if k not in same) for p in parts]
    return differ, ", ".join(parts[0][k] for k in same)


def main_context(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of the most populated (dataset, data params, d, dtype)."""
    if not len(cells):
        return cells
    key = cells.groupby(CONTEXT_COLS, dropna=False).size().idxmax()
    mask = np.ones(len(cells), bool)
    for col, val in zip(CONTEXT_COLS, key):
        mask &= (cells[col] == val).to_numpy()
    return cells[mask]


def devices(cells: pd.DataFrame) -> list[str]:
    return sorted(cells["device"].dropna().unique()) if len(cells) else []


def suffix(device: str, all_devices: list[str]) -> str:
    return f"_{device}" if len(all_devices) > 1 else ""


def slices(cells: pd.DataFrame, var: str, y: str, max_panels: int = 3):
    """Per device: up to ``max_panels`` slices (one dataset, data parameters, d, dtype and
    fixed other size) with ≥ 2 sizes in ``var`` (≥ 3 where some slice has 3), measured or
    censored, and one measurement at least; the most sizes first, then most measurements.
    Yields (device, devices, [(panel cells, fixed value)])."""
    other = "m" if var == "n" else "n"
    devs = devices(cells)
    keys = CONTEXT_COLS + [other]
    for device in devs:
        dev = cells[cells["device"] == device].copy()
        dev["_measured"] = dev[y].notna() & dev["status"].isin(DONE)
        shown = dev[dev["_measured"] | dev["censor"].notna()]
        if not dev["_measured"].any():
            continue
        score = shown.groupby(keys, dropna=False).agg(sizes=(var, "nunique"),
                                                      count=("_measured", "sum"))
        score = score[(score["sizes"] >= 2) & (score["count"] >= 1)].reset_index()
        # a scaling plot needs sizes more than cells: an ablation with many variants at two
        # sizes must not crowd out a sweep over five
        if (score["sizes"] >= 3).any():
            score = score[score["sizes"] >= 3]
        score = score.sort_values(["sizes", "count", other], ascending=False)
        panels = []
        for row in score.head(max_panels).itertuples(index=False):
            mask = np.ones(len(dev), bool)
            for k in keys:
                mask &= (dev[k] == getattr(row, k)).to_numpy()
            panels.append((dev[mask].drop(columns="_measured"), getattr(row, other)))
        if panels:
            yield device, devs, panels


# --- axes -----------------------------------------------------------------------------------------

def _is_pow2(x: float) -> bool:
    return x >= 1 and float(x).is_integer() and (int(x) & (int(x) - 1)) == 0


def size_ticks(ax, sizes, axis: str = "x") -> None:
    """Ticks at the measured sizes: ``2^k`` where all are powers of two (short, never
    colliding), else plain numbers, every other one labelled where there are many."""
    sizes = sorted({float(s) for s in sizes if s == s and s > 0})
    if not sizes:
        return
    target = ax.xaxis if axis == "x" else ax.yaxis
    if all(_is_pow2(s) for s in sizes):
        labels = [f"$2^{{{int(math.log2(s))}}}$" for s in sizes]
    else:
        step = 1 if len(sizes) <= 5 else 2
        labels = [fmt_value(s) if i % step == 0 else "" for i, s in enumerate(sizes)]
    target.set_major_locator(FixedLocator(sizes))
    target.set_ticklabels(labels)
    target.set_minor_locator(FixedLocator([]))
    target.set_minor_formatter(NullFormatter())


def log_axis(ax, axis: str = "y") -> None:
    """Log scale, labels at decades (every other one past six decades); an axis that spans
    less than two decades gets plain labels at 1, 2, 5 × 10^k instead. Call after drawing."""
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = (ax.get_ylim() if axis == "y" else ax.get_xlim())
    if lo > 0 and hi / lo < 100:
        e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        ticks = [m * 10.0**e for e in range(e0, e1 + 1) for m in (1, 2, 5)
                 if lo <= m * 10.0**e <= hi]
        target.set_major_locator(FixedLocator(ticks))
        target.set_ticklabels([f"{t:.3g}" for t in ticks])
    else:
        target.set_major_locator(LogLocator(base=10, numticks=7))
    target.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 0.1, numticks=20))
    target.set_minor_formatter(NullFormatter())


def count_axis(ax, axis: str = "y") -> None:
    """Log scale for counts (iterations): plain labels at 1, 2, 5, 10, 20, 50, ..."""
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = (ax.get_ylim() if axis == "y" else ax.get_xlim())
    ticks = [m * 10**e for e in range(-1, 7) for m in (1, 2, 5) if lo <= m * 10**e <= hi]
    if len(ticks) > 6:
        ticks = [t for t in ticks if str(int(t) if t >= 1 else t)[0] in "15"]
    target.set_major_locator(FixedLocator(ticks))
    target.set_ticklabels([fmt_value(t) for t in ticks])
    target.set_minor_formatter(NullFormatter())


def panel_tag(i: int, n: int) -> str:
    return f"({'abcdefgh'[i]}) " if n > 1 else ""


def legend_columns(labels, width_in: float = style.PAGE_IN, most: int = 4) -> int:
    """As many columns as the longest entry lets fit across ``width_in``."""
    longest = max((len(str(t)) for t in labels), default=1)
    col_pt = longest * 0.52 * style.RC["legend.fontsize"] + 30  # text + handle + spacing
    return max(1, min(most, len(labels), int(width_in * 72 // col_pt)))


def legend_below(fig, handles, labels, ncol: int | None = None) -> None:
    """One legend for the whole figure, below the panels."""
    if not handles:
        return
    width = fig.get_size_inches()[0]
    ncol = min(ncol or 4, legend_columns(labels, width, most=ncol or 4))
    kw = {"loc": "outside lower center",
          "handler_map": {tuple: HandlerTuple(ndivide=None, pad=0.3)}}
    leg = fig.legend(handles, labels, ncol=ncol, **kw)
    # the estimate of its size may be wrong: fewer columns while it is wider than the figure
    for _ in range(6):
        fig.canvas.draw()
        box = leg.get_window_extent(fig.canvas.get_renderer())
        if box.width <= fig.bbox.width or ncol == 1:
            break
        leg.remove()
        ncol -= 1
        leg = fig.legend(handles, labels, ncol=ncol, **kw)
    fit_legends(fig)


def legend_clear(ax, handles=None, labels=None, **kw):
    """A legend inside ``ax`` where it covers no plotted point, tried corner by corner; where
    every corner covers data (or the legend is taller than the axes), beside the axes, outside
    them. Returns the legend."""
    from harness.reporting.figures import check  # the same test the figure check applies

    args = (handles, labels) if handles is not None else ()
    fig = ax.figure
    ax._legend_clear = (handles, labels, kw)  # for settle_legends, once every panel is drawn
    locs = ("upper right", "upper left", "lower left", "lower right", "center right",
            "center left", "upper center", "lower center")
    for _ in range(4):
        for loc in locs:
            leg = ax.legend(*args, loc=loc, **kw)
            fig.canvas.draw()
            if not check.legend_covers(ax, leg, fig.canvas.get_renderer()):
                return leg
        # every place covers data: make room above the data and try the top corners again
        lo, hi = ax.get_ylim()
        if ax.get_yscale() == "log" and lo > 0:
            ax.set_ylim(lo, hi * (hi / lo) ** 0.5)
        else:
            ax.set_ylim(lo, hi + 0.5 * (hi - lo))
        locs = ("upper right", "upper left", "upper center")
    return leg


def settle_legends(fig) -> None:
    """Place again the panel legends of ``legend_clear`` that now cover data: drawing the
    other panels moves the layout, and with it what a legend covers."""
    from harness.reporting.figures import check

    fig.canvas.draw()
    for ax in fig.axes:
        args = getattr(ax, "_legend_clear", None)
        leg = ax.get_legend()
        if args and leg is not None and check.legend_covers(ax, leg,
                                                            fig.canvas.get_renderer()):
            handles, labels, kw = args
            legend_clear(ax, handles, labels, **kw)


def legend_rows_height(n_entries: int, ncol: int = 4) -> float:
    """Inches a legend below the panels needs."""
    return 0.14 * math.ceil(n_entries / max(ncol, 1)) + 0.08 if n_entries else 0.0


def collect_handles(axes) -> tuple[list, list[str]]:
    """Legend handles of several panels, each label once, in order of first appearance."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    return handles, labels


# --- censored points and theory guides ------------------------------------------------------------

def open_marker(marker) -> str:
    """``marker`` where it can be drawn open (it has a face), else a circle: an open marker
    is how a censored point reads, and ``1``, ``+`` or ``x`` have no face to leave empty."""
    return marker if MarkerStyle(marker).is_filled() else "o"


def lower_bound(ax, xs, ys, st: dict, cap: float | None = None) -> None:
    """Open markers with an arrow up: the value is at least this (the run stopped first).
    A bound above ``cap`` is drawn at ``cap``: it says no more there, and would otherwise
    stretch the axis by empty decades."""
    for x, y in zip(xs, ys):
        if not (y > 0 and x > 0):
            continue
        if cap is not None and cap > 0 and y > cap:
            y = cap
        ax.plot([x], [y], ls="none", marker=open_marker(st["marker"]), mfc="white",
                mec=st["color"],
                ms=4.5, mew=0.9, zorder=4, label="_censor_lb")
        ax.annotate("", xy=(x, y * 2.2), xytext=(x, y), zorder=4,
                    arrowprops={"arrowstyle": "-|>", "color": st["color"], "lw": 0.8,
                                "mutation_scale": 6, "shrinkA": 2.5, "shrinkB": 0})


def not_measured(ax, xs, st: dict) -> None:
    """Open markers on the top edge at sizes without a measurement (skipped, failed)."""
    if len(xs):
        ax.plot(xs, [1.0] * len(xs), transform=ax.get_xaxis_transform(), ls="none",
                label="_censor_top",
                marker=open_marker(st["marker"]), mfc="white", mec=st["color"], ms=4.5, mew=0.9,
                clip_on=False, zorder=4)


def spread(ax, got, var: str, y: str, med, st: dict) -> bool:
    """Vertical bars at each size of a median: from the least to the largest value over
    seeds where two or more seeds were measured, else (time per iteration of one seed) a bar
    as long as the interquartile range of its step times, centred on the median. Returns
    whether any bar was drawn."""
    xs, lo, hi = [], [], []
    for x, centre in med.items():
        here = got[got[var] == x]
        vals = here[y].astype(float).dropna()
        iqr = (here["step_time_iqr_s"].dropna() if y == "time_per_iter_s"
               and "step_time_iqr_s" in here else pd.Series(dtype=float))
        if len(vals) >= 2:
            a, b = float(vals.min()), float(vals.max())
        elif len(iqr):
            a, b = centre - float(iqr.iloc[0]) / 2, centre + float(iqr.iloc[0]) / 2
        else:
            continue
        a = max(a, centre / 4) if centre > 0 else a  # a log axis: never through zero
        if b > a:
            xs.append(x)
            lo.append(a)
            hi.append(b)
    if xs:
        ax.vlines(xs, lo, hi, colors=st["color"], lw=0.9, alpha=0.75, zorder=2,
                  label="_spread")
    return bool(xs)


def disturbed_points(ax, got, var: str, med, st: dict) -> bool:
    """The median of a size with a disturbed cell in it (included by
    ``--include-disturbed``) drawn hollow over its filled marker. Returns whether any was."""
    if "disturbed" not in got:
        return False
    bad = got["disturbed"].map(lambda v: v is True or v is np.True_)
    xs = [x for x in sorted(set(got.loc[bad, var])) if x in med.index]
    if xs:
        ax.plot(xs, [med[x] for x in xs], ls="none", marker=open_marker(st["marker"]),
                mfc="white", mec=st["color"], ms=5.5, mew=1.1, zorder=5, label="_disturbed")
    return bool(xs)


def censor_handles(kinds: set[str]) -> tuple[list, list[str]]:
    """Legend keys of the censored points drawn, each its own symbol: an open marker with an
    arrow for a lower bound, an open marker on an edge for a cell not measured; and of the
    other looks a point can take: a bar (the spread), a hollow marker on the line (a size
    with a disturbed cell in its median)."""
    handles, labels = [], []
    if "bars" in kinds:
        handles.append(Line2D([], [], ls="none", marker="|", ms=9, mew=1.0, color="0.3"))
        labels.append("bar: spread over seeds (or step IQR)")
    if "disturbed" in kinds:
        handles.append(Line2D([], [], ls="none", color="0.3", marker="o", mfc="white",
                              mec="0.3", ms=5.5, mew=1.1))
        labels.append("hollow on the line: disturbed cell included")
    if "lb" in kinds:
        handles.append((Line2D([], [], ls="none", marker="o", mfc="white", mec="0.3"),
                        Line2D([], [], ls="none", marker="$\u2191$", color="0.3")))
        labels.append("open ↑: lower bound")
    if "top" in kinds:
        handles.append(Line2D([], [], ls="-", lw=0.6, color="0.3", marker="o", mfc="white",
                              mec="0.3"))
        labels.append("open, on top edge: not measured")
    return handles, labels


def exponent_text(var: str, p: float) -> str:
    if p == 1:
        return f"${var}$"
    if float(p).is_integer():
        return f"${var}^{{{int(p)}}}$"
    return f"${var}^{{{p:g}}}$"


def theory_guides(ax, exponents, var: str) -> None:
    """Grey dashed lines of slope p (one per theoretical exponent), from the lowest point
    at the smallest size, each labelled ∝ var^p where it leaves the axes."""
    exps = sorted({float(p) for p in exponents if p == p and p > 0})
    if not exps:
        return
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())
             and not str(ln.get_label()).startswith("_censor")]
    ys = [float(y) for ln in lines for y in np.asarray(ln.get_ydata(), float) if y > 0]
    xs = [float(x) for ln in lines for x in np.asarray(ln.get_xdata(), float) if x > 0]
    if not ys or not xs:
        return
    ax_ = min(xs)
    ay = min(ys)
    for p in exps:
        xe = max(xs)
        ye = ay * (xe / ax_) ** p
        if ye > y1:  # leaves through the top
            xe = ax_ * (y1 / ay) ** (1 / p)
            ye = y1
        ax.plot([ax_, xe], [ay, ye], color="0.45", ls=(0, (3, 2)), lw=0.7, zorder=1,
                label="_theory")
        ax.annotate(f"∝{exponent_text(var, p)}", (xe, ye), xytext=(-2, -2),
                    textcoords="offset points", ha="right", va="top", fontsize=6,
                    color="0.3", bbox={"boxstyle": "square,pad=0.05", "fc": "white",
                                       "ec": "none", "alpha": 0.8})
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def new_figure(ncols: int, width: str = "page", legend_entries: int = 0,
               legend_ncol: int = 4, sharey: bool = False, title_lines: int = 0):
    w, h = style.figsize(width)
    h += legend_rows_height(legend_entries, legend_ncol) + 0.13 * title_lines
    fig, axes = plt.subplots(1, ncols, figsize=(w, h), squeeze=False, sharey=sharey)
    return fig, list(axes[0])


def method_order(name: str) -> tuple[int, str]:
    """Legend order: the methods in ``style.METHOD_STYLES`` order, then others by name."""
    known = list(style.METHOD_STYLES)
    alg = str(name).split(" ")[0]
    return (known.index(alg) if alg in known else len(known), str(name))
