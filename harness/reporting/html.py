"""``nlt-report --html``: one self-contained page beside REPORT.md (``report.html``).

It is built from what ``nlt-report`` wrote into its output directory (REPORT.md, cells.csv,
results.parquet and the figures' PNGs), so it shows the same verdicts, tables and figures:

* the text of REPORT.md (markdown-it-py), every table of it sortable and searchable
  (itables: DataTables, bundled offline), and a sortable table of every cell;
* every figure, its PNG embedded (base64);
* interactive versions of the scaling, loss and crossover plots (plotly: hover for values,
  click a legend entry to hide or show a method).

Nothing is fetched when the page is viewed: plotly.js and the DataTables bundle are written
into the page (about 5 MB). No JavaScript of ours: the libraries ship all of it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from harness.reporting.crossover import rankings
from harness.reporting.figures.common import main_context, method_names

HTML_NAME = "report.html"
#: Columns of the per-cell table (those the cells table has; the rest stay in cells.csv).
CELL_COLUMNS = ("algorithm", "variant", "model", "depth", "dataset", "n", "m", "d", "seed",
                "device", "dtype", "status", "censor", "time_per_iter_median_s",
                "time_per_iter_amortised_s", "iters_to_target", "time_to_target_s",
                "time_lower_bound_s", "min_rel_loss", "peak_memory_bytes", "cell")
#: The per-iteration time the scaling plot shows (what the fits use).
TIME_COLUMN = "time_per_iter_amortised_s"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
nav a { margin-right: 1em; }
table { font-size: 0.85em; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _markdown():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _tables_of(md, text: str) -> tuple[str, list[pd.DataFrame]]:
    """Render Markdown ``text``; each GitHub table becomes a placeholder and a DataFrame of
    its cells (inline Markdown rendered to HTML), so a library can draw it sortable."""
    tokens = md.parse(text)
    out_tokens, frames = [], []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type != "table_open":
            out_tokens.append(tok)
            i += 1
            continue
        header, body, row, in_head = [], [], [], False
        while tokens[i].type != "table_close":
            t = tokens[i]
            if t.type == "thead_open":
                in_head = True
            elif t.type == "thead_close":
                in_head = False
            elif t.type == "tr_open":
                row = []
            elif t.type == "tr_close":
                (header if in_head else body).append(row)
            elif t.type == "inline":
                row.append(md.renderInline(t.content))
            i += 1
        i += 1
        names = _unique(header[0] if header else [])
        frames.append(pd.DataFrame(body, columns=names))
        placeholder = md.parse(f"TABLE{len(frames) - 1}PLACEHOLDER")
        out_tokens += placeholder
    return md.renderer.render(out_tokens, md.options, {}), frames


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _datatable(frame: pd.DataFrame, caption: str | None = None) -> str:
    from itables import to_html_datatable

    return to_html_datatable(frame, caption=caption, connected=False, allow_html=True,
                             display_logo_when_loading=False, classes="display compact",
                             lengthMenu=[10, 25, 100, -1], pageLength=25)


def _datatables_library() -> str:
    """The DataTables bundle, inline (itables' offline mode)."""
    from itables import options
    from itables.javascript import generate_init_offline_itables_html

    return generate_init_offline_itables_html(options.dt_bundle)


def _embed_images(body: str, out: Path) -> str:
    """``<img src="figNN.png">`` -> the PNG as a data URI (the page travels alone)."""

    def repl(m: re.Match) -> str:
        path = out / html.unescape(m.group(2))
        if not (path.is_file() and path.suffix.lower() == ".png"):
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{m.group(1)}data:image/png;base64,{data}"'

    return re.sub(r'(<img src=")([^"]+)"', repl, body)


# --- interactive plots ---------------------------------------------------------------------------

def _names(cells: pd.DataFrame) -> pd.Series:
    """The name of each cell's trace: its method (or named preset), and its variant where
    that method ran several."""
    return method_names(cells) + _variant_suffix(cells)


def _variant_suffix(cells: pd.DataFrame) -> pd.Series:
    """`` · <variant>`` where a method ran several variants, else nothing."""
    names = method_names(cells)
    several = cells.groupby(names)["variant"].transform("nunique") > 1
    return pd.Series([f" · {v}" if s else "" for v, s in zip(cells["variant"], several)],
                     index=cells.index)


def scaling_plot(cells: pd.DataFrame):
    """Time per outer iteration against n (log-log) at the most used width m, one trace per
    method variant: hover for values, click the legend to hide or show."""
    import plotly.graph_objects as go

    col = TIME_COLUMN if TIME_COLUMN in cells else "time_per_iter_s"
    got = cells[pd.to_numeric(cells.get(col), errors="coerce") > 0] if col in cells else cells[:0]
    got = main_context(got) if len(got) else got
    fig = go.Figure()
    if not len(got):
        return None
    m = got.groupby("m")["n"].nunique().idxmax()
    got = got[got["m"] == m]
    got = got.assign(_name=_names(got))
    for name, g in sorted(got.groupby("_name"), key=lambda kv: kv[0]):
        med = g.groupby("n")[col].median()
        fig.add_trace(go.Scatter(x=med.index, y=med.values, mode="lines+markers", name=name,
                                 hovertemplate="n=%{x}<br>%{y:.3g} s<extra>" + name
                                 + "</extra>"))
    fig.update_layout(title=f"Time per outer iteration (amortised) vs n, m = {int(m)}",
                      xaxis={"type": "log", "title": "n"},
                      yaxis={"type": "log", "title": "seconds per iteration"},
                      legend={"title": "click to hide/show"}, height=520)
    return fig


def loss_plot(cells: pd.DataFrame, rows: pd.DataFrame):
    """Relative loss against outer iteration at the size with the most methods."""
    import plotly.graph_objects as go

    if not len(rows) or "rel_loss" not in rows or not len(cells):
        return None
    got = cells[cells["cell"].isin(rows["cell"].unique())]
    if not len(got):
        return None
    got = got.assign(_name=_names(got))
    score = got.groupby(["n", "m"])["_name"].nunique()
    n, m = score.idxmax()
    prob = got[(got["n"] == n) & (got["m"] == m)]
    fig = go.Figure()
    for name, g in sorted(prob.groupby("_name"), key=lambda kv: kv[0]):
        traj = rows[rows["cell"].isin(g["cell"]) & (rows["iter"] >= 0)]
        med = traj.groupby("iter")["rel_loss"].median().clip(lower=1e-16)
        fig.add_trace(go.Scatter(x=med.index, y=med.values, mode="lines", name=name,
                                 hovertemplate="t=%{x}<br>L/L0=%{y:.3g}<extra>" + name
                                 + "</extra>"))
    fig.update_layout(title=f"Relative loss vs outer iteration, n = {int(n)}, m = {int(m)} "
                      "(median over seeds)", xaxis={"title": "outer iteration t"},
                      yaxis={"type": "log", "title": "L_t / L_0"}, height=520,
                      legend={"title": "click to hide/show"})
    return fig


def crossover_plot(cells: pd.DataFrame):
    """The fastest method to ε at each (n, m) of the grid, one trace per winner."""
    import plotly.graph_objects as go

    try:
        ranked = rankings(cells, "time_to_target")
    except Exception:  # a grid the ranking cannot read: no plot, the figures still show
        return None
    ranked = ranked[ranked["winner"].notna()] if len(ranked) else ranked
    if not len(ranked):
        return None
    fig = go.Figure()
    for winner, g in ranked.groupby("winner"):
        text = [f"runner-up {r}, margin {'≥' if b else ''}{x:.2f}×" if x == x else "only one"
                for r, x, b in zip(g["runner_up"], g["margin"], g["margin_is_bound"])]
        fig.add_trace(go.Scatter(x=g["n"], y=g["m"], mode="markers", name=str(winner),
                                 marker={"symbol": "square", "size": 22}, text=text,
                                 hovertemplate="n=%{x}, m=%{y}<br>%{text}<extra>"
                                 + str(winner) + "</extra>"))
    fig.update_layout(title="Fastest method to ε at each (n, m)",
                      xaxis={"type": "log", "title": "n"}, yaxis={"type": "log", "title": "m"},
                      height=520, legend={"title": "winner (click to hide/show)"})
    return fig


def _plot_html(fig, first: bool) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=True if first else False,
                       config={"displaylogo": False})


