"""The figure registry: a figure is one function, registered with its number, file name and
title in one place.

    @figure(3, "loss_vs_iter", "Relative loss vs outer iteration")
    def loss_vs_iter(data: Inputs) -> list[Drawn]:
        ...
        return [Drawn(fig, caption)]

A figure function draws with matplotlib and returns ``Drawn`` records (one per device where a
figure is drawn per device) or raises ``NotDrawn(reason)``; the registry saves each as PDF and
PNG (``style.DPI``), records what its legends show, and turns any other exception into a
``Figure`` that says it could not be drawn, so one bad figure never stops the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from harness.reporting import style  # noqa: E402


@dataclass
class Figure:
    """A figure of the report: its files (relative to the report), or why it is missing."""

    number: int
    name: str
    title: str
    caption: str = ""
    files: list[str] = field(default_factory=list)
    missing: str = ""  # why it was not drawn
    #: legend text -> colour (hex) of every legend entry, for checks across figures
    legend: dict[str, str] = field(default_factory=dict)


class NotDrawn(Exception):
    """Raised by a figure function when the data do not allow the figure (the message says
    what is missing)."""


@dataclass
class Drawn:
    fig: object  # matplotlib.figure.Figure
    caption: str
    suffix: str = ""  # appended to the file name (``_cuda`` when drawn per device)


@dataclass
class Inputs:
    """What every figure function may read."""

    cells: pd.DataFrame  # metrics.cell_metrics
    rows: pd.DataFrame  # per-iteration rows (load.Loaded.rows)
    fits_n: pd.DataFrame | None
    fits_m: pd.DataFrame | None
    #: the cost model's measured profile of the cells' machine, and datasheet profiles
    #: (harness/reporting/predictions.py); figures that need them say so when missing
    profile: object | None = None
    datasheets: list = field(default_factory=list)
    #: every measured profile: cells of another machine are priced by their own
    measured: list = field(default_factory=list)

    @property
    def target(self) -> float:
        return float(self.cells["target"].iloc[0]) if len(self.cells) else float("nan")


@dataclass(frozen=True)
class Spec:
    number: int
    slug: str
    title: str  # may hold ``{target:g}``
    draw: Callable[[Inputs], list[Drawn]]

    @property
    def name(self) -> str:
        return f"fig{self.number:02d}_{self.slug}"


REGISTRY: dict[int, Spec] = {}


def figure(number: int, slug: str, title: str):
    """Register ``draw`` as figure ``number``, written as ``figNN_<slug>.{pdf,png}``."""

    def register(draw: Callable[[Inputs], list[Drawn]]):
        if number in REGISTRY and REGISTRY[number].draw.__qualname__ != draw.__qualname__:
            raise ValueError(f"figure {number} registered twice: {REGISTRY[number].slug!r} "
                             f"and {slug!r}")
        REGISTRY[number] = Spec(number, slug, title, draw)
        return draw

    return register


def legend_entries(fig) -> dict[str, str]:
    """Text -> colour of every entry in the figure's legends (figure- and axes-level)."""
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    out: dict[str, str] = {}
    for leg in legends:
        for handle, text in zip(leg.legend_handles, leg.get_texts()):
            color = None
            if hasattr(handle, "get_color"):
                color = handle.get_color()
            elif hasattr(handle, "get_facecolor"):
                color = handle.get_facecolor()
            try:
                out[text.get_text()] = to_hex(color) if color is not None else ""
            except (ValueError, TypeError):
                out[text.get_text()] = ""
    return out


def fit_legends(fig) -> None:
    """Make a figure taller while a legend below its panels is taller than the tallest panel
    (the panels shrink as a legend grows; a reader must see the data first)."""
    if not fig.legends:
        return
    for _ in range(10):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legend = max(leg.get_window_extent(renderer).height for leg in fig.legends)
        tallest = max((a.get_window_extent(renderer).height for a in fig.axes
                       if a.get_visible()), default=legend)
        if legend <= tallest:
            return
        fig.set_figheight(fig.get_figheight() + (legend - tallest) / fig.dpi + 0.3)


def save(fig, out: Path, name: str, title: str, caption: str) -> tuple[list[str], dict]:
    """Write ``name``.pdf and .png; returns (file names, legend entries)."""
    out.mkdir(parents=True, exist_ok=True)
    fit_legends(fig)
    legend = legend_entries(fig)
    files = []
    for ext, meta in (("pdf", {"Title": title, "Subject": caption[:1000]}),
                      ("png", {"Title": title, "Description": caption[:1000]})):
        path = out / f"{name}.{ext}"
        fig.savefig(path, dpi=style.DPI, metadata=meta)
        files.append(path.name)
    plt.close(fig)
    return files, legend


def draw_all(data: Inputs, out: Path) -> list[Figure]:
    """Every registered figure, in number order."""
    figs: list[Figure] = []
    for number in sorted(REGISTRY):
        spec = REGISTRY[number]
        title = spec.title.format(target=data.target)
        if not len(data.cells):
            figs.append(Figure(number, spec.name, title, missing="no cells"))
            continue
        try:
            with plt.rc_context(style.RC):
                drawn = spec.draw(data)
                if not drawn:
                    raise NotDrawn("no data for it in these stores")
                for d in drawn:
                    name = spec.name + d.suffix
                    files, legend = save(d.fig, out, name, title, d.caption)
                    figs.append(Figure(number, name, title, d.caption, files, legend=legend))
        except NotDrawn as exc:
            plt.close("all")
            figs.append(Figure(number, spec.name, title, missing=str(exc)))
        except Exception as exc:  # a figure that fails is reported; the rest go on
            plt.close("all")
            figs.append(Figure(number, spec.name, title, missing=f"could not be drawn: "
                               f"{type(exc).__name__}: {exc}"[:200]))
    return figs
