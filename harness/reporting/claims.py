"""The claims check: C1–C6 of the spec (§5), each decided by an explicit rule on the measured
data, with the numbers that decided it.

Verdicts: ``supported``, ``contradicted``, ``not enough data`` (the data needed are missing, or
present but not decisive under the rule; the evidence says which). The rules are written in
``RULES`` (shown in the report) and implemented one function per claim. Thresholds are module
constants, so a reader can see and change them in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from algorithms.base import ALGORITHMS
from harness.reporting import crossover, fits
from harness.reporting.figures import lambda_ratio, neuron_movement, ntk_columns
from harness.results import DONE_STATUSES as DONE

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not enough data"

# Censoring, for every claim: a run that did not reach ε gives a lower bound on its iterations
# and time to ε (metrics: ``iters_lower_bound``, ``time_lower_bound_s``), never a value and
# never a ratio of 0; a step whose inner solve stopped at ``max_inner`` gives the cap, not a
# count; a claim is *supported* only with the minimum evidence its rule names.

#: C1, C3: a count is flat in n when the 95% interval of its log-log slope in n lies below
#: FLAT_MAX (at most 2.4× over the five octaves 64–2048), and grows when the interval lies
#: above it. The theory says flat (O(log 1/ε) iterations; O(log 1/tol) inner iterations);
#: unpreconditioned CG grows like √κ ~ n^0.5.
FLAT_MAX = 0.25
#: C1: GD's iterations to ε grow when they rise by this factor from the smallest to the
#: largest n measured; the smallest n must have reached ε, the largest may be a lower bound.
GD_GROWTH = 1.5
#: C1: a GN run stopped by max_iters contradicts when its lower bound is this many times the
#: iterations the variant's converged runs needed at most.
CAP_FACTOR = 2.0
#: C2: the methods whose exponents the claim names, and the terms each must be seen leading
#: in its fits in n (gn_sketch: the CG products and the cubic factorisation both).
C2_METHODS = ("gd", "gn_exact", "gn_gram", "gn_sketch")
C2_LEADING_IN_N = {"gd": ("nmd",), "gn_exact": ("n²md",), "gn_gram": ("n²m",),
                   "gn_sketch": ("k·nmd", "n³ (factor)")}
#: C4: gap between two loss curves in decades, |log10(L_sketch/L_exact)|, while both are
#: above ε; at least C4_MIN_PAIRS pairs whose exact partner reached ε are needed.
C4_AGREE, C4_DISAGREE = 0.5, 1.0
C4_MIN_PAIRS = 3
#: C5: λ_min(G_t)/λ must stay at or above this (the theorems' λ/2); slopes against −½.
LAMBDA_FRACTION = 0.5
NTK_SLOPE = -0.5
#: C6: common sizes n (both methods with a value or a lower bound) a slice needs to decide.
#: C6: (n, m) cells compared, and cells with exact ratios for the growth fit.
C6_MIN_CELLS, C6_MIN_GROWTH_CELLS = 6, 5

_FIT = (f"≥{fits.MIN_SIZES} sizes; a fit decides only when its 95% interval is at most "
        f"{fits.MAX_CI_WIDTH:g} wide")

RULES = {
    "C1": (f"Per full-batch Gauss–Newton-type variant (batch_size < n excluded) and slice "
           f"(same m, data, device): log-log slope of iterations to ε vs n over the runs that "
           f"reached ε ({_FIT}). Runs stopped by max_iters give lower bounds; diverged runs "
           f"give nothing. Contradicted if a GN slope interval lies above {FLAT_MAX}, or a GN "
           f"run's max_iters lower bound is over {CAP_FACTOR:g}× what its converged runs "
           f"needed, or gd (converged at both ends) needs no more iterations at the largest n "
           f"than at the smallest. Supported if ≥1 GN slope was fitted, every GN slope "
           f"interval lies below {FLAT_MAX}, and gd's iterations grow ≥{GD_GROWTH}× from the "
           f"smallest n (reached ε) to the largest (a lower bound counts)."),
    "C2": (f"Fit time per iteration (amortised: mean over all steps, refreshes included) vs n "
           f"and vs m ({_FIT}), against the slope θ of the method's cost model over the same "
           f"cells (every term, with the measured inner iterations k and refresh share f). A "
           f"fit agrees when its interval lies within θ ± {fits.TOLERANCE:g}, disagrees when it "
           f"lies wholly outside. A method agrees in n (m) when it has ≥1 deciding fit and all "
           f"its deciding fits agree. Contradicted if any deciding fit of "
           f"{', '.join(C2_METHODS)} disagrees; supported if each of them agrees in n and in "
           f"m, with these terms leading somewhere in their fits in n: "
           + "; ".join(f"{a}: {', '.join(t)}" for a, t in C2_LEADING_IN_N.items()) + "."),
    "C3": (f"Per gn_sketch variant and slice: runs with any step whose CG stopped at max_inner "
           f"are stuck (evidence of the cap only) and left out; log-log slope of mean inner "
           f"iterations vs n over the rest ({_FIT}). Supported if some variant has ≥1 fitted "
           f"slice, no stuck run, and every slope interval below {FLAT_MAX}; contradicted if "
           f"every fitted variant has a slice whose interval lies above {FLAT_MAX}. gn_cg's "
           f"slope is shown for contrast."),
    "C4": (f"Pair each gn_sketch run with the gn_gram (else gn_exact) run of the same problem "
           f"and seed that reached ε (diverged or capped partners give no pair); per pair the "
           f"largest gap |log10(L_sketch/L_exact)| over the iterations where both relative "
           f"losses are above ε (a gn_sketch run that diverged: infinite). With "
           f"≥{C4_MIN_PAIRS} pairs: supported if the median gap is ≤ {C4_AGREE} decades and "
           f"every gn_sketch run of the pairs reached ε; contradicted if the median is > "
           f"{C4_DISAGREE}."),
    "C5": (f"(a) log-log slope of ‖G₀ − H∞‖ vs m and (c) of the final per-neuron movement "
           f"‖W_t − W₀‖_F/√m vs m ({_FIT}) agree when the interval lies within "
           f"{NTK_SLOPE} ± {fits.TOLERANCE:g}, fail when it lies wholly outside; (b) λ_min(G_t)/λ "
           f"≥ {LAMBDA_FRACTION} along training at the largest width. Contradicted if a part "
           f"fails; supported if (a) agrees and every other measured part holds."),
    "C6": (f"On the (n, m) grid of the crossover sweep (the slice with most cells): per cell, "
           f"E/S = the best exact-Gram baseline ({', '.join(crossover.EXACT_BASELINES)}) over "
           f"the best "
           f"gn_sketch variant, in time to ε (median over seeds). A run that stopped before ε "
           f"gives a lower bound, so E/S is a number, a lower bound (E stopped), an upper bound "
           f"(S stopped) or open (both); only a bound on the right side of 1 decides a cell. "
           f"The rule needs ≥{C6_MIN_CELLS} cells. Supported if gn_sketch surely wins some "
           f"cell and its margin grows with m/n: the 95% interval of the slope of log(E/S) "
           f"against log(m/n), over ≥{C6_MIN_GROWTH_CELLS} cells with exact ratios and ≥3 "
           f"values of m/n, lies above 0. Contradicted if it surely loses every cell and the "
           f"calibrated cost model predicts no win within the memory budget; otherwise not "
           f"enough data."),
}

STATEMENTS = {
    "C1": "GN-type methods reach ε in O(log 1/ε) iterations independent of n; GD needs "
          "iterations growing with n/λ",
    "C2": "time per iteration: gn_exact ~ n²md, gn_gram ~ n²(m+d), gn_sketch ~ nmd + n³, "
          "gd ~ nmd",
    "C3": "sketch preconditioning makes the inner iteration count independent of n",
    "C4": "gn_sketch follows the exact Gauss–Newton trajectory",
    "C5": "NTK regime: G₀ → H∞ like 1/√m, λ_min(G_t) ≥ λ/2, weights move O(1/√m)",
    "C6": "wall-clock time to ε: the sketched step beats the exact Gram step where m ≫ n ≫ d, "
          "by a margin that grows with m/n",
}


@dataclass
class Claim:
    id: str
    statement: str
    evidence: str
    verdict: str
    rule: str


def _family(algorithm: str) -> str:
    """The method's ``family``; a method not registered here counts as first order."""
    return ALGORITHMS.get(algorithm).family if algorithm in ALGORITHMS else "first_order"


