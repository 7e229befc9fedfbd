"""Claim C6 of the spec (§5): its rule and what it needs.

The cost terms (docs/reports.md, "How the constants follow from the cost models") make E/S,
the exact Gram step's time to ε over the sketched step's, grow about like n at fixed m/n and
rise in m at fixed n only until m ≈ n²/(k·d), where it levels off near n/(2(k+1)d). So the
growth is fitted along n, with one intercept per value of m/n, and m is shown, not tested.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from harness.execution.results import DONE_STATUSES as DONE
from harness.reporting import crossover
from harness.reporting.claims.common import (
    C6_MIN_CELLS,
    C6_MIN_GROWTH_CELLS,
    C6_MIN_NS,
    C6_MIN_SEEDS,
    SLICE_KEYS,
    WIDTH_MIN_RATIO,
    finished,
    within_width,
)
from harness.reporting.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, claim

#: the unpreconditioned CG method, named in the evidence where it beats both
CG_METHOD = "gn_cg"


def within_groups_slope(comp: pd.DataFrame, along: str, group: str, min_cells: int,
                        min_sizes: int) -> tuple[float, float, float, int] | None:
    """OLS slope of log(E/S) against log(``along``) with one intercept per value of
    ``group``, over the cells with exact ratios in groups holding ≥ 2 values of ``along``,
    with its 95% t-interval: (slope, low, high, cells); None with fewer than ``min_cells``
    such cells, fewer than ``min_sizes`` values of ``along``, or no degree of freedom."""
    exact = comp[comp["kind"] == "exact"].copy()
    if not len(exact):
        return None
    exact["_g"] = exact[group].round(6)
    sizes = exact.groupby("_g")[along].transform("nunique")
    use = exact[sizes >= 2]
    groups = use["_g"].nunique()
    if len(use) < min_cells or use[along].nunique() < min_sizes or len(use) - groups - 1 < 1:
        return None
    x = np.log(use[along].to_numpy(float))
    y = np.log(use["ratio"].to_numpy(float))
    dummies = pd.get_dummies(use["_g"]).to_numpy(float)
    A = np.column_stack([x, dummies])
    beta, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ beta
    dof = len(y) - A.shape[1]
    cov = np.linalg.pinv(A.T @ A) * float(resid @ resid) / dof
    half = stats.t.ppf(0.975, dof) * np.sqrt(max(cov[0, 0], 0.0))
    return float(beta[0]), float(beta[0] - half), float(beta[0] + half), len(use)


def seed_ratios(cells: pd.DataFrame, comp: pd.DataFrame) -> pd.DataFrame:
    """Per compared cell: E/S seed by seed, between the cell's best exact baseline and its
    best sketch variant (the ones ``comp`` names), over the seeds where the sketch reached ε
    and the baseline reached it or stopped (a lower bound): columns n, m, seeds, low (the
    smallest ratio over the seeds), high (``crossover.seed_ratios``)."""
    grid = crossover.grid_slice(cells)
    out = []
    if not len(grid) or not len(comp):
        return pd.DataFrame(out, columns=["n", "m", "seeds", "low", "high"])
    for r in comp.itertuples(index=False):
        ratios, _ = crossover.seed_ratios(grid, r.n, r.m, r.sketch, r.baseline)
        out.append({"n": r.n, "m": r.m, "seeds": len(ratios),
                    "low": float(ratios.min()) if len(ratios) else np.nan,
                    "high": float(ratios.max()) if len(ratios) else np.nan})
    return pd.DataFrame(out, columns=["n", "m", "seeds", "low", "high"])


#: the command that runs the crossover grid's cells (harness/conf/sweep/crossover_grid.yaml)
RUN_COMMAND = "nlt-run -m +sweep=crossover_grid"
#: what a rerun must repeat from the cells it adds seeds to, so the new seeds are the same runs
#: (memory_budget_gb: the largest any of them was given, so a run that needed a raised budget
#: gets it again; null, the default, is a safe fraction of free memory)
_RERUN_KEYS = (("time_budget_s", "time_budget_s"), ("max_iters", "max_iters"),
               ("target_rel_loss", "target_rel_loss"), ("memory_budget_gb", "memory_budget_gb"))


def missing_seed_cells(cells: pd.DataFrame, wins: pd.DataFrame) -> list[dict]:
    """The runs a sure win still needs: per won cell with fewer than C6_MIN_SEEDS seeds
    compared, its exact baseline and sketch variant (and gn_sketch_paper where it ran there)
    on the seeds 0..C6_MIN_SEEDS−1 that are not compared yet. Each: {n, m, methods,
    optional (the paper variant: in ``methods``, not needed for the win), seeds, runs (the
    finished cells of that (n, m), whose settings a rerun repeats)}. A
    cell where a compared seed is already at or below 1 is left out: more seeds cannot make
    it a sure win."""
    grid = crossover.grid_slice(cells)
    out = []
    if not len(grid) or not len(wins):
        return out
    names = crossover.method_names(grid)
    for r in wins.sort_values(["n", "m"]).itertuples(index=False):
        ratios, _ = crossover.seed_ratios(grid, r.n, r.m, r.sketch, r.baseline)
        if len(ratios) >= C6_MIN_SEEDS or (len(ratios) and ratios.min() <= 1):
            continue
        here = (grid["n"] == r.n) & (grid["m"] == r.m)
        methods, optional = [r.baseline, r.sketch], []
        if crossover.PAPER_VARIANT not in methods and (here & (names == crossover.PAPER_VARIANT)
                                                       & grid["status"].isin(DONE)).any():
            optional.append(crossover.PAPER_VARIANT)
        seeds = sorted(set(range(C6_MIN_SEEDS)) - {int(s) for s in ratios.index})
        out.append({"n": int(r.n), "m": int(r.m), "methods": methods + optional,
                    "optional": optional, "seeds": seeds,
                    "runs": grid[here & grid["status"].isin(DONE)]})
    return out


def _csv(values) -> str:
    return ",".join(str(v) for v in values)


def nlt_run(ns, ms, methods, seeds, runs: pd.DataFrame) -> str:
    """One ``nlt-run`` over methods × n × m × seed with the data, d, dtype, store, time
    budget, max_iters and ε of ``runs`` (cells of the grid)."""
    ctx = runs.iloc[0]
    parts = [RUN_COMMAND, f"data={ctx['dataset']}", f"algorithm={_csv(methods)}",
             f"data.n={_csv(ns)}", f"model.m={_csv(ms)}", f"data.d={int(ctx['d'])}",
             f"dtype={ctx['dtype']}", f"seed={_csv(seeds)}"]
    if "store" in runs and runs["store"].notna().any():
        parts.append(f"store={runs['store'].dropna().iloc[0]}")
    for col, key in _RERUN_KEYS:
        if col in runs and runs[col].notna().any():
            parts.append(f"{key}={runs[col].max():g}")
    return " ".join(parts)


def _fits(runs: pd.DataFrame, n: int, m: int, limit: float | None) -> bool:
    """Whether every method of ``runs`` (one run each is enough) plans to fit ``limit`` bytes
    at (n, m), by its own memory plan (``costmodel.fits_memory``) with its run's parameters."""
    import json

    from harness.costmodel import fits_memory

    for r in runs.drop_duplicates("_method").itertuples(index=False):
        try:
            params = json.loads(r.hyperparameters) if isinstance(r.hyperparameters, str) else {}
            size = 8 if str(r.dtype) == "float64" else 4
            if not fits_memory(r.algorithm, params, n, m, int(r.d), limit, itemsize=size):
                return False
        except Exception:  # a method or parameter the cost model does not know: unplanned
            return False
    return True


