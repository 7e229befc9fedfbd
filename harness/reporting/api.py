"""The harness from Python (a notebook, a script): load stores as DataFrames, run cells, draw
any registered figure from a DataFrame. docs/notebook.md shows it at work.

    from harness.reporting import api

    api.run("algorithm=gd,gn_gram", "data.n=64", "model.m=256", store="nb_results")
    res = api.load("nb_results")          # res.cells: one row per cell; res.rows: per step
    figs = api.figure(1, res.cells, res.rows)   # matplotlib Figures, to show or save
    api.html("nb_results", out="nb_report")     # the whole report, REPORT.md and report.html

Every function raises ``harness.common.errors.ConfigError`` with the same one-line message the
command line prints for a bad value; nothing is written then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from harness.common.errors import ConfigError
from harness.execution.results import TARGET_REL_LOSS
from harness.reporting import fits as F
from harness.reporting.figures import REGISTRY
from harness.reporting.figures.registry import Inputs, NotDrawn, fit_legends
from harness.reporting.load import Problem, load_stores
from harness.reporting.metrics import cell_metrics
from harness.reporting.style import RC
from harness.reporting.text import plain_frame

__all__ = ["Results", "load", "run", "figure", "figures", "report", "html", "NotDrawn"]


@dataclass
class Results:
    """What ``load`` returns: ``cells`` (one row per cell, the report's per-cell metrics:
    ``time_per_iter_amortised_s``, ``time_to_target_s``, ``censor``, ...), ``rows`` (one row
    per outer step of every cell: ``iter``, ``rel_loss``, ``step_time_s``, ``t_<phase>``),
    and ``problems`` (cells that could not be read, each with why)."""

    cells: pd.DataFrame
    rows: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)


def load(*stores: str | Path, target: float = TARGET_REL_LOSS) -> Results:
    """Every cell of the given results stores (default ``results``), with the metrics the
    report computes against the target relative loss ``target``."""
    loaded = load_stores([str(s) for s in stores] or ["results"])
    return Results(cell_metrics(loaded, target), loaded.rows, list(loaded.problems))


def run(*overrides: str, store: str | Path | None = None, device: str = "cpu") -> pd.DataFrame:
    """Run the cells of ``nlt-run <overrides>`` in this process, one after the other (a
    comma list sweeps, as on the command line), into ``store``; a finished cell is reused.
    The whole command is validated before the first cell runs. Returns one row per cell:
    ``status``, ``reason``, ``cell`` (its directory), ``reused``."""
    from harness.execution.preflight import preflight
    from harness.execution.runner import run_cell

    args = [f"device={device}", *overrides]
    if store is not None:
        args.append(f"store={store}")
    cfgs = []
    preflight(args, visit=lambda cfg, _run: cfgs.append(cfg))
    out = []
    for cfg in cfgs:
        o = run_cell(cfg)
        out.append({"status": o.status, "reason": o.reason, "cell": str(o.cell),
                    "reused": o.reused})
    return pd.DataFrame(out, columns=["status", "reason", "cell", "reused"])


def figures() -> pd.DataFrame:
    """The registered figures: number, name (the file name) and title."""
    return pd.DataFrame([{"number": s.number, "name": s.name, "title": s.title}
                         for _, s in sorted(REGISTRY.items())])


def _spec(which: int | str):
    for number, spec in REGISTRY.items():
        if which in (number, spec.name, spec.slug):
            return spec
    raise ConfigError(f"figure {which!r} is not registered; registered: "
                      + ", ".join(f"{n} ({s.slug})" for n, s in sorted(REGISTRY.items())))


def figure(which: int | str, cells: pd.DataFrame, rows: pd.DataFrame | None = None,
           profile=None, datasheets=(), min_time_s: float = F.DEFAULT_MIN_TIME_S) -> list:
    """Draw registered figure ``which`` (its number, ``fig01_time_vs_n`` or ``time_vs_n``)
    from a cells table (``load(...).cells``, or any slice of it) and its per-step rows, as
    the report draws it. Returns its matplotlib Figures (one per device where it is drawn
    per device; ``fig.savefig`` or show them). Raises ``NotDrawn`` with the reason where the
    data do not allow the figure."""
    spec = _spec(which)
    rows = rows if rows is not None else pd.DataFrame(columns=["cell", "iter"])
    if not len(cells):
        raise NotDrawn("no cells")
    fits_n = F.scaling_fits(cells, "n", min_time_s)
    fits_m = F.scaling_fits(cells, "m", min_time_s)
    cells, rows, fits_n, fits_m = (plain_frame(f) for f in (cells, rows, fits_n, fits_m))
    with plt.rc_context(RC):
        drawn = spec.draw(Inputs(cells, rows, fits_n, fits_m, profile, list(datasheets)))
        for d in drawn:
            fit_legends(d.fig)
            d.fig.caption = d.caption  # the report's caption travels with the figure
    return [d.fig for d in drawn]


def report(*stores: str | Path, out: str | Path = "reports/latest", html: bool = False,
           target: float = TARGET_REL_LOSS) -> Path:
    """``nlt-report <stores> --out <out> [--html]``: REPORT.md, figures, cells.csv (and
    report.html); returns the path of REPORT.md."""
    from harness.reporting.report import build

    build([str(s) for s in stores] or ["results"], Path(out), target, html=html)
    return Path(out) / "REPORT.md"


def html(*stores: str | Path, out: str | Path = "reports/latest",
         target: float = TARGET_REL_LOSS) -> Path:
    """The whole report with its HTML page; returns the path of report.html."""
    return report(*stores, out=out, html=True, target=target).with_name("report.html")
