"""The report's figures: one consistent, print-readable style (matplotlib, Agg), PNG and PDF.

Every figure function takes the per-cell metrics (``metrics.cell_metrics``), the per-iteration
rows and the fit tables, and returns ``Figure`` records (or a reason it was not drawn). Scaling
plots are log-log; censored cells never vanish: a cell skipped by the memory check or failed is
drawn as an open marker on the top edge of its panel at its size, a run that stopped before the
target (max_iters, time budget) as an open triangle at its lower bound.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from harness.reporting.fits import context_key
from harness.reporting.tables import fmt_time
from harness.reporting.text import plain_frame

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

STYLE = {
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 6.5,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.3, "lines.markersize": 4,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.spines.top": False,
    "axes.spines.right": False, "savefig.dpi": 200, "savefig.bbox": "tight",
    "pdf.fonttype": 42, "ps.fonttype": 42, "legend.frameon": False,
}
#: One colour per method across every figure (Okabe–Ito, readable in grey and by the
#: colour-blind); unknown methods take the tab10 colours after these.
COLORS = {"gd": "#000000", "sgd": "#999999", "adam": "#E69F00", "gn_exact": "#56B4E9",
          "gn_gram": "#0072B2", "ngd": "#009E73", "kfac": "#F0E442", "ggn": "#CC79A7",
          "gn_cg": "#D55E00", "gn_sketch": "#C00000", "gn_nystrom": "#7B3294"}
MARKERS = ["o", "s", "D", "v", "P", "X", "*", "h"]
LINESTYLES = ["-", "--", ":", "-."]
SINGLE, DOUBLE = (3.4, 2.6), (7.0, 2.6)
DONE = ("converged", "max_iters", "time_budget", "diverged")


@dataclass
class Figure:
    number: int
    name: str
    title: str
    caption: str = ""
    files: list[str] = field(default_factory=list)
    missing: str = ""  # why it was not drawn


class Palette:
    """Colour per algorithm; marker and line style per variant of one algorithm."""

    def __init__(self, cells: pd.DataFrame):
        self.style: dict[str, dict] = {}
        extra = iter(plt.get_cmap("tab10").colors)
        if not len(cells):
            return
        for alg, group in cells.groupby("algorithm", sort=True):
            color = COLORS.get(alg) or next(extra)
            for i, variant in enumerate(sorted(group["variant"].unique())):
                self.style[variant] = {"color": color, "marker": MARKERS[i % len(MARKERS)],
                                       "linestyle": LINESTYLES[i % len(LINESTYLES)]}

    def __call__(self, variant: str) -> dict:
        return self.style.get(variant, {"color": "grey", "marker": "o", "linestyle": "-"})


def _save(fig, out: Path, name: str) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        fig.savefig(path)
        files.append(path.name)
    plt.close(fig)
    return files


def _context_cols() -> list[str]:
    return ["dataset", "data_params", "d", "dtype"]


def _main_context(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of the most populated (dataset, data params, d, dtype) on one device."""
    if not len(cells):
        return cells
    key = cells.groupby(_context_cols(), dropna=False).size().idxmax()
    mask = np.ones(len(cells), bool)
    for col, val in zip(_context_cols(), key):
        mask &= (cells[col] == val).to_numpy()
    return cells[mask]


def context_label(cells: pd.DataFrame) -> str:
    r = cells.iloc[0]
    params = json.loads(r["data_params"]) if r["data_params"] else {}
    extra = ", ".join(f"{k}={v}" for k, v in params.items() if k in ("target", "kind"))
    return f"{r['dataset']}{' (' + extra + ')' if extra else ''}, d={int(r['d'])}, " \
           f"{r['dtype']}, {r['device']}"


def _devices(cells: pd.DataFrame) -> list[str]:
    return sorted(cells["device"].dropna().unique()) if len(cells) else []


def _suffix(device: str, devices: list[str]) -> str:
    return f"_{device}" if len(devices) > 1 else ""


def _censor_legend(ax, kinds: set[str]) -> list[Line2D]:
    handles = []
    if "top" in kinds:
        handles.append(Line2D([], [], ls="none", marker="^", mfc="none", mec="0.3",
                              label="skipped / failed / unreadable (top edge)"))
    if "lb" in kinds:
        handles.append(Line2D([], [], ls="none", marker="^", mfc="none", mec="0.3", ms=6,
                              label="stopped before target (lower bound)"))
    return handles


def _mark_top(ax, xs, style) -> None:
    """Open markers on the top edge of the axes at sizes that have no measurement."""
    if not len(xs):
        return
    ax.plot(xs, [0.98] * len(xs), transform=ax.get_xaxis_transform(), ls="none",
            marker="^" if True else "x", mfc="none", mec=style["color"], ms=5, clip_on=False)


