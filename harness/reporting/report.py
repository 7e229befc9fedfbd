"""``nlt-report``: one command from results stores to a report a reviewer can read.

    nlt-report                                  # results/ -> reports/latest/
    nlt-report results/ gpu_results/ --out reports/all
    nlt-report /tmp/store --target 1e-8 --min-time-s 5e-4

Writes into DIR: ``results.parquet`` (every per-iteration row of every cell, joined with the
cell's run.json fields; a cell without rows keeps one row with a null ``iter``),
``cells.csv`` (one row per cell with the derived quantities the report uses), the figures
(``figNN_*.png`` and ``.pdf``) and ``REPORT.md`` embedding them. Partial data never stop it:
unreadable files and cells that were skipped, failed or diverged are listed in their own
section, and censored points are drawn marked.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.common.errors import ConfigError, fail, guarded
from harness.costmodel.profile import Profile
from harness.execution.results import TARGET_REL_LOSS, regular_file_problem
from harness.reporting import claims as C
from harness.reporting import crossover as X
from harness.reporting import fits as F
from harness.reporting import predictions as P
from harness.reporting import tables as T
from harness.reporting.figures import Figure, all_figures
from harness.reporting.html import build_html
from harness.reporting.load import (
    Loaded,
    Problem,
    leave_out_disturbed,
    load_stores,
    merged_table,
    store_paths,
)
from harness.reporting.metrics import cell_metrics
from harness.reporting.output import out_problem, staged
from harness.reporting.tables import fmt_time
from harness.reporting.text import md_code, md_escape, md_plain

PROG = "nlt-report"


@dataclass
class Report:
    out: Path
    loaded: Loaded
    cells: pd.DataFrame
    figures: list[Figure] = field(default_factory=list)
    claims: list[C.Claim] = field(default_factory=list)
    fits_n: pd.DataFrame | None = None
    fits_m: pd.DataFrame | None = None
    profile: object | None = None  # the cost model's measured profile of this machine
    measured: list = field(default_factory=list)  # every measured profile (cells' machines)
    datasheets: list = field(default_factory=list)
    hygiene: list[str] = field(default_factory=list)  # load.leave_out_disturbed's lines

    @property
    def figure_files(self) -> list[Path]:
        return [self.out / f for fig in self.figures for f in fig.files]


def md_table(frame: pd.DataFrame, markup: tuple[str, ...] = ()) -> str:
    """A GitHub-markdown table (no tabulate dependency). Every value is escaped
    (``text.md_escape``: text from a store renders as the text it is), except in the
    ``markup`` columns: the report's own emphasis, built from escaped parts."""
    if frame is None or not len(frame):
        return "_(none)_\n"

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}"
        return md_escape(v)

    head = "| " + " | ".join(md_escape(c) for c in frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    raw = [c in markup for c in frame.columns]
    body = ["| " + " | ".join(str(v).replace("\n", " ") if keep else cell(v)
                              for v, keep in zip(row, raw)) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def _fits_table(fits: pd.DataFrame) -> pd.DataFrame:
    if fits is None or not len(fits):
        return pd.DataFrame()
    out = fits.copy()
    out["fitted slope [95% CI]"] = [f"{r.slope:.2f} [{r.lo:.2f}, {r.hi:.2f}]"
                                    for r in fits.itertuples()]
    out["theory"] = [f"{t:.2f}" if t == t else "–" for t in fits["theory"]]
    out["agrees"] = [{True: "yes", False: "**no**"}.get(a, "–") for a in fits["agrees"]]
    return out[["variant", "device", "fixed", "range", "term", "theory",
                "fitted slope [95% CI]", "n_sizes", "n_points", "agrees", "note"]]


def _theory_table(cells: pd.DataFrame) -> pd.DataFrame:
    algs = sorted(cells["algorithm"].dropna().unique()) if len(cells) else []
    return pd.DataFrame([{"method": a, "cost per outer iteration (spec §3)":
                          F.THEORY_TEXT.get(a, "no model")} for a in algs])


def check_options(stores: list[str], out: str | Path, target: float, min_time_s: float,
                  profiles: list[str] | None) -> list[Path]:
    """Every option, checked before anything is read or written (a ConfigError names the
    value and what is allowed); returns the stores' paths."""
    if not (0 < target < 1):
        raise ConfigError(f"--target must be a relative loss L_t/L_0 in (0, 1), got {target}")
    if not (min_time_s >= 0 and math.isfinite(min_time_s)):
        raise ConfigError(f"--min-time-s must be a finite number >= 0 (seconds), "
                          f"got {min_time_s}")
    paths = store_paths(stores)
    problem = out_problem(out, paths)
    if problem:
        raise ConfigError(problem)
    for path in profiles or []:
        try:
            odd = regular_file_problem(Path(path))
        except FileNotFoundError:
            odd = None  # Profile.load names it, with how to make one
        except OSError as exc:
            odd = exc.strerror or str(exc)
        if odd:
            raise ConfigError(f"--profile {path!r}: {odd}")
        Profile.load(path)
    return paths


def build(stores: list[str], out: Path | str, target: float = TARGET_REL_LOSS,
          min_time_s: float = F.DEFAULT_MIN_TIME_S, command: str | None = None,
          profiles: list[str] | None = None, include_disturbed: bool = False,
          html: bool = False) -> Report:
    """Check every option, then load, compute, draw and write into a staging directory that
    replaces ``out`` whole when done (``harness.reporting.output``); returns what was made
    (the tests read it). ``html``: also report.html (``harness.reporting.html``), staged with
    the rest."""
    check_options(stores, out, target, min_time_s, profiles)
    with staged(Path(out)) as stage:
        report = _build_into(stage, stores, target, min_time_s, profiles, include_disturbed)
        report.out = Path(out)
        text = render(report, stores, target, min_time_s, command)
        (stage / "REPORT.md").write_text(text)
        if html:
            build_html(stage, report.loaded.rows)
    return report


def _build_into(out: Path, stores: list[str], target: float, min_time_s: float,
                profiles: list[str] | None, include_disturbed: bool) -> Report:
    loaded, hygiene = leave_out_disturbed(load_stores(stores), include_disturbed)
    cells = cell_metrics(loaded, target)
    merged = merged_table(loaded)
    merged.to_parquet(out / "results.parquet", index=False)
    if len(cells):
        cells.to_csv(out / "cells.csv", index=False)
    report = Report(out, loaded, cells, hygiene=hygiene)
    if len(cells):
        for var in ("n", "m"):
            try:
                fits = F.scaling_fits(cells, var, min_time_s)
            except Exception as exc:  # odd data: report it, draw the rest
                loaded.problems.append(Problem("(fits)", f"fit in {var} failed",
                                               f"{type(exc).__name__}: {exc}"[:200]))
                fits = pd.DataFrame(columns=F.FIT_COLUMNS)
            setattr(report, f"fits_{var}", fits)
    report.profile, report.datasheets = P.load_profiles(cells, profiles)
    report.measured = P.measured_profiles(profiles)
    report.figures = all_figures(cells, loaded.rows, report.fits_n, report.fits_m, out,
                                 report.profile, report.datasheets, report.measured)
    prediction = None
    if len(cells):
        try:
            prediction = P.c6_prediction(report.profile, cells)
        except Exception as exc:  # a model that fails on odd data: the verdict waits
            loaded.problems.append(Problem("(cost model)", "prediction failed",
                                           f"{type(exc).__name__}: {exc}"[:200]))
    report.claims = C.check_claims(cells, loaded.rows, report.fits_n, report.fits_m,
                                   prediction)
    return report


def render(r: Report, stores: list[str], target: float, min_time_s: float,
           command: str | None) -> str:
    cmd = command or f"nlt-report {' '.join(shlex.quote(s) for s in stores)} --out {r.out}"
    env, warnings = T.environment(r.cells)
    L = _header(r, stores, target, cmd, warnings)
    L += _headline_section(r.cells)
    L += _claims_section(r)
    L += _scaling_section(r, min_time_s)
    L += _crossover_sections(r.cells)
    L += _depth_section(r)
    L += _cost_model_section(r)
    L += _figures_section(r.figures)
    L += _environment_section(r.cells, env, warnings)
    L += ["## Problems and censored cells", "",
          "Unreadable or truncated files (their cells are left out of every figure), and cells "
          "that were skipped, failed or diverged, with their reasons.", "",
          md_table(T.problem_table(r.loaded.problems, r.cells))]
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", cmd)), default=0) + 1)
    L += ["## Regenerate", "", fence, cmd.replace("\n", " "), fence, ""]
    return "\n".join(L)


def _header(r: Report, stores: list[str], target: float, cmd: str,
            warnings: list[str]) -> list[str]:
    cells = r.cells
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    models = sorted(set(cells["model"])) if len(cells) and "model" in cells else []
    what = "two-layer ReLU networks" if models in ([], ["two_layer"]) else \
        f"ReLU networks ({', '.join(models)})"
    L = [f"# Benchmark report: Gauss–Newton training of {what}", "",
         f"Generated {now} by {md_code(cmd)} from {len(cells)} cells in "
         f"{', '.join(md_code(s) for s in stores)}. Target relative loss ε = {target:g}. "
         "Every number below comes from `results.parquet` (per-iteration rows) and "
         "`cells.csv` (per-cell quantities) next to this file; what each figure and table "
         "shows, and the decision rules, are in `docs/reports.md`.", ""]
    if len(cells):
        counts = cells["status"].value_counts().sort_index()
        L += ["Cells by status: " + ", ".join(f"{k} {v}" for k, v in counts.items())
              + f"; {len(r.loaded.problems)} unreadable or incomplete file(s).", ""]
    if warnings:
        L += ["> **Warning:** " + md_escape(w) for w in warnings] + [""]
    if r.hygiene:
        L += ["Measurement hygiene: " + " ".join(r.hygiene), ""]
    return L


def _headline_section(cells: pd.DataFrame) -> list[str]:
    table, where = T.headline(cells) if len(cells) else (pd.DataFrame(), "no runs")
    return ["## Headline", "", f"Reference size: {md_escape(where)}. "
            "Time per iteration two ways: the median step and the amortised mean over all "
            "steps (refreshes included); time to ε includes setup.", "",
            md_table(table)]


def _claims_section(r: Report) -> list[str]:
    claims = pd.DataFrame([{"claim": c.id, "statement": c.statement,
                            "verdict": f"**{md_escape(c.verdict)}**",
                            "evidence": c.evidence,
                            "rule": c.rule} for c in r.claims])
    return ["## Claims check", "", "Verdicts follow explicit rules on the measured numbers "
            "(column *rule*); *not enough data* also covers data that the rule does not "
            "decide.", "",
            md_table(claims, markup=("verdict",)),
            "What these data can decide: the least data each rule needs, and what the stores "
            "hold (a *no* means *not enough data* whatever the numbers; a *yes* still needs "
            "deciding intervals).", "", md_table(_decidable(r.cells, r.loaded.rows)),
            *_sketch_accuracy_section(r)]


def _decidable(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``tables.decidable``; with no readable cell, nothing is decidable."""
    return T.decidable(cells, rows) if len(cells) else pd.DataFrame()


def _sketch_accuracy_section(r: Report) -> list[str]:
    """Claim C4 per gn_sketch variant: its CG tolerance and the paper's requirement."""
    table = T.sketch_accuracy(r.cells, r.loaded.rows) if len(r.cells) else pd.DataFrame()
    if not len(table):
        return []
    return ["", "gn_sketch variants and the paper's accuracy (claim C4): each variant's CG "
            "tolerance, whether it meets the paper's accuracy requirement as read here "
            "(docs/model.md), its pairs with exact Gauss–Newton, iterations to ε of both, "
            "whether it keeps the theorem's rate, and the trajectory gap (a diagnostic).", "",
            md_table(table)]


def _scaling_section(r: Report, min_time_s: float) -> list[str]:
    return ["## Scaling exponents", "",
            f"Log-log slopes of the amortised time per outer iteration (mean over all steps) "
            f"with studentised-bootstrap 95% intervals, over ≥ {F.MIN_SIZES} sizes whose time "
            f"per iteration is ≥ {min_time_s:g} s (below that, per-call overheads set the "
            f"time). *theory* is the slope of the method's cost model (every term, with the "
            f"measured inner iterations) over the same cells; *term* names the terms that "
            f"lead somewhere in the range. *agrees*: yes when the whole interval lies within "
            f"theory ± {F.TOLERANCE:g}, **no** when it lies wholly outside, – when it "
            f"straddles an edge or is wider than {F.MAX_CI_WIDTH:g} (decides nothing).", "",
            md_table(_theory_table(r.cells)),
            "### In n (fixed m)", "", md_table(_fits_table(r.fits_n), markup=("agrees",)),
            "### In m (fixed n)", "", md_table(_fits_table(r.fits_m), markup=("agrees",))]


def _crossover_sections(cells: pd.DataFrame) -> list[str]:
    L = ["## Crossover gn_sketch / gn_gram", "",
         "Smallest n at which gn_sketch (its best variant at that n) beats gn_gram, per "
         "iteration (amortised: mean over all steps, refreshes included) and to ε; a run "
         "that stopped before ε is beaten only by a time below its lower bound.", "",
         md_table(T.crossover(cells) if len(cells) else pd.DataFrame())]
    ranked = X.rankings(cells, "time_to_target") if len(cells) else pd.DataFrame()
    if len(ranked):
        L += ["## Crossover map in (n, m)", "",
              "Per (n, m) of the grid: the fastest method to ε, the runner-up and its time "
              "over the winner's (≥: the runner-up stopped before ε); *decided* is false "
              "where a run that stopped early might still have won (figure 11).", "",
              md_table(ranked.assign(
                  winner_time=[fmt_time(t) for t in ranked["winner_time"]],
                  margin=[f"{'≥' if b else ''}{v:.2f}" if v == v else "–"
                          for v, b in zip(ranked["margin"], ranked["margin_is_bound"])],
                  unmeasured=[", ".join(u) for u in ranked["unmeasured"]]).drop(
                  columns=["margin_is_bound"]))]
    spread, note = T.es_spread(cells) if len(cells) else (pd.DataFrame(), "")
    if len(spread):
        L += ["## E/S with its seed spread (claim C6)", "",
              "Per (n, m) of the grid: E/S, the best exact-Gram baseline's time to ε over the "
              "fastest gn_sketch variant's, seed by seed: median [min–max] and the seeds "
              "compared (≥: a baseline run stopped before ε); the paper variant's E/S from "
              "its runs at the paper's accuracy only; gn_cg's time to ε where it ran. A sure "
              f"win needs ≥ {C.C6_MIN_SEEDS} seeds, each above 1 (docs/reports.md). " + note,
              "", md_table(spread)]
    return L


def _depth_section(r: Report) -> list[str]:
    """Claims C1, C3, C4 per model depth and time to ε per depth, when the stores hold a
    model other than the two-layer one (``model=mlp``, the ``deep`` preset)."""
    cells = r.cells
    if not len(cells) or "depth" not in cells or \
            set(zip(cells["model"], cells["depth"])) <= {("two_layer", 1)}:
        return []
    return ["## Depth", "", "The same rules, decided on the cells of each model and depth "
            "alone (C1: iterations to ε flat in n; C3: the sketch's inner iterations flat in "
            "n; C4: gn_sketch follows the exact Gauss–Newton trajectory).", "",
            md_table(_own_verdicts(C.claims_by_depth(cells, r.loaded.rows)),
                     markup=("verdict",)),
            "Time to ε (setup included) and, in brackets, outer iterations, per depth; a "
            "`>` is a lower bound (the run stopped first, reason given). The last columns are "
            "the mean inner CG iterations per outer step of the sketch-preconditioned and the "
            "plain CG Gauss–Newton step.", "", md_table(T.depth_table(cells))]


def _own_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """The ``verdict`` column (``**verdict**``, the claims' own emphasis) with its text
    escaped, for ``md_table(..., markup=("verdict",))``."""
    if "verdict" not in table:
        return table
    return table.assign(verdict=[f"**{md_escape(str(v).strip('*'))}**"
                                 for v in table["verdict"]])


def _figures_section(figures: list[Figure]) -> list[str]:
    L = ["## Figures", ""]
    for fig in figures:
        if fig.files:
            png = next(f for f in fig.files if f.endswith(".png"))
            pdf = next((f for f in fig.files if f.endswith(".pdf")), None)
            title = md_escape(fig.title)
            L += [f"### Figure {fig.number}: {title}", "", f"![{title}]({png})", "",
                  md_escape(fig.caption) + (f" ([PDF]({pdf}))" if pdf else ""), ""]
    missing = [f for f in figures if not f.files]
    if missing:
        L += ["Not drawn (no data for them in these stores):", ""]
        L += [f"- Figure {f.number} ({md_escape(f.title or f.name)}): {md_escape(f.missing)}"
              for f in missing]
        L += [""]
    return L


def _environment_section(cells: pd.DataFrame, env: pd.DataFrame,
                         warnings: list[str]) -> list[str]:
    L = ["## Environment", "", md_table(env)]
    if warnings:
        L += ["Warnings:", ""] + [f"- {md_escape(w)}" for w in warnings] + [""]
    routes = T.kernel_routes(cells)
    if len(routes):
        L += ["Kernel routes of the products with the pattern D (chosen by timing each route "
              "on the machine at hand, per shape; `kernels=` in run.json, docs/performance.md):",
              "", md_table(routes)]
    return L


def _cost_model_section(r: Report) -> list[str]:
    """Predicted against measured, and the predicted frontier (harness/costmodel/)."""
    profiles = ([r.profile] if r.profile is not None else []) + list(r.datasheets)
    if not profiles or not len(r.cells):
        return []
    L = ["## Cost model", ""]
    if r.profile is not None:
        vs, summary = P.vs_measured(r.profile, r.cells, r.measured)
        d = r.profile.data
        L += [f"Profile of this machine: {md_escape(P.label(r.profile))}, "
              f"{md_escape(d.get('threads'))} threads, calibrated "
              f"{md_escape(str(d.get('date'))[:19])} at commit "
              f"{md_escape(str(d.get('git_commit'))[:10])}"
              f" (`nlt-bench --calibrate`). "]
        if summary["cells"]:
            L[-1] += (f"Predicted time per iteration within {summary['band']:g}× of the "
                      f"measured one in {summary['within']} of {summary['cells']} cells "
                      f"({100 * summary['fraction_within']:.0f}%); median ratio predicted/"
                      f"measured {summary['median_ratio']:.2f}, worst "
                      f"{summary['worst_ratio']:.2g} ({md_escape(summary['worst_cell'])}); "
                      "figure 12.")
        if len(vs) and vs["profile"].nunique() > 1:
            counts = vs["profile"].value_counts()
            L[-1] += (" Cells of several machines, each priced by its own profile: "
                      + ", ".join(f"{md_escape(k)} ({v} cells)" for k, v in counts.items())
                      + ".")
        L += [""]
        acc = P.accuracy_table(vs)
        if len(acc):  # held out: the cells of harness/conf/sweep/heldout.yaml
            L += ["Accuracy in sample and held out, with the predicted inner iterations k and "
                  "refresh share f and, beside it, with each cell's measured k and f fed in:",
                  "", md_table(acc), ""]
    else:
        L += ["No measured profile of this machine (`nlt-bench --calibrate` writes one to "
              "reports/profiles/): the predictions below are datasheet ones only.", ""]
    L += ["Predicted frontier: the smallest m (a power of two up to 2^24, within the "
          "profile's memory) where gn_sketch beats gn_gram per iteration and to ε (figure 13):",
          "", md_table(P.frontier_table(profiles, r.cells))]
    return L


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit code 2, like every harness command
        fail(PROG, message)


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog=PROG, description="Merge results stores into figures, fits, a claims "
                     "check and REPORT.md (docs/reports.md).")
    parser.add_argument("stores", nargs="*", default=["results"],
                        help="results stores to read (default: results/)")
    parser.add_argument("--out", default="reports/latest", help="output directory")
    parser.add_argument("--target", type=float, default=TARGET_REL_LOSS,
                        help="target relative loss ε (default 1e-6)")
    parser.add_argument("--min-time-s", type=float, default=F.DEFAULT_MIN_TIME_S,
                        help="fit slopes only on times per iteration above this (seconds)")
    parser.add_argument("--profile", action="append", metavar="PATH",
                        help="cost-model profile(s) (nlt-bench --calibrate); default: the "
                             "machine's and the datasheet ones in reports/profiles/")
    parser.add_argument("--html", action="store_true",
                        help="also write report.html: one self-contained page with sortable "
                             "tables and interactive plots (docs/reports.md)")
    parser.add_argument("--include-disturbed", action="store_true",
                        help="also use cells measured on a disturbed machine (left out by "
                             "default; harness/execution/hygiene.py)")
    args = parser.parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else argv
    command = " ".join([PROG, *(shlex.quote(a) for a in argv_used)])

    def go():
        rep = build(args.stores or ["results"], args.out, args.target, args.min_time_s,
                    command, args.profile, args.include_disturbed, args.html)
        drawn = sum(1 for f in rep.figures if f.files)
        verdicts = ", ".join(f"{c.id} {c.verdict}" for c in rep.claims)
        print(f"{PROG}: {len(rep.cells)} cells, {len(rep.loaded.problems)} problem(s), "
              f"{drawn} figure(s) -> {Path(args.out) / 'REPORT.md'}")
        for line in rep.hygiene:  # disturbed cells left out: say so here too
            print(f"{PROG}: {md_plain(line)}")
        print(f"claims: {verdicts}")
        if args.html:
            print(f"{PROG}: -> {Path(args.out) / 'report.html'}")
        table = _decidable(rep.cells, rep.loaded.rows)
        can = list(table.loc[table["can decide"] == "yes", "claim"]) if len(table) else []
        print(f"these data can decide: {', '.join(can) or 'none of the claims'}; the others "
              "lack the sizes or diagnostics their rules need (REPORT.md, Claims check)")

    guarded(PROG, go)


if __name__ == "__main__":
    main()