# --- the page -----------------------------------------------------------------------------------

def build_html(out: Path, rows: pd.DataFrame | None = None) -> Path:
    """Write ``out/report.html`` from the report in ``out``; returns its path. ``rows``: the
    per-iteration rows (read from ``out/results.parquet`` when not given)."""
    out = Path(out)
    text = (out / "REPORT.md").read_text(encoding="utf-8")
    cells = pd.read_csv(out / "cells.csv") if (out / "cells.csv").is_file() else pd.DataFrame()
    if rows is None:
        parquet = out / "results.parquet"
        rows = pd.read_parquet(parquet) if parquet.is_file() else pd.DataFrame()
    md = _markdown()
    body, frames = _tables_of(md, text)
    for i, frame in enumerate(frames):
        body = body.replace(f"<p>TABLE{i}PLACEHOLDER</p>", _datatable(frame))
    body = _embed_images(body, out)

    plots = []
    if len(cells):
        for make, args in ((scaling_plot, (cells,)), (loss_plot, (cells, rows)),
                           (crossover_plot, (cells,))):
            fig = make(*args)
            if fig is not None:
                plots.append(_plot_html(fig, first=not plots))
    interactive = ("<h2 id='interactive'>Interactive plots</h2><p>Hover for values; click a "
                   "legend entry to hide or show it, double-click to show it alone.</p>"
                   + "".join(plots) if plots else
                   "<h2 id='interactive'>Interactive plots</h2><p>No cells to plot.</p>")
    table = ""
    if len(cells):
        shown = cells[[c for c in CELL_COLUMNS if c in cells]]
        table = ("<h2 id='cells'>Every cell</h2><p>Sort by a column header; search with the "
                 "box. All columns: cells.csv.</p>" + _datatable(shown))
    title = html.escape(next((ln[2:] for ln in text.splitlines() if ln.startswith("# ")),
                             "Benchmark report"))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}"
            f"</title><style>{_STYLE}</style>{_datatables_library()}</head><body>"
            "<nav><a href='#interactive'>Interactive plots</a><a href='#cells'>Every cell</a>"
            "</nav>" + body + interactive + table + "</body></html>")
    path = out / HTML_NAME
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