def _fits_for(fits: pd.DataFrame | None, variant: str, device: str, fixed: str,
              cells: pd.DataFrame) -> pd.DataFrame:
    if fits is None or not len(fits) or not len(cells):
        return pd.DataFrame()
    r = cells.iloc[0]
    ctx = context_key(r["dataset"], r["d"], r["dtype"])
    return fits[(fits["variant"] == variant) & (fits["device"] == device)
                & (fits["fixed"] == fixed) & (fits["context"] == ctx)]


def _fit_texts(f: pd.DataFrame, tag: str) -> list[str]:
    """``slope s [lo, hi]``, followed by the panel's tag where the figure has several."""
    where = f" ({tag})" if tag else ""
    return [f"slope {r.slope:.2f} [{r.lo:.2f}, {r.hi:.2f}]{where}" for r in f.itertuples()]


def _scaling_panel(ax, cells: pd.DataFrame, x: str, y: str, palette: Palette,
                   fits: pd.DataFrame | None, fixed: str, device: str,
                   lower_bound: str | None = None, tag: str = "",
                   slopes: dict | None = None) -> set[str]:
    """Median over seeds per size and variant; censored cells marked. Returns the kinds of
    censoring drawn (for the legend); fitted slopes are added to ``slopes[variant]``."""
    kinds: set[str] = set()
    for variant, group in cells.groupby("variant", sort=True):
        st = palette(variant)
        got = group[group[y].notna() & group["status"].isin(DONE)]
        med = got.groupby(x)[y].median()
        fitted = _fits_for(fits, variant, device, fixed, group)
        if slopes is not None:
            slopes.setdefault(variant, []).extend(_fit_texts(fitted, tag))
        label = variant
        for r in fitted.itertuples():  # the fitted power law over the range it was fitted on
            xs = np.geomspace(r.x_min, r.x_max, 20)
            ax.plot(xs, np.exp(r.intercept) * xs**r.slope, color=st["color"], lw=0.7,
                    ls=(0, (4, 2)), alpha=0.8)
        if len(med):
            ax.plot(med.index, med.values, color=st["color"], marker=st["marker"],
                    ls=st["linestyle"], label=label)
        elif not group.empty:
            ax.plot([], [], color=st["color"], marker=st["marker"], ls=st["linestyle"],
                    label=label)
        if lower_bound is not None:
            lb = group[group[y].isna() & group[lower_bound].notna()]
            if len(lb):
                ax.plot(lb[x], lb[lower_bound], ls="none", marker="^", mfc="none", ms=6,
                        mec=st["color"])
                kinds.add("lb")
        measured = set(got[x])
        top = sorted(set(group.loc[group[y].isna() & (group["censor"].isin(
            ["skipped", "failed", "diverged", "no data"])), x]) - measured)
        if top:
            _mark_top(ax, top, st)
            kinds.add("top")
    ax.set_xscale("log")
    ax.set_yscale("log")
    size_ticks(ax, sorted(set(cells[x].dropna())))
    return kinds


def size_ticks(ax, sizes) -> None:
    """Sizes as plain numbers at the measured values (a sweep's sizes are usually powers of
    two, which 10ᵏ ticks hide)."""
    sizes = [s for s in sizes if s > 0]
    if not sizes or len(sizes) > 12:
        return
    ax.set_xticks(sizes, [f"{int(s)}" if float(s).is_integer() else f"{s:g}" for s in sizes],
                  rotation=45 if len(sizes) > 5 else 0)
    ax.xaxis.set_minor_formatter(NullFormatter())


def plain_y(ax) -> None:
    """Plain numbers on a log y axis (counts such as inner iterations span one decade)."""
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.ticklabel_format(axis="y", style="plain")


def _slices(cells: pd.DataFrame, var: str, y: str, max_panels: int = 3):
    """Per device: up to ``max_panels`` slices (cells of one dataset, data parameters, d,
    dtype and fixed other size) with ≥ 2 sizes in ``var`` measured or censored (≥ 3 where
    some slice has 3) and at least one measurement, the ones with the most sizes first, then
    the most measurements of ``y``.
    Yields (device, devices, [(panel cells, fixed value)])."""
    other = "m" if var == "n" else "n"
    devices = _devices(cells)
    keys = _context_cols() + [other]
    for device in devices:
        dev = cells[cells["device"] == device].copy()
        dev["_measured"] = dev[y].notna() & dev["status"].isin(DONE)
        # censored cells count as sizes too: they are drawn, marked
        shown = dev[dev["_measured"] | dev["censor"].notna()]
        if not dev["_measured"].any():
            continue
        score = shown.groupby(keys, dropna=False).agg(sizes=(var, "nunique"),
                                                      count=("_measured", "sum"))
        score = score[(score["sizes"] >= 2) & (score["count"] >= 1)].reset_index()
        # a scaling plot needs sizes more than cells: an ablation with many variants at two
        # sizes must not crowd out a sweep over five; two-size slices only if nothing better
        if (score["sizes"] >= 3).any():
            score = score[score["sizes"] >= 3]
        score = score.sort_values(["sizes", "count", other], ascending=False)
        panels = []
        for row in score.head(max_panels).itertuples(index=False):
            mask = np.ones(len(dev), bool)
            for k in keys:
                mask &= (dev[k] == getattr(row, k)).to_numpy()
            panels.append((dev[mask], getattr(row, other)))
        if panels:
            yield device, devices, panels