def _slices(frame: pd.DataFrame, other: str):
    keys = ["device", "dataset", "data_params", "d", "dtype", other]
    return frame.groupby(keys, dropna=False)


def _fmt_fit(f: fits.SlopeFit) -> str:
    return f"{f.slope:.2f} [{f.lo:.2f}, {f.hi:.2f}]"


def _decides(f: fits.SlopeFit) -> bool:
    return f.hi - f.lo <= fits.MAX_CI_WIDTH


def _full_batch(row) -> bool:
    """False for a mini-batch run (``batch_size`` < n): a stochastic method, whatever its
    family, is not a full-batch Gauss–Newton step and does not speak to C1."""
    try:
        params = json.loads(row["hyperparameters"]) if isinstance(row["hyperparameters"], str) \
            else {}
    except ValueError:
        params = {}
    batch = params.get("batch_size")
    return batch is None or batch >= row["n"]


def check_c1(cells: pd.DataFrame) -> Claim:
    ev, contra, flat = [], False, []
    done = cells[cells["status"].isin(DONE)]
    gn = done[[(_family(a) == "gauss_newton") and _full_batch(row)
               for a, (_, row) in zip(done["algorithm"], done.iterrows())]]
    for variant, g in gn.groupby("variant"):
        conv = g[g["iters_to_target"].notna()]
        for key, s in _slices(conv, "m"):
            if s["n"].nunique() < fits.MIN_SIZES:
                if s["n"].nunique() > 1:  # single-size slices (m sweeps) are not news
                    ev.append(f"{variant} (m={int(key[-1])}): reached ε at only "
                              f"{s['n'].nunique()} sizes n")
                continue
            fit = fits.fit_loglog(s["n"], s["iters_to_target"], n_boot=1000)
            text = (f"{variant} (m={int(key[-1])}): iterations {int(s['iters_to_target'].min())}"
                    f"–{int(s['iters_to_target'].max())} over n={int(s['n'].min())}–"
                    f"{int(s['n'].max())}, slope {_fmt_fit(fit)}")
            if not _decides(fit):
                ev.append(text + " (too wide to decide)")
                continue
            if fit.lo > FLAT_MAX:
                contra = True
            flat.append(fit.hi < FLAT_MAX)
            ev.append(text)
        capped = g[(g["censor"] == "max_iters") & g["iters_lower_bound"].notna()]
        if len(capped) and len(conv) and \
                capped["iters_lower_bound"].max() > CAP_FACTOR * conv["iters_to_target"].max():
            contra = True
            top = int(capped["iters_lower_bound"].max())
            at = sorted(int(x) for x in capped["n"])
            ev.append(f"{variant}: stopped by max_iters at ≥{top} iterations (n={at}) while its "
                      f"converged runs needed ≤{int(conv['iters_to_target'].max())}")
    gd_grows = None
    for key, s in _slices(done[done["algorithm"] == "gd"], "m"):
        if s["n"].nunique() < 2:
            continue
        k = s["iters_to_target"].fillna(s["iters_lower_bound"])  # NaN: diverged, no bound
        exact = s["iters_to_target"].notna()
        lo_n, hi_n = s["n"].min(), s["n"].max()
        at_lo, at_hi = s["n"] == lo_n, s["n"] == hi_n
        k_lo, k_hi = k[at_lo].median(), k[at_hi].median()
        where = f"gd (m={int(key[-1])})"
        if k_lo != k_lo or k_hi != k_hi or not exact[at_lo].all():
            ev.append(f"{where}: smallest n={int(lo_n)} did not reach ε or largest "
                      f"n={int(hi_n)} has no bound: does not decide")
            continue
        bound = "" if exact[at_hi].all() else "≥"
        ev.append(f"{where}: {k_lo:g} iterations at n={int(lo_n)}, {bound}{k_hi:g} at "
                  f"n={int(hi_n)} ({k_hi / k_lo:.2f}×)")
        if exact[at_hi].all() and k_hi <= k_lo:
            gd_grows, contra = False, True
        elif k_hi >= GD_GROWTH * k_lo:
            gd_grows = True if gd_grows is None else gd_grows
        else:
            ev.append(f"{where}: growth below {GD_GROWTH}×"
                      + (" (a lower bound: the cap, not the method)" if bound else ""))
    if contra:
        verdict = CONTRADICTED
    elif flat and all(flat) and gd_grows:
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
        if not flat:
            ev.append(f"no GN-type variant has a deciding slope (reached ε at ≥{fits.MIN_SIZES} "
                      f"sizes n)")
        if gd_grows is None:
            ev.append(f"no gd slice shows growth ≥{GD_GROWTH}× from a converged smallest n")
    return Claim("C1", STATEMENTS["C1"], "; ".join(ev) or "no runs", verdict, RULES["C1"])


