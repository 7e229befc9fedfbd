"""What the calibrated cost model says: predicted against measured time per iteration, and
the predicted crossover frontier m*(n) of gn_sketch against gn_gram."""

from __future__ import annotations

import numpy as np

from harness import costmodel as CM
from harness.reporting import predictions as P
from harness.reporting import style
from harness.reporting.figures.common import (
    legend_below,
    log_axis,
    method_order,
    new_figure,
    panel_tag,
)
from harness.reporting.figures.registry import Drawn, Inputs, NotDrawn, figure
from harness.reporting.style import _label_text


def _short(profile) -> str:
    """A legend-sized name: 'this machine' for the measured profile, the device for a sheet."""
    if not P.is_datasheet(profile):
        return "this machine (measured rates)"
    name = str(profile.data.get("device_name", "datasheet"))
    return f"{' '.join(name.split()[:2])} (datasheet)"


@figure(12, "predicted_vs_measured", "Cost model: predicted against measured time per iteration")
def predicted_vs_measured(data: Inputs) -> list[Drawn]:
    if data.profile is None:
        raise NotDrawn("no measured cost-model profile of this machine (run nlt-bench "
                       "--calibrate; reports/profiles/)")
    rows, summary = P.vs_measured(data.profile, data.cells, data.measured)
    if not len(rows):
        raise NotDrawn("no cell the cost model covers")
    held = P.is_heldout(rows)
    split = bool(held.any() and (~held).any())
    fig, (ax,) = new_figure(1, "column", legend_entries=rows["algorithm"].nunique() + split,
                            legend_ncol=3)
    for alg in sorted(rows["algorithm"].unique(), key=method_order):
        mine = rows["algorithm"] == alg
        st = style.method_style(alg)
        label = _label_text(alg)  # on the first of its parts drawn
        for part, fill in ((~held, "none"), (held, st["color"])):  # held out filled
            g = rows[mine & part]
            if len(g):
                ax.plot(g["measured_s"], g["predicted_s"], ls="none", marker=st["marker"],
                        color=st["color"], ms=3, mfc=fill, mew=0.7, label=label)
                label = "_nolegend_"
    if split:
        ax.plot([], [], ls="none", marker="o", color="0.3", ms=3, label="filled: held out")
    lo = float(min(rows["measured_s"].min(), rows["predicted_s"].min())) / 1.5
    hi = float(max(rows["measured_s"].max(), rows["predicted_s"].max())) * 1.5
    xs = np.array([lo, hi])
    ax.plot(xs, xs, color="0.3", lw=0.8, label="_ref_diagonal")
    band = summary["band"]
    ax.fill_between(xs, xs / band, xs * band, color="0.85", lw=0, zorder=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_axis(ax, "x")
    log_axis(ax, "y")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured time per iteration (s)")
    ax.set_ylabel("predicted (s)")
    legend_below(fig, *ax.get_legend_handles_labels(), ncol=3)
    caption = (f"Each point a cell: the cost model's time per outer iteration (profile: "
               f"{P.label(data.profile)}, calibrated {str(data.profile.data.get('date'))[:10]}) "
               f"against the measured one (median step; amortised mean for refresh=adaptive), "
               f"with the predicted inner iterations k and refresh share f (never the cell's "
               f"own). Grey band: within {band:g}×. "
               f"{summary['within']} of {summary['cells']} cells "
               f"({100 * summary['fraction_within']:.0f}%) within {band:g}×, median ratio "
               f"{summary['median_ratio']:.2f}, worst {summary['worst_ratio']:.2g} "
               f"({summary['worst_cell']}).")
    if held.any():
        part = CM.ratio_summary(rows[held])
        caption += (f" Filled markers: the held-out cells (harness/conf/sweep/heldout.yaml: "
                    f"shapes and seeds no calibration or model revision used), "
                    f"{part['within']} of {part['cells']} within {band:g}×; hollow: in sample.")
    return [Drawn(fig, caption)]


@figure(13, "frontier", "Predicted crossover frontier m*(n): gn_sketch against gn_gram")
def frontier(data: Inputs) -> list[Drawn]:
    profiles = ([data.profile] if data.profile is not None else []) + list(data.datasheets)
    if not profiles:
        raise NotDrawn("no cost-model profile (reports/profiles/)")
    tables = [(prof, P.frontier(prof, data.cells)) for prof in profiles]
    if not any(t[c].notna().any() for _, t in tables
               for c in ("m_per_iteration", "m_to_target")):
        raise NotDrawn("the cost model predicts no crossover m* for any profile within its "
                       "memory (nothing to draw but memory limits)")
    fig, axes = new_figure(2, legend_entries=len(profiles) * 2, legend_ncol=2, sharey=True)
    markers = ("o", "s", "D", "^")
    for i, (ax, col, what) in enumerate(zip(axes, ("m_per_iteration", "m_to_target"),
                                            ("per iteration", "to ε"))):
        for j, (prof, table) in enumerate(tables):
            sheet = P.is_datasheet(prof)
            color = "0.45" if sheet else style.method_color("gn_sketch")
            got = table[table[col].notna()]
            ax.plot(got["n"].astype(float), got[col].astype(float), color=color,
                    marker=markers[j % len(markers)], ls="--" if sheet else "-",
                    label=_label_text(_short(prof)))
            fits = table[table["m_max_fits"].notna()]
            limit = f"memory limit, {_short(prof)}"[:style.MAX_LEGEND_CHARS]
            ax.plot(fits["n"].astype(float), fits["m_max_fits"].astype(float), color=color,
                    ls=":", lw=0.8, label=_label_text(limit))
        grid = data.cells
        if len(grid) and "n" in grid:
            from harness.reporting.crossover import grid_slice

            g = grid_slice(grid)
            if len(g):
                ax.plot(g["n"].astype(float), g["m"].astype(float), ls="none", marker=".",
                        color="0.7", ms=2, zorder=0, label="_ref_grid")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("samples n")
        if i == 0:
            ax.set_ylabel("m* (gn_sketch faster)")
        ax.set_title(f"{panel_tag(i, 2)}{what}")
    handles, labels = axes[0].get_legend_handles_labels()
    labels = [t if len(t) <= style.MAX_LEGEND_CHARS else t[:style.MAX_LEGEND_CHARS - 1] + "…"
              for t in labels]
    legend_below(fig, handles, labels, ncol=2)
    outer = P.measured_outer(data.cells)
    caption = (f"Profiles: {'; '.join(P.label(p) for p in profiles)}. "
               "Smallest width m at which the cost model predicts gn_sketch (its defaults) "
               "faster than gn_gram, per outer iteration (a) and to ε (b, with "
               f"{outer['gn_sketch']:g} and {outer['gn_gram']:g} outer iterations, the "
               "measured medians or the defaults); dotted: the largest m whose memory plan "
               "fits the profile's memory, so a missing point means no predicted win below "
               "it. Datasheet profiles (dashed, grey) are predictions from published rates, "
               "not measurements. Light dots: the measured grid.")
    return [Drawn(fig, caption)]