def _panel_title(panel: pd.DataFrame, other: str, fixed, shared: bool, tag: str) -> str:
    """``(a) m = 2048``, and the panel's problem, wrapped to the panel's width, when the
    panels of a figure differ in it."""
    title = f"{'(' + tag + ') ' if tag else ''}{other} = {int(fixed)}"
    return title if shared else "\n".join([title, *textwrap.wrap(context_label(panel), 34)])


def fig_scaling(num: int, name: str, title: str, cells: pd.DataFrame, var: str, y: str,
                ylabel: str, palette: Palette, fits: pd.DataFrame | None, out: Path,
                lower_bound: str | None = None, caption: str = "",
                counts: bool = False) -> list[Figure]:
    other = "m" if var == "n" else "n"
    figs = []
    for device, devices, panels in _slices(cells, var, y):
        contexts = {context_label(p) for p, _ in panels}
        shared = len(contexts) == 1
        # one print column per panel (≈ 2.4 in), the legend below the panels: a legend
        # beside them squeezed the panels and ran off the page
        fig, axes = plt.subplots(1, len(panels), figsize=(max(SINGLE[0], 2.4 * len(panels)),
                                                          SINGLE[1]), squeeze=False)
        kinds: set[str] = set()
        slopes: dict[str, list[str]] = {}
        for i, (ax, (panel, f)) in enumerate(zip(axes[0], panels)):
            tag = "abcdefgh"[i] if len(panels) > 1 else ""
            kinds |= _scaling_panel(ax, panel, var, y, palette, fits, f"{other}={int(f)}",
                                    device, lower_bound, tag, slopes)
            if counts:
                plain_y(ax)
            ax.set_xlabel(var)
            ax.set_title(_panel_title(panel, other, f, shared, tag), fontsize=7)
        axes[0][0].set_ylabel(ylabel)
        handles, labels = axes[0][0].get_legend_handles_labels()
        for ax in axes[0][1:]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        labels = [lab + ("; " + "; ".join(slopes[lab]) if slopes.get(lab) else "")
                  for lab in labels]
        extra = _censor_legend(axes[0][0], kinds)
        fig.legend(handles + extra, labels + [h.get_label() for h in extra],
                   loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=2 if len(panels) > 1 else 1)
        where = ", ".join(sorted(contexts))
        if shared:
            fig.suptitle(where, fontsize=7, y=1.03)
        fname = name + _suffix(device, devices)
        figs.append(Figure(num, fname, title, caption or
                           f"{ylabel} against {var} at fixed {other} ({where}); median over "
                           "seeds.", _save(fig, out, fname)))
    return figs


def _trajectory_problem(cells: pd.DataFrame):
    """The (context, n, m) with the most method variants that have trajectories."""
    got = cells[cells["data_ok"].astype(bool) & cells["last_iter"].notna()]
    if not len(got):
        return None
    keys = _context_cols() + ["device", "n", "m"]
    score = got.groupby(keys, dropna=False).agg(a=("algorithm", "nunique"),
                                                s=("seed", "nunique"), c=("cell", "count"))
    score = score.reset_index().sort_values(["a", "s", "c", "n"], ascending=False)
    best = score.iloc[0]
    mask = np.ones(len(got), bool)
    for k in keys:
        mask &= (got[k] == best[k]).to_numpy()
    prob = got[mask]
    # one variant per algorithm (the most run one), so an ablation does not crowd the plot
    keep = [g["variant"].value_counts().sort_index().idxmax()
            for _, g in prob.groupby("algorithm")]
    return prob[prob["variant"].isin(keep)]


