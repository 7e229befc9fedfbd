"""A figure checked by machine: what a reader would reject in print, found from the drawn
artists rather than by eye.

``problems(fig)`` draws the figure once and returns one line per defect:

* **clipped text**: a visible text artist (title, label, tick label, legend text, annotation)
  whose window extent leaves the figure's box;
* **legend over data**: a plotted point (line vertex, marker, scatter offset) or a bar inside a
  legend's box; **tall legend**: a legend taller than the axes it explains (a legend below the
  panels: taller than the tallest panel);
* **unkeyed style**: a drawn line or marker whose look no legend entry explains: its colour, its
  line style among the entries of that colour (or a grey key for the line style), and, for an
  open marker, an open key; a marker that cannot be drawn open (``1``, ``+``, ``x``: no face)
  where an open marker is meant;
* **empty panel**: axes with nothing plotted;
* **phase shares over 1**: a stacked bar on a "share" axis that reaches above 1.

Artists whose label starts with ``_ref`` (reference lines the caption or an annotation
explains: theory slopes, the target ε, a budget) are exempt from the key check.
``check_all(inputs)`` draws every registered figure from the same tables the report uses and
returns the defects per figure file name (a figure the data do not allow is skipped, with its
reason).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from harness.reporting import style
from harness.reporting.figures.registry import REGISTRY, Inputs, NotDrawn, fit_legends
from harness.reporting.text import plain_frame

#: Pixels of slack at 100 dpi (anti-aliasing, rounding of extents).
TOL_PX = 1.5
#: Labels of reference artists that captions or annotations explain, not legends.
REF_PREFIXES = ("_ref", "_theory")


def _hex(color) -> str:
    try:
        return to_hex(color).lower()
    except (ValueError, TypeError):
        return ""


def _grey(color: str) -> bool:
    """A grey key explains a look (a line style, an open marker), not a method."""
    return (len(color) == 7 and color[1:3] == color[3:5] == color[5:7]
            and color not in ("#000000", "#ffffff"))


def _dash(line: Line2D) -> str:
    ls = line.get_linestyle()
    return "" if ls in ("None", "none", " ", "") else str(ls)


def _hollow(line: Line2D) -> bool:
    return (line.get_marker() not in (None, "None", "none", "", " ")
            and _hex(line.get_markerfacecolor()) in ("#ffffff", "")
            or str(line.get_markerfacecolor()).lower() == "none")


def _has_marker(line: Line2D) -> bool:
    return line.get_marker() not in (None, "None", "none", "", " ")


def _legends(fig) -> list[tuple[Legend, object]]:
    """Every legend with the axes it belongs to (None: a figure legend)."""
    out = [(leg, None) for leg in fig.legends]
    out += [(ax.get_legend(), ax) for ax in fig.axes if ax.get_legend() is not None]
    return out


def _data_lines(ax) -> list[Line2D]:
    return [ln for ln in ax.get_lines() if ln.get_visible() and len(ln.get_xdata())]


#: Pixels between the points sampled along a drawn line segment.
STEP_PX = 3.0


def _along(xy: np.ndarray) -> np.ndarray:
    """Points every ``STEP_PX`` along the segments of a polyline (display coordinates)."""
    out = [xy]
    for a, b in zip(xy[:-1], xy[1:]):
        k = int(min(np.hypot(*(b - a)) // STEP_PX, 400))
        if k > 1:
            t = np.linspace(0, 1, k)[1:-1, None]
            out.append(a + t * (b - a))
    return np.vstack(out)


def _display_points(ax) -> np.ndarray:
    """Display coordinates of every plotted vertex and marker of ``ax``, and of points along
    its drawn lines (reference lines included: a legend must not hide them either)."""
    pts = []
    for ln in _data_lines(ax):
        xy = np.column_stack([np.asarray(ln.get_xdata(), float),
                              np.asarray(ln.get_ydata(), float)])
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy):
            xy = ln.get_transform().transform(xy)
            pts.append(_along(xy) if _dash(ln) else xy)
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible():
            offs = np.asarray(coll.get_offsets(), float)
            if offs.size:
                pts.append(coll.get_offset_transform().transform(offs))
    return np.vstack(pts) if pts else np.empty((0, 2))


def _bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_visible()
            and p.get_height() and p.get_width()]


def _text_clipped(fig, renderer) -> list[str]:
    box = fig.bbox
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or t.figure is None:
            continue
        # tick labels matplotlib keeps but does not draw lie outside their axes' view
        ext = t.get_window_extent(renderer)
        if ext.width == 0 and ext.height == 0:
            continue
        if (ext.x0 < box.x0 - TOL_PX or ext.y0 < box.y0 - TOL_PX
                or ext.x1 > box.x1 + TOL_PX or ext.y1 > box.y1 + TOL_PX):
            out.append(f"text cut by the figure edge: {t.get_text()[:50]!r}")
    return out


def _drawn_ticklabels(fig) -> set[int]:
    """ids of the tick labels matplotlib draws (ticks inside the view)."""
    keep = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is not None and lo - 1e-12 * abs(hi) <= loc <= hi + 1e-12 * abs(hi):
                    keep.update({id(tick.label1), id(tick.label2)})
    return keep


def _legend_problems(fig, renderer) -> list[str]:
    out = []
    for leg, owner in _legends(fig):
        lb = leg.get_window_extent(renderer)
        axes = [owner] if owner is not None else [a for a in fig.axes if a.get_visible()]
        tallest = max((a.get_window_extent(renderer).height for a in axes), default=0)
        if lb.height > tallest + TOL_PX:
            out.append(f"legend ({len(leg.get_texts())} entries) taller than the axes "
                       f"({lb.height:.0f} > {tallest:.0f} px)")
        for ax in axes:
            pts = _display_points(ax)
            inside = ((pts[:, 0] > lb.x0) & (pts[:, 0] < lb.x1)
                      & (pts[:, 1] > lb.y0) & (pts[:, 1] < lb.y1)) if len(pts) else []
            # a point clipped away by the axes (outside its view) is not drawn
            ab = ax.get_window_extent(renderer)
            if len(pts):
                inside &= ((pts[:, 0] >= ab.x0 - TOL_PX) & (pts[:, 0] <= ab.x1 + TOL_PX)
                           & (pts[:, 1] >= ab.y0 - TOL_PX) & (pts[:, 1] <= ab.y1 + TOL_PX))
            hit = int(np.sum(inside))
            hit += sum(1 for b in _bars(ax) if b.get_window_extent(renderer).overlaps(lb))
            if hit:
                out.append(f"legend covers {hit} plotted point(s) of {_axes_name(ax)}")
            under = _texts_under(ax, lb, renderer)
            if under:
                out.append(f"legend covers the text {under[0][:30]!r} in {_axes_name(ax)}")
    return out


def legend_covers(ax, leg, renderer) -> bool:
    """Whether legend ``leg`` covers a plotted point of ``ax`` or is taller than it."""
    lb = leg.get_window_extent(renderer)
    ab = ax.get_window_extent(renderer)
    if lb.height > ab.height + TOL_PX:
        return True
    pts = _display_points(ax)
    if len(pts) and np.any((pts[:, 0] > lb.x0) & (pts[:, 0] < lb.x1)
                           & (pts[:, 1] > lb.y0) & (pts[:, 1] < lb.y1)
                           & (pts[:, 0] >= ab.x0) & (pts[:, 0] <= ab.x1)
                           & (pts[:, 1] >= ab.y0) & (pts[:, 1] <= ab.y1)):
        return True
    return (any(b.get_window_extent(renderer).overlaps(lb) for b in _bars(ax))
            or bool(_texts_under(ax, lb, renderer)))


def _texts_under(ax, box, renderer) -> list[str]:
    """Annotations of ``ax`` (``∝n²``, ``ε = 1e-06``) that the box ``box`` overlaps."""
    return [t.get_text() for t in ax.texts if t.get_visible() and t.get_text().strip()
            and t.get_window_extent(renderer).overlaps(box)]


def _axes_name(ax) -> str:
    return repr(ax.get_title()[:30]) if ax.get_title() else "a panel"


def _keys(fig) -> list[Line2D]:
    keys = []
    for leg, _ in _legends(fig):
        keys += [h for h in leg.legend_handles if isinstance(h, Line2D)]
    return keys


def _style_problems(fig) -> list[str]:
    keys = _keys(fig)
    key_colors = {_hex(k.get_color()) for k in keys} | {_hex(k.get_markeredgecolor())
                                                         for k in keys}
    dashes_by_color: dict[str, set[str]] = {}
    for k in keys:
        dashes_by_color.setdefault(_hex(k.get_color()), set()).add(_dash(k))
    neutral_dashes = {_dash(k) for k in keys if _grey(_hex(k.get_color()))}
    open_key = any(_hollow(k) for k in keys)
    out: set[str] = set()
    for ax in fig.axes:
        for ln in _data_lines(ax):
            label = str(ln.get_label())
            if label.startswith(REF_PREFIXES):
                continue
            color = _hex(ln.get_color())
            if _has_marker(ln) and _hollow(ln):
                color = _hex(ln.get_markeredgecolor())
                if not MarkerStyle(ln.get_marker()).is_filled():
                    out.add(f"marker {ln.get_marker()!r} cannot be drawn open, yet is drawn "
                            "as an open (censored) point")
                if not open_key:
                    out.add("open markers drawn but no legend entry explains them")
            if color not in key_colors:
                out.add(f"colour {color} drawn in {_axes_name(ax)} has no legend entry")
                continue
            dash = _dash(ln)
            if dash and dash not in dashes_by_color.get(color, set()) | neutral_dashes:
                out.add(f"line style {dash!r} of colour {color} in {_axes_name(ax)} has no "
                        "legend entry")
    return sorted(out)


def _empty_panels(fig) -> list[str]:
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        drawn = (any(not str(ln.get_label()).startswith(REF_PREFIXES)
                     for ln in _data_lines(ax))
                 or _bars(ax) or any(c.get_visible() for c in ax.collections) or ax.images)
        if not drawn:
            out.append(f"empty panel: {_axes_name(ax)}")
    return out


def _share_problems(fig) -> list[str]:
    out = []
    for ax in fig.axes:
        if "share" not in ax.get_ylabel().lower():
            continue
        tops: dict[float, float] = {}
        for b in _bars(ax):
            x = round(b.get_x() + b.get_width() / 2, 6)
            tops[x] = max(tops.get(x, 0.0), b.get_y() + b.get_height())
        worst = max(tops.values(), default=0.0)
        if worst > 1.0 + 1e-6:
            out.append(f"phase shares add to {worst:.2f} > 1 in {_axes_name(ax)}")
    return out


def problems(fig) -> list[str]:
    """Every defect of a drawn matplotlib figure (empty: it passes)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    keep = _drawn_ticklabels(fig)
    ticklabels = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for t in axis.get_ticklabels(which="both")}
    hidden = []
    for t in fig.findobj(Text):  # undrawn tick labels: out of view, never printed
        if id(t) in ticklabels and id(t) not in keep and t.get_visible():
            t.set_visible(False)
            hidden.append(t)
    try:
        return (_text_clipped(fig, renderer) + _legend_problems(fig, renderer)
                + _style_problems(fig) + _empty_panels(fig) + _share_problems(fig))
    finally:
        for t in hidden:
            t.set_visible(True)