def _leading_terms(table: pd.DataFrame) -> set[str]:
    return {t.strip() for terms in table["term"].dropna() for t in str(terms).split("→")}


def check_c2(fits_n: pd.DataFrame, fits_m: pd.DataFrame) -> Claim:
    ev, agree, disagree, missing = [], [], [], []
    for var, table in (("n", fits_n), ("m", fits_m)):
        table = table if table is not None else pd.DataFrame(columns=fits.FIT_COLUMNS)
        for alg in C2_METHODS:
            mine = table[table["algorithm"] == alg]
            deciding = mine[mine["agrees"].notna()]
            for r in mine.itertuples():
                state = {True: "agrees", False: "disagrees"}.get(r.agrees, "decides nothing")
                ev.append(f"{alg} in {var}: {r.slope:.2f} [{r.lo:.2f}, {r.hi:.2f}] vs model "
                          f"{r.theory:.2f} ({r.term}; {r.range}, {r.fixed}, {r.device}): "
                          f"{state}")
            if not len(deciding):
                missing.append(f"{alg} in {var}: no deciding fit")
                continue
            ok = deciding["agrees"].astype(bool)
            if not ok.all():
                disagree.append(f"{alg} in {var}")
                continue
            need = C2_LEADING_IN_N.get(alg, ()) if var == "n" else ()
            absent = [t for t in need if t not in _leading_terms(deciding)]
            if absent:
                missing.append(f"{alg} in n: term(s) {', '.join(absent)} never lead in a "
                               f"deciding fit")
            else:
                agree.append(f"{alg} in {var}")
    if disagree:
        verdict = CONTRADICTED
        ev.insert(0, f"disagree: {', '.join(disagree)}")
    elif len(agree) == 2 * len(C2_METHODS):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    ev += missing
    return Claim("C2", STATEMENTS["C2"], "; ".join(ev), verdict, RULES["C2"])