def fig_loss_curves(cells: pd.DataFrame, rows: pd.DataFrame, palette: Palette,
                    out: Path) -> list[Figure]:
    prob = _trajectory_problem(cells)
    if prob is None or not len(rows):
        return [Figure(3, "fig03_loss_vs_iter", "Relative loss vs outer iteration",
                       missing="no readable trajectories"),
                Figure(4, "fig04_loss_vs_time", "Relative loss vs wall-clock time",
                       missing="no readable trajectories")]
    where = f"n={int(prob['n'].iloc[0])}, m={int(prob['m'].iloc[0])}, {context_label(prob)}"
    setup = prob.set_index("cell")["setup_time_s"].fillna(0.0)
    traj = rows[rows["cell"].isin(prob["cell"])].copy()
    traj["wall"] = traj["time_s"] + traj["cell"].map(setup).astype(float)
    floor = 1e-16
    figs = []
    fig, ax = plt.subplots(figsize=SINGLE)
    for variant, group in traj.groupby("variant", sort=True):
        st = palette(variant)
        stats = group.groupby("iter")["rel_loss"].agg(["median", "min", "max"]).clip(lower=floor)
        seeds = group["cell"].nunique()
        ax.plot(stats.index, stats["median"], color=st["color"], ls=st["linestyle"],
                label=f"{variant} ({seeds} seed{'s' * (seeds > 1)})")
        if seeds > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=st["color"],
                            alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("outer iteration t")
    ax.set_ylabel("relative loss $L_t/L_0$")
    ax.axhline(float(cells["target"].iloc[0]), color="0.5", lw=0.7, ls=":")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(where, fontsize=7)
    figs.append(Figure(3, "fig03_loss_vs_iter", "Relative loss vs outer iteration",
                       f"Median over seeds (band: min–max), {where}; one variant per "
                       "method (its most run one); dotted: the target ε.",
                       _save(fig, out, "fig03_loss_vs_iter")))

    fig, ax = plt.subplots(figsize=SINGLE)
    for variant, group in traj.groupby("variant", sort=True):
        st = palette(variant)
        curves = [g.sort_values("iter") for _, g in group.groupby("cell")]
        t_lo = max(min(float(c["wall"].iloc[1]) if len(c) > 1 else 1e-6 for c in curves), 1e-6)
        t_hi = max(float(c["wall"].iloc[-1]) for c in curves)
        grid = np.geomspace(t_lo, max(t_hi, t_lo * 1.01), 200)
        vals = []
        for c in curves:
            idx = np.searchsorted(c["wall"].to_numpy(), grid, side="right") - 1
            vals.append(c["rel_loss"].to_numpy()[np.clip(idx, 0, None)])
        vals = np.clip(np.array(vals), floor, None)
        ax.plot(grid, np.median(vals, axis=0), color=st["color"], ls=st["linestyle"],
                label=variant)
        if len(curves) > 1:
            ax.fill_between(grid, vals.min(axis=0), vals.max(axis=0), color=st["color"],
                            alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time (s): setup + cumulative step time")
    ax.set_ylabel("relative loss $L_t/L_0$")
    ax.axhline(float(cells["target"].iloc[0]), color="0.5", lw=0.7, ls=":")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(where, fontsize=7)
    figs.append(Figure(4, "fig04_loss_vs_time", "Relative loss vs wall-clock time",
                       f"Same runs as figure 3; median over seeds (band: min–max), {where}.",
                       _save(fig, out, "fig04_loss_vs_time")))
    return figs


INNER_METHODS = ("gn_cg", "gn_sketch", "gn_nystrom")


def fig_inner_iters(cells: pd.DataFrame, palette: Palette, fits, out: Path) -> list[Figure]:
    sub = cells[cells["algorithm"].isin(INNER_METHODS) & cells["mean_inner_iters"].notna()]
    if not len(sub):
        return [Figure(5, "fig05_inner_iters_vs_n", "Inner iterations vs n",
                       missing="no gn_cg / gn_sketch runs with inner iterations")]
    figs = fig_scaling(5, "fig05_inner_iters_vs_n", "Inner (CG) iterations per outer iteration",
                       sub, "n", "mean_inner_iters", "mean inner iterations", palette, None,
                       out, caption="Mean inner CG iterations per outer iteration against n "
                       "(median over seeds): unpreconditioned CG against the sketch-"
                       "preconditioned solver for each sketch ratio.", counts=True)
    return figs or [Figure(5, "fig05_inner_iters_vs_n", "Inner iterations vs n",
                           missing="fewer than 2 sizes n at any fixed m")]


def sketch_keys(cells: pd.DataFrame) -> tuple[str | None, str | None]:
    """(sketch-ratio hyperparameter, sketch-type hyperparameter) of gn_sketch, if any."""
    params = [json.loads(h) for h in cells["hyperparameters"]]
    keys = {k for p in params for k in p}
    ratio = next((k for k in ("sketch_ratio", "ratio", "oversampling", "sketch_factor", "c")
                  if k in keys), None)
    if ratio is None:
        ratio = next((k for k in sorted(keys) if "ratio" in k), None)
    kind = next((k for k in ("sketch", "sketch_type", "sketch_name") if k in keys), None)
    return ratio, kind


def _cond_column(rows: pd.DataFrame) -> str | None:
    return next((c for c in rows.columns if re.search(r"(^|_)(cond|kappa|condition)(_|$)", c, re.I)
                 and pd.api.types.is_numeric_dtype(rows[c])), None)


def fig_sketch_quality(cells: pd.DataFrame, rows: pd.DataFrame, out: Path) -> list[Figure]:
    name, title = "fig06_precond_vs_ratio", "Preconditioner quality vs sketch ratio"
    sk = cells[(cells["algorithm"] == "gn_sketch") & cells["status"].isin(DONE)]
    if not len(sk):
        return [Figure(6, name, title, missing="no gn_sketch runs")]
    ratio, kind = sketch_keys(sk)
    if ratio is None:
        return [Figure(6, name, title, missing="gn_sketch runs have no sketch-ratio parameter")]
    sk = sk.copy()
    params = [json.loads(h) for h in sk["hyperparameters"]]
    sk["ratio"] = pd.to_numeric(pd.Series([p.get(ratio) for p in params], index=sk.index),
                                errors="coerce")
    varying = sorted(k for k in {k for p in params for k in p} if k != ratio
                     and len({json.dumps(p.get(k), default=str) for p in params}) > 1)
    sk["sketch"] = [", ".join(f"{k}={p.get(k)}" for k in varying) or str(p.get(kind, "default"))
                    for p in params]
    sk = sk[sk["ratio"].notna()]
    if sk["ratio"].nunique() < 2:
        return [Figure(6, name, title, missing="fewer than 2 sketch ratios measured")]
    cond = _cond_column(rows) if len(rows) else None
    if cond:
        cmean = rows[rows["iter"] > 0].groupby("cell")[cond].mean()
        sk["cond"] = sk["cell"].map(cmean)
    ctx = _main_context(sk)
    per_size = ctx.groupby(["n", "m"]).agg(r=("ratio", "nunique"), c=("cell", "count"))
    per_size = per_size.reset_index().sort_values(["r", "c", "n", "m"], ascending=False)
    size = (per_size["n"].iloc[0], per_size["m"].iloc[0])
    ctx = ctx[(ctx["n"] == size[0]) & (ctx["m"] == size[1])]
    panels = [("mean_inner_iters", "mean inner iterations")]
    if cond and ctx["cond"].notna().any():
        panels.append(("cond", "condition number of $R^{-T} G R^{-1}$"))
    fig, axes = plt.subplots(1, len(panels), figsize=(SINGLE[0] * len(panels), SINGLE[1]),
                             squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        for i, (sketch, g) in enumerate(ctx.groupby("sketch", sort=True)):
            med = g.groupby("ratio")[col].median().dropna()
            ax.plot(med.index, med.values, marker=MARKERS[i % len(MARKERS)],
                    ls=LINESTYLES[i % len(LINESTYLES)], label=sketch)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        size_ticks(ax, sorted(ctx["ratio"].unique()))
        plain_y(ax)
        ax.set_xlabel(f"sketch ratio s/n ({ratio})")
        ax.set_ylabel(label)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="sketch")
    where = f"n={int(size[0])}, m={int(size[1])}, {context_label(ctx)}"
    fig.suptitle(where, fontsize=7)
    return [Figure(6, name, title, f"Per sketch type, {where}; median over seeds.",
                   _save(fig, out, name))]


#: The NTK diagnostic's fields (``record.ntk=true``, harness/runner.py); patterns are the
#: fallback for stores written by other versions.
NTK_FIELDS = {"g0_hinf": ("ntk_gram_gap", r"h_?inf|hinf|gram_gap"),
              "lam_ratio": ("ntk_lambda_min_ratio",
                            r"(lambda|lam)_?min.*(ratio|over|rel)|(ratio|rel).*(lambda|lam)_?min"),
              "lam_min": ("ntk_lambda_min", None), "lam": ("ntk_lambda", None),
              "w_move": ("ntk_weight_change", r"weight_(change|dist|move)|w_?minus_?w0")}
_NTK_IN_ROWS = ("lam_ratio", "lam_min", "w_move")


def ntk_columns(cells: pd.DataFrame, rows: pd.DataFrame) -> dict[str, str | None]:
    """Names of the NTK diagnostic's fields present: ``g0_hinf`` (run.json, ‖G_0 − H∞‖₂),
    ``lam_ratio`` (rows, λ_min(G_t)/λ) or ``lam_min`` with a run-level ``lam`` (λ),
    ``w_move`` (rows, ‖W_t − W_0‖_F)."""
    found: dict[str, str | None] = {}
    for key, (name, pattern) in NTK_FIELDS.items():
        frame = rows if key in _NTK_IN_ROWS else cells
        found[key] = None
        if not len(frame):
            continue
        names = [name] + [c for c in frame.columns if pattern and re.search(pattern, c, re.I)]
        for c in names:
            if c in frame.columns and pd.api.types.is_numeric_dtype(frame[c]) \
                    and frame[c].notna().any():
                found[key] = c
                break
    return found


def lambda_ratio(cells: pd.DataFrame, rows: pd.DataFrame, cols: dict) -> pd.Series | None:
    """λ_min(G_t)/λ per row, measured directly or from λ_min(G_t) and the run's λ."""
    if cols["lam_ratio"]:
        return rows[cols["lam_ratio"]]
    if cols["lam_min"] and cols["lam"]:
        return rows[cols["lam_min"]] / rows["cell"].map(cells.set_index("cell")[cols["lam"]])
    return None


def neuron_movement(rows: pd.DataFrame, cols: dict) -> pd.DataFrame:
    """Final ‖W_t − W_0‖_F/√m per cell: the root-mean-square movement of one neuron w_r, the
    quantity DZPS19 bound by O(1/√m) (the Frobenius norm itself stays O(1))."""
    col = cols["w_move"]
    last = rows[rows[col].notna()].sort_values("iter").groupby("cell").last().reset_index()
    last["neuron_move"] = last[col] / np.sqrt(last["m"].astype(float))
    return last


def fig_ntk(cells: pd.DataFrame, rows: pd.DataFrame, out: Path) -> list[Figure]:
    name, title = "fig07_ntk", "NTK regime: ‖G₀ − H∞‖ vs m, λ_min(G_t)/λ along training"
    cols = ntk_columns(cells, rows)
    lam_series = lambda_ratio(cells, rows, cols) if len(rows) else None
    panels = []
    if cols["g0_hinf"]:
        panels.append("g0")
    if lam_series is not None and lam_series.notna().any():
        panels.append("lam")
    if cols["w_move"]:
        panels.append("w")
    if not panels:
        return [Figure(7, name, title, missing="no NTK diagnostic fields (run with "
                       "record.ntk=true, e.g. the ntk sweep)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.8, SINGLE[1]),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "g0":
            g = cells[cells[cols["g0_hinf"]].notna()].drop_duplicates(
                ["m", "seed", "n", "dataset", "data_params"])  # one value per initialisation
            med = g.groupby("m")[cols["g0_hinf"]].median()
            ax.plot(g["m"], g[cols["g0_hinf"]], ls="none", marker="o", mfc="none", alpha=0.5,
                    color="C0")
            ax.plot(med.index, med.values, marker="o", color="C0", label="median")
            if len(med):
                ref = med.iloc[0] * np.sqrt(med.index[0] / med.index.to_numpy(float))
                ax.plot(med.index, ref, color="0.5", ls="--", label=r"$\propto 1/\sqrt{m}$")
            ax.set_xscale("log")
            ax.set_yscale("log")
            size_ticks(ax, sorted(set(med.index)))
            ax.set_xlabel("m")
            ax.set_ylabel(r"$\|G_0 - H^\infty\|_2$")
            ax.legend()
        elif panel == "lam":
            r = rows.assign(_lam=lam_series)[lambda f: f["_lam"].notna()]
            widths = sorted(r["m"].unique())
            cmap = plt.get_cmap("viridis")
            for j, (variant, gv) in enumerate(r.groupby("variant", sort=True)):
                for i, m in enumerate(widths):
                    g = gv[gv["m"] == m]
                    if not len(g):
                        continue
                    med = g.groupby("iter")["_lam"].median()
                    ax.plot(med.index, med.values, ls=LINESTYLES[j % 4],
                            color=cmap(i / max(len(widths) - 1, 1)),
                            label=f"{variant}, m={int(m)}")
            ax.axhline(LAMBDA_HALF, color="0.4", ls=":", lw=0.8)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(left=0)
            ax.set_xlabel("outer iteration t")
            ax.set_ylabel(r"$\lambda_{\min}(G_t)/\lambda$")
            ax.legend(fontsize=5, ncol=1 + (len(widths) > 4))
        else:
            last = neuron_movement(rows, cols)
            for j, (variant, g) in enumerate(last.groupby("variant", sort=True)):
                med = g.groupby("m")["neuron_move"].median()
                ax.plot(med.index, med.values, marker=MARKERS[j % len(MARKERS)],
                        ls=LINESTYLES[j % 4], label=variant)
            med = last.groupby("m")["neuron_move"].median()
            if len(med):
                ref = med.iloc[0] * np.sqrt(med.index[0] / med.index.to_numpy(float))
                ax.plot(med.index, ref, color="0.5", ls="--", label=r"$\propto 1/\sqrt{m}$")
            ax.legend()
            ax.set_xscale("log")
            ax.set_yscale("log")
            size_ticks(ax, sorted(set(last["m"])))
            ax.set_xlabel("m")
            ax.set_ylabel(r"final $\|W_t - W_0\|_F/\sqrt{m}$")
    fig.tight_layout()
    return [Figure(7, name, title, "Left to right (where measured): spectral distance of the "
                   "initial Gram matrix to its infinite-width limit against m, with a 1/√m "
                   "reference; λ_min(G_t)/λ along training (dotted: the ½ of the theory); "
                   "root-mean-square movement of one neuron at the end of training, "
                   "‖W_t − W_0‖_F/√m, against m. Fields: "
                   + ", ".join(f"{k}={v}" for k, v in cols.items() if v), _save(fig, out, name))]


LAMBDA_HALF = 0.5


def fig_phases(cells: pd.DataFrame, out: Path) -> list[Figure]:
    name, title = "fig08_phases", "Time per phase: gn_sketch and gn_gram across n"
    phase_cols = [c for c in cells.columns if c.startswith("mean_t_")]
    sub = cells[cells["algorithm"].isin(["gn_sketch", "gn_gram"]) & cells["status"].isin(DONE)]
    if not len(sub) or not phase_cols:
        return [Figure(8, name, title, missing="no gn_sketch / gn_gram runs with phase times")]
    panels = []
    for alg in ("gn_sketch", "gn_gram"):
        a = sub[sub["algorithm"] == alg]
        if not len(a):
            continue
        variant = a["variant"].value_counts().idxmax()  # the most measured variant
        a = _main_context(a[a["variant"] == variant])
        m = a.groupby("m")["n"].nunique().idxmax()
        panels.append((variant, a[a["m"] == m], m))
    fig, axes = plt.subplots(1, len(panels), figsize=(SINGLE[0] * len(panels), SINGLE[1]),
                             squeeze=False)
    cmap = plt.get_cmap("tab10")
    order = ["forward", "gram", "jacobian", "sketch", "factor", "solve", "update"]
    present = {c for _, a, _ in panels for c in phase_cols if a[c].notna().any()}
    all_phases = sorted(present, key=lambda c: (order.index(c[7:]) if c[7:] in order
                                                else len(order), c))
    colors = {c: cmap(i % 10) for i, c in enumerate(all_phases)}
    for ax, (variant, a, m) in zip(axes[0], panels):
        med = a.groupby("n")[[c for c in all_phases]].median().fillna(0.0)
        total = a.groupby("n")["mean_step_time_s"].median()
        share = med.div(total, axis=0).fillna(0.0)
        xs = np.arange(len(share))
        bottom = np.zeros(len(share))
        for c in all_phases:
            ax.bar(xs, share[c].to_numpy(), bottom=bottom, color=colors[c],
                   label=c.removeprefix("mean_t_"), width=0.7)
            bottom += share[c].to_numpy()
        for x, n in zip(xs, share.index):
            ax.text(x, min(bottom[x], 1.0) + 0.02, fmt_time(total[n]), ha="center",
                    fontsize=5.5, rotation=90, va="bottom")
        ax.set_xticks(xs, [str(int(n)) for n in share.index])
        ax.set_ylim(0, 1.35)
        ax.set_xlabel("n")
        ax.set_ylabel("share of step time")
        ax.set_title(f"{variant}, m={int(m)}", fontsize=7)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="phase")
    return [Figure(8, name, title, "Share of the mean step time spent in each phase (the gap "
                   "to 1 is time outside named phases); bar labels: mean step time. Median over "
                   "seeds.", _save(fig, out, name))]


def fig_memory(cells: pd.DataFrame, palette: Palette, out: Path) -> list[Figure]:
    name, title = "fig10_memory_vs_n", "Peak memory vs n"
    figs = []
    for device, devices, panels in _slices(cells, "n", "estimated_memory_bytes",
                                           max_panels=1):
        panel, f = panels[0]
        fig, ax = plt.subplots(figsize=SINGLE)
        kinds = set()
        for variant, g in panel.groupby("variant", sort=True):
            st = palette(variant)
            meas = g[g["status"].isin(DONE)].groupby("n")["peak_memory_bytes"].median().dropna()
            est = g.groupby("n")["estimated_memory_bytes"].median().dropna()
            if len(meas):
                ax.plot(meas.index, meas.values / 2**20, color=st["color"], marker=st["marker"],
                        ls=st["linestyle"], label=f"{variant} (measured)")
            if len(est):
                ax.plot(est.index, est.values / 2**20, color=st["color"], ls=(0, (1, 1)),
                        lw=0.8, alpha=0.7)
            sk = g[g["status"] == "skipped"]
            if len(sk):
                ax.plot(sk["n"], sk["estimated_memory_bytes"] / 2**20, ls="none", marker="X",
                        mfc="none", mec=st["color"], ms=6)
                kinds.add("skip")
        ax.set_xscale("log")
        ax.set_yscale("log")
        size_ticks(ax, sorted(set(panel["n"])))
        ax.set_xlabel("n")
        ax.set_ylabel("memory (MiB)")
        ax.set_title(f"m = {int(f)}, {context_label(panel)}", fontsize=7)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="0.4", ls=(0, (1, 1)), lw=0.8))
        labels.append("planned estimate")
        if kinds:
            handles.append(Line2D([], [], ls="none", marker="X", mfc="none", mec="0.3"))
            labels.append("skipped: estimate above budget")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        kind = str(panel["peak_memory_kind"].dropna().iloc[0]) \
            if panel["peak_memory_kind"].notna().any() else "unknown"
        fname = name + _suffix(device, devices)
        figs.append(Figure(10, fname, title, f"Measured peak memory ({kind}) and the planned "
                           "estimate each method's memory check uses; cells skipped by that "
                           "check are drawn at their estimate.", _save(fig, out, fname)))
    return figs or [Figure(10, name, title, missing="no memory figures recorded")]


