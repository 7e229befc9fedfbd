"""The report's figures: each is one function registered with its number, file name and title
(``registry.figure``), in the module of its kind; ``all_figures`` draws them all in number
order, in the print style of ``harness.reporting.style``, as PDF and 300-dpi PNG.

Every module of this package is imported here, so a new figure is one decorated function.
Scaling plots are log-log with medians over seeds; censored cells never vanish (open markers:
an arrow up for a lower bound, the top edge for a cell with no measurement).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pandas as pd

from harness.reporting.figures.registry import REGISTRY, Figure, Inputs, draw_all
from harness.reporting.text import plain_frame

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["REGISTRY", "Figure", "all_figures"]


def all_figures(cells: pd.DataFrame, rows: pd.DataFrame, fits_n: pd.DataFrame | None,
                fits_m: pd.DataFrame | None, out: Path, profile=None,
                datasheets=(), measured=()) -> list[Figure]:
    """Every figure of the report, in order; a Figure with ``missing`` set where data lack."""
    # names from run.json are text, not mathtext (harness/reporting/text.py)
    cells, rows, fits_n, fits_m = (plain_frame(f) for f in (cells, rows, fits_n, fits_m))
    return draw_all(Inputs(cells, rows, fits_n, fits_m, profile, list(datasheets),
                           list(measured)), out)