def check_c3(cells: pd.DataFrame) -> Claim:
    ev, flat_variants, grow_variants, fitted_variants = [], [], [], []
    done = cells[cells["status"].isin(("converged", "max_iters", "time_budget"))
                 & cells["mean_inner_iters"].notna()]
    capped_col = done["inner_capped_frac"] if "inner_capped_frac" in done else \
        pd.Series(np.nan, index=done.index)
    done = done.assign(_stuck=capped_col.fillna(0) > 0)
    for alg in ("gn_sketch", "gn_cg"):
        for variant, g in done[done["algorithm"] == alg].groupby("variant"):
            flats, grows, stuck_any = [], [], False
            for key, s in _slices(g, "m"):
                where = f"{variant} (m={int(key[-1])})"
                stuck = s[s["_stuck"]]
                if len(stuck):
                    stuck_any = True
                    ev.append(f"{where}: inner solve stopped at max_inner at "
                              f"n={sorted(int(x) for x in stuck['n'].unique())} (evidence of "
                              f"the cap only)")
                free = s[~s["_stuck"]]
                if free["n"].nunique() < fits.MIN_SIZES:
                    continue
                fit = fits.fit_loglog(free["n"], free["mean_inner_iters"], n_boot=1000)
                text = (f"{where}: inner iterations {free['mean_inner_iters'].min():.1f}–"
                        f"{free['mean_inner_iters'].max():.1f} over n={int(free['n'].min())}–"
                        f"{int(free['n'].max())}, slope {_fmt_fit(fit)}")
                if not _decides(fit):
                    ev.append(text + " (too wide to decide)")
                    continue
                ev.append(text)
                flats.append(fit.hi < FLAT_MAX)
                grows.append(fit.lo > FLAT_MAX)
            if alg == "gn_sketch" and flats:
                fitted_variants.append(variant)
                if all(flats) and not stuck_any:
                    flat_variants.append(variant)
                if any(grows):
                    grow_variants.append(variant)
    if flat_variants:
        verdict = SUPPORTED
    elif fitted_variants and len(grow_variants) == len(fitted_variants):
        verdict = CONTRADICTED
    else:
        verdict = UNDECIDED
        if not fitted_variants:
            ev.append(f"no gn_sketch variant with a deciding slope (inner iterations below "
                      f"the cap at ≥{fits.MIN_SIZES} sizes n)")
    return Claim("C3", STATEMENTS["C3"], "; ".join(ev), verdict, RULES["C3"])