def growth_cells(cells: pd.DataFrame, comp: pd.DataFrame) -> list[dict]:
    """Cells that give the growth fit along n a second size in an m/n group that has an
    exact ratio at one size only: per such group, the cell at half the size (n/2, m/2), else
    at twice it, that is not measured yet and whose baseline and sketch variant plan to fit
    the largest memory budget the grid's runs recorded (their own memory plans). Each:
    {n, m, methods, runs (the source cell's runs, whose settings a run repeats)}."""
    grid = crossover.grid_slice(cells)
    exact = comp[comp["kind"] == "exact"] if len(comp) else comp
    if not len(grid) or not len(exact):
        return []
    grid = grid.assign(_method=crossover.method_names(grid).values)
    limit = float(grid["memory_budget_bytes"].max()) if "memory_budget_bytes" in grid and \
        grid["memory_budget_bytes"].notna().any() else None
    measured = {(int(n), int(m)) for n, m in zip(comp["n"], comp["m"])}
    out = []
    groups = exact.assign(_g=exact["m_over_n"].round(6)).groupby("_g")
    for _, g in groups:
        if g["n"].nunique() >= 2:
            continue
        r = g.iloc[0]
        n, m = int(r["n"]), int(r["m"])
        runs = grid[(grid["n"] == n) & (grid["m"] == m)
                    & grid["_method"].isin([r["baseline"], r["sketch"]])]
        for cand in ((n // 2, m // 2), (2 * n, 2 * m)):
            if cand in measured or cand[0] < 2 * int(runs["d"].max()):
                continue
            if _fits(runs, *cand, limit):
                out.append({"n": cand[0], "m": cand[1],
                            "methods": [r["baseline"], r["sketch"]], "runs": runs})
                break
    return out


def _growth_text(cells: pd.DataFrame, comp: pd.DataFrame) -> str:
    """The cells a growth fit still lacks, named, with one command for them."""
    new = growth_cells(cells, comp)
    if not new:
        return ""
    named = ", ".join(f"(n={c['n']}, m={c['m']})" for c in new)
    command = " && ".join(nlt_run([c["n"]], [c["m"]], c["methods"], [0], c["runs"])
                          for c in new)
    return (f"cells that give an m/n group measured at one size n a second size: {named} "
            f"(each method's memory plan fits the largest budget the grid recorded); run "
            f"them with: `{command}`")


def rerun_command(missing: list[dict], cells: pd.DataFrame) -> tuple[str, int]:
    """One command line that runs ``missing`` (``missing_seed_cells``) into the store its
    cells came from, with their settings, and how many runs it adds beyond the missing
    ones. Every (n, m, method) in it finished before on this machine (a skipped cell is not
    finished), so it fits the memory budget there. One ``nlt-run`` over the product method ×
    n × m × seed when each of its (n, m, method) finished before (a rerun keeps finished
    cells, so only its unfinished seeds run); else such a product per set of methods (or
    per cell), joined by ``&&``."""
    if not missing:
        return "", 0

    one = nlt_run

    grid = crossover.grid_slice(cells)
    grid = grid[grid["status"].isin(DONE)]
    names = crossover.method_names(grid)
    done = {(int(n), int(m), x, int(sd)) for n, m, x, sd in
            zip(grid["n"], grid["m"], names, grid["seed"])}
    ran = {t[:3] for t in done}

    def product(part: list[dict]) -> tuple[str, int] | None:
        """One nlt-run over ``part``'s product, or None where it has a cell never finished."""
        ns = sorted({c["n"] for c in part})
        ms = sorted({c["m"] for c in part})
        seeds = sorted({x for c in part for x in c["seeds"]})

        def everywhere(x: str) -> bool:  # finished at every (n, m) of the product before
            return all((n, m, x) in ran for n in ns for m in ms)
        needed = {x for c in part for x in c["methods"] if x not in c["optional"]}
        methods = sorted(needed | {x for c in part for x in c["optional"] if everywhere(x)},
                         key=lambda x: (x not in crossover.EXACT_BASELINES, x))
        runs = pd.concat([c["runs"] for c in part])
        if not all(everywhere(x) for x in methods) or len(
                {(str(r.dataset), int(r.d), str(r.dtype)) for r in runs.itertuples()}) > 1:
            return None
        wanted = {(c["n"], c["m"], x, sd) for c in part for x in c["methods"]
                  for sd in c["seeds"]}
        new = {(n, m, x, sd) for n in ns for m in ms for x in methods for sd in seeds} - done
        return one(ns, ms, methods, seeds, runs), len(new - wanted)

    whole = product(missing)
    if whole:
        return whole
    # else: one product per set of methods, or per cell
    by_methods: dict[tuple, list[dict]] = {}
    for c in missing:
        by_methods.setdefault(tuple(c["methods"]), []).append(c)
    parts = []
    for group in by_methods.values():
        got = product(group)
        parts += [got] if got else [product([c]) or (one([c["n"]], [c["m"]], c["methods"],
                                                         c["seeds"], c["runs"]), 0)
                                    for c in group]
    return " && ".join(p[0] for p in parts), sum(p[1] for p in parts)


def _cg_faster(cells: pd.DataFrame) -> list[str]:
    """The cells where gn_cg reached ε before both the best sketch and the best exact
    baseline (medians over seeds)."""
    grid = crossover.grid_slice(cells)
    out = []
    if not len(grid):
        return out
    for (n, m), entries in crossover.cell_entries(grid).items():
        exact = {e.method: e.value for e in entries if e.kind == "exact"}
        cg = exact.get(CG_METHOD)
        rivals = [v for k, v in exact.items() if k.startswith(crossover.SKETCH_METHOD)
                  or k in crossover.EXACT_BASELINES]
        if cg is not None and rivals and cg < min(rivals):
            out.append(f"(n={n}, m={m}): {min(rivals) / cg:.2g}× before the next")
    return out


def _cell_text(r) -> str:
    sign = {"exact": "", "lower bound": "≥", "upper bound": "≤", "undecided": "?"}[r.kind]
    return f"(n={int(r.n)}, m={int(r.m)}): {sign}{r.ratio:.2g}"


def _needs_c6(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = within_width(finished(cells))
    grid, ns, seeds = 0, 0, 0
    if len(done):
        keys = SLICE_KEYS + ["n", "m"]
        sk = done[done["algorithm"] == crossover.SKETCH_METHOD]
        ex = done[done["algorithm"].isin(crossover.EXACT_BASELINES)]
        both = sk[keys].drop_duplicates().merge(ex[keys].drop_duplicates())
        if len(both):
            per_slice = both.groupby(SLICE_KEYS)
            grid = int(per_slice.size().max())
            ns = int(per_slice["n"].nunique().max())
            seeds = int(sk.merge(both)[[*keys, "seed"]].drop_duplicates()
                        .groupby(keys).size().max())
    return (f"{C6_MIN_CELLS} (n, m) cells with gn_sketch and an exact-Gram baseline at "
            f"{C6_MIN_NS} sizes n, {C6_MIN_SEEDS} seeds where the sketch wins",
            f"{grid} cells, {ns} sizes n, at most {seeds} seeds a cell",
            grid >= C6_MIN_CELLS and ns >= C6_MIN_NS and seeds >= C6_MIN_SEEDS)


@claim("C6", statement="wall-clock time to ε: the sketched step beats the exact Gram step where "
                       "m ≫ n ≫ d, by a margin that grows with n at fixed m/n (and levels off "
                       "in m at fixed n)",
       rule="Only cells inside the width condition m ≥ {WIDTH_MIN_RATIO:g}·n are compared "
            "(the claim's m ≫ n; cells outside are named). On the (n, m) grid of the "
            "crossover sweep (the slice with most cells): per cell, "
            "E/S = the best exact-Gram baseline ({EXACT_BASELINES}) over the best gn_sketch "
            "variant, in time to ε (median over seeds). A run that stopped before ε gives a "
            "lower bound, so E/S is a number, a lower bound (E stopped), an upper bound (S "
            "stopped) or open (both); only a bound on the right side of 1 decides a cell. The "
            "rule needs ≥{C6_MIN_CELLS} cells. Growth: the OLS slope of log(E/S) against "
            "log n with one intercept per value of m/n, over ≥{C6_MIN_GROWTH_CELLS} cells "
            "with exact ratios in m/n groups of ≥ 2 sizes, ≥{C6_MIN_NS} sizes n, with its "
            "95% t-interval (the slope in m at fixed n is shown: a plateau is the theory). A "
            "sure win: ≥{C6_MIN_SEEDS} seeds whose E/S, seed by seed, are all above 1. "
            "Supported if the sketch surely wins some cell and the growth interval lies "
            "above 0; contradicted if the growth interval lies below 0 (the margin falls "
            "with n), or if it surely loses every cell and the calibrated cost model "
            "predicts no win within the memory budget; otherwise not enough data. gn_cg is "
            "named where it beats both.",
       constants={"EXACT_BASELINES": crossover.EXACT_BASELINES, "C6_MIN_CELLS": C6_MIN_CELLS,
                  "C6_MIN_GROWTH_CELLS": C6_MIN_GROWTH_CELLS, "C6_MIN_NS": C6_MIN_NS,
                  "C6_MIN_SEEDS": C6_MIN_SEEDS, "WIDTH_MIN_RATIO": WIDTH_MIN_RATIO},
       needs=_needs_c6)
def check_c6(cells: pd.DataFrame, prediction: dict | None = None) -> tuple[str, str]:
    """C6 on the (n, m) grid (harness/reporting/crossover.py). ``prediction``: what the
    calibrated cost model says beyond the measured cells, ``{"predicted_win": bool,
    "text": str}`` (None: no profile, so a loss everywhere measured decides nothing). Only
    cells inside the width condition (``within_width``) are compared."""
    outside: list[str] = []
    cells = within_width(cells, outside)
    comp = crossover.sketch_vs_exact(cells, "time_to_target") if len(cells) else pd.DataFrame()
    if not len(comp):
        return UNDECIDED, "; ".join(
            ["no (n, m) grid with both a gn_sketch variant and an exact-Gram baseline "
             f"({', '.join(crossover.EXACT_BASELINES)})", *outside])
    wins = comp[comp["wins"] == True]  # noqa: E712 (None is undecided)
    losses = comp[comp["wins"] == False]  # noqa: E712
    open_ = comp[comp["wins"].isna()]
    ev = [f"E/S (exact-Gram baseline over best gn_sketch variant, > 1: the sketch wins) at "
          f"{len(comp)} cells; wins: " + (", ".join(_cell_text(r) for r in
                                                 wins.itertuples()) or "none"), *outside]
    if len(losses):
        worst = losses.sort_values("ratio").head(3)
        ev.append(f"losses at {len(losses)} cells (lowest: "
                  + ", ".join(_cell_text(r) for r in worst.itertuples()) + ")")
    if len(open_):
        ev.append(f"{len(open_)} cells left open by runs that stopped before ε")
    sure, thin = _sure_wins(cells, wins, ev)
    growth = within_groups_slope(comp, "n", "m_over_n", C6_MIN_GROWTH_CELLS, C6_MIN_NS)
    in_m = within_groups_slope(comp, "m", "n", 3, 2)
    if growth:
        ev.append(f"slope of log(E/S) vs log n at fixed m/n: {growth[0]:.2f} [{growth[1]:.2f}, "
                  f"{growth[2]:.2f}] over {growth[3]} cells")
    else:
        ev.append(f"no growth fit along n (needs {C6_MIN_GROWTH_CELLS} exact ratios in m/n "
                  f"groups of ≥ 2 sizes, {C6_MIN_NS} sizes n)")
        more = _growth_text(cells, comp)
        if more:
            ev.append(more)
    if in_m:
        ev.append(f"slope vs log m at fixed n (shown, not tested): {in_m[0]:.2f} "
                  f"[{in_m[1]:.2f}, {in_m[2]:.2f}]")
    cg = _cg_faster(cells)
    if cg:
        ev.append(f"{CG_METHOD} reaches ε first at " + ", ".join(cg))
    if prediction:
        ev.append(f"cost model: {prediction.get('text', '')}")
    if len(comp) < C6_MIN_CELLS:
        ev.append(f"{len(comp)} cells compared: the rule needs {C6_MIN_CELLS}")
        return UNDECIDED, "; ".join(ev)
    if growth and growth[2] < 0:
        ev.append("the margin falls with n at fixed m/n")
        return CONTRADICTED, "; ".join(ev)
    if sure and growth and growth[1] > 0:
        return SUPPORTED, "; ".join(ev)
    if len(losses) == len(comp):
        return _c6_all_lost(prediction, ev), "; ".join(ev)
    if len(wins) and not sure:
        ev.append(f"no sure win: the wins have fewer than {C6_MIN_SEEDS} seeds or a seed at "
                  f"or below 1 ({', '.join(thin)})")
        ev.append(_missing_text(cells, wins))
    if sure and not (growth and growth[1] > 0):
        ev.append("the sketch surely wins somewhere, but the growth of its margin with n is "
                  "not established")
    return UNDECIDED, "; ".join(ev)


def _sure_wins(cells: pd.DataFrame, wins: pd.DataFrame, ev: list[str]
               ) -> tuple[list[str], list[str]]:
    """(the won cells whose every seed is a win on ≥ C6_MIN_SEEDS seeds, the won cells
    that are not), written to ``ev``."""
    per_seed = seed_ratios(cells, wins)
    sure, thin = [], []
    for r in per_seed.itertuples(index=False):
        text = f"(n={int(r.n)}, m={int(r.m)}): {r.seeds} seed(s)" + (
            f", lowest {r.low:.2g}" if r.seeds else "")
        (sure if r.seeds >= C6_MIN_SEEDS and r.low > 1 else thin).append(text)
    if sure:
        ev.append("sure wins (every seed above 1): " + ", ".join(sure))
    return sure, thin


def _c6_all_lost(prediction: dict | None, ev: list[str]) -> str:
    """The verdict when the sketch surely lost every cell: contradicted only when the cost
    model predicts no win beyond the measured cells either."""
    if prediction is not None and prediction.get("predicted_win") is False:
        return CONTRADICTED
    ev.append("slower in every cell measured; without a cost-model prediction of no win "
              "within the memory budget this is no verdict" if prediction is None
              else "slower in every cell measured, but the cost model predicts a win beyond "
              "them")
    return UNDECIDED


def _missing_text(cells: pd.DataFrame, wins: pd.DataFrame) -> str:
    """The missing runs of the won cells, named, and one command that runs them."""
    missing = missing_seed_cells(cells, wins)
    if not missing:
        return ("more seeds cannot make these wins sure (a compared seed is at or below 1): "
                "the margin there is within the seed spread")
    named = "; ".join(f"(n={c['n']}, m={c['m']}) {', '.join(c['methods'])} on seed(s) "
                      f"{', '.join(str(s) for s in c['seeds'])}"
                      + (f" ({', '.join(c['optional'])} for its own E/S only)"
                         if c["optional"] else "") for c in missing)
    command, extra = rerun_command(missing, cells)
    more = f" (it also runs {extra} runs of the grid beyond these)" if extra else ""
    algs = {x for part in command.split(" && ") for w in part.split()
            if w.startswith("algorithm=") for x in w.split("=", 1)[1].split(",")}
    left = sorted({x for c in missing for x in c["optional"]} - algs)
    if left:
        more += (f"; {', '.join(left)} is left out of it (it did not finish at every cell of "
                 "the product); add it where it ran for its own column")
    return (f"missing for a sure win: {named}; each ran before on this machine within its "
            f"memory budget; run them with: `{command}`{more}")