def check_all(data: Inputs, numbers=None) -> dict[str, list[str]]:
    """Draw every registered figure (or ``numbers``) from ``data`` and check it: figure file
    name -> its defects; a figure the data do not allow -> ``["skipped: <why>"]``."""
    found: dict[str, list[str]] = {}
    # as ``all_figures`` hands them to the figures: names as plain text, never mathtext
    data = Inputs(*(plain_frame(f) for f in (data.cells, data.rows, data.fits_n, data.fits_m)),
                  data.profile, data.datasheets)
    for number in sorted(numbers or REGISTRY):
        spec = REGISTRY[number]
        with plt.rc_context(style.RC):
            try:
                drawn = spec.draw(data)
            except NotDrawn as exc:
                found[spec.name] = [f"skipped: {exc}"]
                plt.close("all")
                continue
            except Exception as exc:  # the report would list it as not drawn: a defect
                found[spec.name] = [f"could not be drawn: {type(exc).__name__}: {exc}"]
                plt.close("all")
                continue
            for d in drawn:
                try:
                    fit_legends(d.fig)  # as ``registry.save`` does before it writes
                    found[spec.name + d.suffix] = problems(d.fig)
                finally:
                    plt.close(d.fig)
    return found


def defects(found: dict[str, list[str]]) -> dict[str, list[str]]:
    """``check_all``'s answer less the skipped figures."""
    return {k: v for k, v in found.items() if v and not v[0].startswith("skipped: ")}