def trajectory_gaps(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per gn_sketch run and its exact partner that reached ε: the largest gap in decades
    and the largest relative gap |L_s − L_e| / L_e over iterations where both are above ε
    (infinite when the gn_sketch run diverged)."""
    out = []
    if not len(rows):
        return pd.DataFrame(out)
    key = ["dataset", "data_params", "n", "m", "d", "seed", "dtype", "device"]
    ok = cells[cells["data_ok"].astype(bool)]
    exact = ok[ok["algorithm"].isin(["gn_gram", "gn_exact"]) & ok["iters_to_target"].notna()]
    by_cell = {c: g.set_index("iter")["rel_loss"] for c, g in rows.groupby("cell")}
    for r in ok[ok["algorithm"] == "gn_sketch"].itertuples(index=False):
        match = exact
        for k in key:
            match = match[match[k] == getattr(r, k)]
        if not len(match):
            continue
        match = match.sort_values("algorithm", ascending=False)  # gn_gram before gn_exact
        partner = match.iloc[0]
        s, e = by_cell.get(r.cell), by_cell.get(partner["cell"])
        if s is None or e is None:
            continue
        both = pd.concat([s, e], axis=1, keys=["s", "e"]).dropna()
        both = both[(both.index > 0) & (both["s"] > r.target) & (both["e"] > r.target)]
        diverged = r.status == "diverged"
        if not len(both) and not diverged:
            continue
        dec = np.abs(np.log10(both["s"] / both["e"])) if len(both) else pd.Series([0.0])
        rel = (np.abs(both["s"] - both["e"]) / both["e"]) if len(both) else pd.Series([0.0])
        out.append({"variant": r.variant, "partner": partner["algorithm"], "n": r.n, "m": r.m,
                    "seed": r.seed, "sketch_status": r.status,
                    "sketch_reached": r.iters_to_target == r.iters_to_target,
                    "gap_decades": float("inf") if diverged else float(dec.max()),
                    "max_rel_gap": float("inf") if diverged else float(rel.max()),
                    "iters_sketch": r.iters_to_target,
                    "iters_exact": partner["iters_to_target"]})
    return pd.DataFrame(out)


def check_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> Claim:
    gaps = trajectory_gaps(cells, rows)
    if len(gaps) < C4_MIN_PAIRS:
        return Claim("C4", STATEMENTS["C4"], f"{len(gaps)} gn_sketch run(s) with an exact GN "
                     f"partner that reached ε (same problem and seed); the rule needs "
                     f"{C4_MIN_PAIRS}", UNDECIDED, RULES["C4"])
    med = float(gaps["gap_decades"].median())
    unreached = gaps[~gaps["sketch_reached"].astype(bool)]
    ev = [f"{len(gaps)} pairs; median largest gap {med:.2f} decades, worst "
          f"{gaps['gap_decades'].max():.2f}; largest relative loss gap "
          f"{gaps['max_rel_gap'].max():.2g}"]
    if len(unreached):
        ev.append(f"{len(unreached)} gn_sketch run(s) of the pairs did not reach ε ("
                  + ", ".join(sorted(set(unreached["sketch_status"]))) + ")")
    for variant, g in gaps.groupby("variant"):
        its = g.dropna(subset=["iters_sketch", "iters_exact"])
        extra = (f", iterations to ε {its['iters_sketch'].median():g} vs "
                 f"{its['iters_exact'].median():g}" if len(its) else "")
        ev.append(f"{variant}: median gap {g['gap_decades'].median():.2f} decades{extra}")
    if med > C4_DISAGREE:
        verdict = CONTRADICTED
    elif med <= C4_AGREE and not len(unreached):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    return Claim("C4", STATEMENTS["C4"], "; ".join(ev), verdict, RULES["C4"])


def check_c5(cells: pd.DataFrame, rows: pd.DataFrame) -> Claim:
    cols = ntk_columns(cells, rows)
    ev, parts = [], {}

    def slope_part(name, frame, col, label):
        frame = frame[frame[col].notna()]
        if frame["m"].nunique() < fits.MIN_SIZES:
            if len(frame):
                ev.append(f"{label}: only {frame['m'].nunique()} widths (rule: "
                          f"≥{fits.MIN_SIZES})")
            return
        fit = fits.fit_loglog(frame["m"], frame[col], n_boot=1000)
        parts[name] = fits.agreement(fit.lo, fit.hi, NTK_SLOPE)
        state = {True: "agrees", False: "fails"}.get(parts[name], "decides nothing")
        ev.append(f"{label} vs m: slope {_fmt_fit(fit)} (theory {NTK_SLOPE}) over m="
                  f"{int(frame['m'].min())}–{int(frame['m'].max())}: {state}")

    if cols["g0_hinf"]:
        g0 = cells.drop_duplicates(["m", "seed", "n", "dataset", "data_params"])
        slope_part("a", g0, cols["g0_hinf"], "‖G₀ − H∞‖₂")
    lam = lambda_ratio(cells, rows, cols) if len(rows) else None
    if lam is not None and lam.notna().any():
        r = rows.assign(_lam=lam)[lambda f: f["_lam"].notna()]
        per_m = r.groupby("m")["_lam"].min()
        top = per_m.index.max()
        parts["b"] = bool(per_m[top] >= LAMBDA_FRACTION)
        ev.append("min λ_min(G_t)/λ: " + ", ".join(f"{v:.2f} at m={int(m)}"
                                                   for m, v in per_m.items()))
    if cols["w_move"] and len(rows):
        slope_part("c", neuron_movement(rows, cols), "neuron_move", "final ‖W_t − W₀‖_F/√m")
    if not ev:
        return Claim("C5", STATEMENTS["C5"], "no NTK diagnostic fields in the runs",
                     UNDECIDED, RULES["C5"])
    if any(v is False for v in parts.values()):
        verdict = CONTRADICTED
    elif parts.get("a") is True and all(v is True for v in parts.values()):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    return Claim("C5", STATEMENTS["C5"], "; ".join(ev), verdict, RULES["C5"])


def _growth(comp: pd.DataFrame) -> tuple[float, float, float, int] | None:
    """OLS slope of log(E/S) against log(m/n) over the cells with exact ratios, with its 95%
    t-interval: (slope, low, high, cells); None with too few cells or values of m/n."""
    exact = comp[comp["kind"] == "exact"]
    if len(exact) < C6_MIN_GROWTH_CELLS or exact["m_over_n"].nunique() < 3:
        return None
    x = np.log(exact["m_over_n"].to_numpy(float))
    y = np.log(exact["ratio"].to_numpy(float))
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half), len(x)


def _cell_text(r) -> str:
    sign = {"exact": "", "lower bound": "≥", "upper bound": "≤", "undecided": "?"}[r.kind]
    return f"(n={int(r.n)}, m={int(r.m)}): {sign}{r.ratio:.2g}"


def check_c6(cells: pd.DataFrame, prediction: dict | None = None) -> Claim:
    """C6 on the (n, m) grid (harness/reporting/crossover.py). ``prediction``: what the
    calibrated cost model says beyond the measured cells, ``{"predicted_win": bool,
    "text": str}`` (None: no profile, so a loss everywhere measured decides nothing)."""
    comp = crossover.sketch_vs_exact(cells, "time_to_target")
    if not len(comp):
        return Claim("C6", STATEMENTS["C6"], "no (n, m) grid with both a gn_sketch variant and "
                     f"an exact-Gram baseline ({', '.join(crossover.EXACT_BASELINES)})", UNDECIDED,
                     RULES["C6"])
    wins = comp[comp["wins"] == True]  # noqa: E712 (None is undecided)
    losses = comp[comp["wins"] == False]  # noqa: E712
    open_ = comp[comp["wins"].isna()]
    ev = [f"E/S (exact-Gram baseline over best gn_sketch variant, > 1: the sketch wins) at "
          f"{len(comp)} cells; wins: " + (", ".join(_cell_text(r) for r in
                                                 wins.itertuples()) or "none")]
    if len(losses):
        worst = losses.sort_values("ratio").head(3)
        ev.append(f"losses at {len(losses)} cells (lowest: "
                  + ", ".join(_cell_text(r) for r in worst.itertuples()) + ")")
    if len(open_):
        ev.append(f"{len(open_)} cells left open by runs that stopped before ε")
    growth = _growth(comp)
    if growth:
        ev.append(f"slope of log(E/S) vs log(m/n): {growth[0]:.2f} [{growth[1]:.2f}, "
                  f"{growth[2]:.2f}] over {growth[3]} cells")
    if prediction:
        ev.append(f"cost model: {prediction.get('text', '')}")
    if len(comp) < C6_MIN_CELLS:
        ev.append(f"{len(comp)} cells compared: the rule needs {C6_MIN_CELLS}")
        verdict = UNDECIDED
    elif len(wins):
        verdict = SUPPORTED if growth and growth[1] > 0 else UNDECIDED
        if verdict == UNDECIDED:
            ev.append("the sketch wins somewhere, but the growth of its margin with m/n is "
                      "not established")
    elif len(losses) == len(comp):
        if prediction is not None and prediction.get("predicted_win") is False:
            verdict = CONTRADICTED
        else:
            verdict = UNDECIDED
            ev.append("slower in every cell measured; without a cost-model prediction of no "
                      "win within the memory budget this is no verdict" if prediction is None
                      else "slower in every cell measured, but the cost model predicts a win "
                      "beyond them")
    else:
        verdict = UNDECIDED
    return Claim("C6", STATEMENTS["C6"], "; ".join(ev), verdict, RULES["C6"])


def check_claims(cells: pd.DataFrame, rows: pd.DataFrame, fits_n: pd.DataFrame,
                 fits_m: pd.DataFrame, prediction: dict | None = None) -> list[Claim]:
    """All six claims; a check that fails on odd data reports it instead of raising."""
    checks = [("C1", lambda: check_c1(cells)), ("C2", lambda: check_c2(fits_n, fits_m)),
              ("C3", lambda: check_c3(cells)), ("C4", lambda: check_c4(cells, rows)),
              ("C5", lambda: check_c5(cells, rows)), ("C6", lambda: check_c6(cells, prediction))]
    out = []
    for cid, fn in checks:
        if not len(cells):
            out.append(Claim(cid, STATEMENTS[cid], "no runs", UNDECIDED, RULES[cid]))
            continue
        try:
            out.append(fn())
        except Exception as exc:  # a report with one claim unchecked beats no report
            out.append(Claim(cid, STATEMENTS[cid], f"check failed: {type(exc).__name__}: "
                             f"{exc}", UNDECIDED, RULES[cid]))
    return out


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([c.__dict__ for c in claims])