def all_figures(cells: pd.DataFrame, rows: pd.DataFrame, fits_n: pd.DataFrame,
                fits_m: pd.DataFrame, out: Path) -> list[Figure]:
    """Every figure of the report, in order; a Figure with ``missing`` set where data lacks."""
    plt.rcParams.update(STYLE)
    # names from run.json are text, not mathtext (harness/reporting/text.py)
    cells, rows, fits_n, fits_m = (plain_frame(f) for f in (cells, rows, fits_n, fits_m))
    if not len(cells):
        return [Figure(i, f"fig{i:02d}", "", missing="no cells") for i in range(1, 11)]
    palette = Palette(cells)
    figs: list[Figure] = []

    def add(num, name, title, made):
        figs.extend(made or [Figure(num, name, title, missing="fewer than 2 sizes measured "
                                                             "in any slice")])

    def safe(num, name, title, draw):
        """A figure that fails to draw is reported as such; the rest of the report goes on."""
        try:
            return draw()
        except Exception as exc:
            plt.close("all")
            return [Figure(num, name, title, missing=f"could not be drawn: "
                                                    f"{type(exc).__name__}: {exc}"[:200])]

    t1, t2 = "Time per outer iteration vs n", "Time per outer iteration vs m"
    add(1, "fig01_time_vs_n", t1, safe(1, "fig01_time_vs_n", t1, lambda: fig_scaling(
        1, "fig01_time_vs_n", t1, cells, "n", "time_per_iter_s", "time per outer iteration (s)",
        palette, fits_n, out)))
    add(2, "fig02_time_vs_m", t2, safe(2, "fig02_time_vs_m", t2, lambda: fig_scaling(
        2, "fig02_time_vs_m", t2, cells, "m", "time_per_iter_s", "time per outer iteration (s)",
        palette, fits_m, out)))
    figs.extend(safe(3, "fig03_loss_vs_iter", "Relative loss vs outer iteration (and time)",
                     lambda: fig_loss_curves(cells, rows, palette, out)))
    figs.extend(safe(5, "fig05_inner_iters_vs_n", "Inner iterations vs n",
                     lambda: fig_inner_iters(cells, palette, fits_n, out)))
    figs.extend(safe(6, "fig06_precond_vs_ratio", "Preconditioner quality vs sketch ratio",
                     lambda: fig_sketch_quality(cells, rows, out)))
    figs.extend(safe(7, "fig07_ntk", "NTK regime", lambda: fig_ntk(cells, rows, out)))
    figs.extend(safe(8, "fig08_phases", "Time per phase", lambda: fig_phases(cells, out)))
    target = float(cells["target"].iloc[0])
    t9 = f"Time to relative loss {target:g} vs n"
    add(9, "fig09_time_to_target_vs_n", t9, safe(9, "fig09_time_to_target_vs_n", t9,
        lambda: fig_scaling(
            9, "fig09_time_to_target_vs_n", t9, cells, "n", "time_to_target_s",
            f"time to $L_t/L_0 \\leq$ {target:g} (s)", palette, None, out,
            lower_bound="time_lower_bound_s",
            caption=f"Setup plus cumulative step time until L_t/L_0 ≤ {target:g}, median over "
            "seeds; open triangles: runs that stopped first (a lower bound); markers on the "
            "top edge: skipped or failed cells.")))
    figs.extend(safe(10, "fig10_memory_vs_n", "Peak memory vs n",
                     lambda: fig_memory(cells, palette, out)))
    return sorted(figs, key=lambda f: (f.number, f.name))
