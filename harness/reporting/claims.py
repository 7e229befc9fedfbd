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

from harness.reporting import fits as F
from harness.reporting.figures import lambda_ratio, neuron_movement, ntk_columns

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not enough data"
DONE = ("converged", "max_iters", "time_budget", "diverged")

#: C1, C3: a count is "independent of n" when the 95% interval of its log-log slope in n lies
#: below FLAT_MAX, and "grows with n" when the interval lies above GROW_MIN.
FLAT_MAX, GROW_MIN = 0.5, 0.25
#: C1: GD's iterations to ε "grow" when they rise by this factor from the smallest to the
#: largest n measured (a run stopped by max_iters counts with its lower bound).
GD_GROWTH = 1.5
#: C3: gn_sketch's inner count is flat when its slope interval lies below this.
INNER_FLAT_MAX = 0.25
#: C4: gap between two loss curves in decades, |log10(L_sketch/L_exact)|, while both are above ε.
C4_AGREE, C4_DISAGREE = 0.5, 1.0
#: C5: λ_min(G_t)/λ must stay at or above this (the theorems' λ/2).
LAMBDA_FRACTION = 0.5

GN_FAMILY_FALLBACK = {"gn_exact", "gn_gram", "ngd", "kfac", "ggn", "gn_cg", "gn_sketch",
                      "gn_nystrom"}

RULES = {
    "C1": ("For each full-batch Gauss–Newton-type method (mini-batch runs with batch_size < n "
           f"excluded) with iterations-to-ε at ≥{F.MIN_SIZES} sizes n "
           f"(same m, data, device): fit the log-log slope of iterations vs n. Contradicted if "
           f"any slope's 95% interval lies above {GROW_MIN}, or a GN run hits max_iters with "
           f"more than twice the iterations its converged runs needed; or if gd needs no more "
           f"iterations at the largest n than at the smallest (both converged). Supported if "
           f"every GN slope interval lies below {FLAT_MAX} and gd's iterations grow ≥"
           f"{GD_GROWTH}× from the smallest to the largest n (lower bounds count)."),
    "C2": (f"Fit time per iteration vs n and vs m (median step time, ≥{F.MIN_SIZES} sizes, "
           f"only where one term of the spec's cost model carries ≥{F.DOMINANCE:.0%} of the "
           f"modelled flops and the time is above the overhead floor). A fit agrees when its "
           f"95% interval meets [θ − {F.TOLERANCE}, θ + {F.TOLERANCE}] for the term's exponent "
           f"θ (fits with an interval wider than {F.MAX_CI_WIDTH:g} decide nothing); a method "
           f"agrees in n (m) when at least half its deciding fits do. Contradicted if any of "
           f"gd, gn_exact, gn_gram, gn_sketch disagrees; supported if at least two of them "
           f"were fitted and all agree."),
    "C3": (f"Fit the log-log slope of mean inner iterations vs n (≥{F.MIN_SIZES} sizes) per "
           f"gn_sketch variant. Supported if some variant's slope interval lies below "
           f"{INNER_FLAT_MAX} in every slice; contradicted if every fitted variant has a slice "
           f"whose interval lies above {GROW_MIN}. gn_cg's slope is shown for contrast."),
    "C4": (f"Pair each gn_sketch run with the gn_gram (else gn_exact) run of the same problem "
           f"and seed; per pair take the largest gap |log10(L_sketch/L_exact)| over the "
           f"iterations where both relative losses are above ε. Supported if the median gap "
           f"over pairs is ≤ {C4_AGREE} decades, contradicted if > {C4_DISAGREE}."),
    "C5": (f"(a) log-log slope of ‖G₀ − H∞‖ vs m (≥{F.MIN_SIZES} widths) must meet "
           f"[−0.5 ± {F.TOLERANCE}]; (b) λ_min(G_t)/λ ≥ {LAMBDA_FRACTION} along training at "
           f"the largest width measured; (c) the slope of the final per-neuron movement "
           f"‖W_t − W₀‖_F/√m vs m meets "
           f"[−0.5 ± {F.TOLERANCE}]. Contradicted if any measured part fails; supported if (a) "
           f"was measured and every measured part holds."),
    "C6": ("At each (device, m) with gn_sketch and gn_gram at common sizes n: supported if "
           "gn_sketch reaches ε sooner than gn_gram at the largest common n somewhere; "
           "contradicted if it is slower at every n everywhere and, with ≥3 common sizes, the "
           "time ratio gn_sketch/gn_gram does not fall from the smallest to the largest n "
           "(no sign of a crossover); otherwise not enough data."),
}

STATEMENTS = {
    "C1": "GN-type methods reach ε in O(log 1/ε) iterations independent of n; GD needs "
          "iterations growing with n/λ",
    "C2": "time per iteration: gn_exact ~ n²md, gn_gram ~ n²(m+d), gn_sketch ~ nmd + n³, "
          "gd ~ nmd",
    "C3": "sketch preconditioning makes the inner iteration count independent of n",
    "C4": "gn_sketch follows the exact Gauss–Newton trajectory",
    "C5": "NTK regime: G₀ → H∞ like 1/√m, λ_min(G_t) ≥ λ/2, weights move O(1/√m)",
    "C6": "wall-clock time to ε: gn_sketch overtakes the exact GN baseline gn_gram as n grows",
}


@dataclass
class Claim:
    id: str
    statement: str
    evidence: str
    verdict: str
    rule: str


def _family(algorithm: str) -> str:
    try:
        from algorithms.base import ALGORITHMS

        return ALGORITHMS.get(algorithm).family
    except Exception:
        return "gauss_newton" if algorithm in GN_FAMILY_FALLBACK else "first_order"


def _slices(frame: pd.DataFrame, other: str):
    keys = ["device", "dataset", "data_params", "d", "dtype", other]
    return frame.groupby(keys, dropna=False)


def _fmt_fit(f: F.SlopeFit) -> str:
    return f"{f.slope:.2f} [{f.lo:.2f}, {f.hi:.2f}]"


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
    ev, contra, support_gn = [], False, []
    done = cells[cells["status"].isin(DONE)]
    gn = done[[(_family(a) == "gauss_newton") and _full_batch(row)
               for a, (_, row) in zip(done["algorithm"], done.iterrows())]]
    for variant, g in gn.groupby("variant"):
        conv = g[g["iters_to_target"].notna()]
        for key, s in _slices(conv, "m"):
            if s["n"].nunique() < F.MIN_SIZES:
                continue
            fit = F.fit_loglog(s["n"], s["iters_to_target"], n_boot=1000)
            if fit.lo > GROW_MIN:
                contra = True
            support_gn.append(fit.hi < FLAT_MAX)
            ev.append(f"{variant} (m={int(key[-1])}): iterations {int(s['iters_to_target'].min())}"
                      f"–{int(s['iters_to_target'].max())} over n={int(s['n'].min())}–"
                      f"{int(s['n'].max())}, slope {_fmt_fit(fit)}")
        capped = g[(g["censor"] == "max_iters") & g["iters_lower_bound"].notna()]
        if len(capped) and len(conv) and \
                capped["iters_lower_bound"].max() > 2 * conv["iters_to_target"].max():
            contra = True
            ev.append(f"{variant}: hit max_iters ({int(capped['iters_lower_bound'].max())}) at "
                      f"n={sorted(int(x) for x in capped['n'])} while converged runs needed ≤"
                      f"{int(conv['iters_to_target'].max())}")
    gd_grows = None
    gd = done[done["algorithm"] == "gd"]
    for key, s in _slices(gd, "m"):
        if s["n"].nunique() < 2:
            continue
        k = s["iters_to_target"].fillna(s["iters_lower_bound"])
        exact = s["iters_to_target"].notna()
        lo_n, hi_n = s["n"].min(), s["n"].max()
        k_lo, k_hi = k[s["n"] == lo_n].median(), k[s["n"] == hi_n].median()
        if k_lo != k_lo or k_hi != k_hi:
            continue
        bound = "≥" if not exact[s["n"] == hi_n].all() else ""
        ev.append(f"gd (m={int(key[-1])}): {k_lo:g} iterations at n={int(lo_n)}, {bound}"
                  f"{k_hi:g} at n={int(hi_n)}")
        if exact.all() and k_hi <= k_lo:
            gd_grows = False
            contra = True
        elif k_hi >= GD_GROWTH * k_lo and exact[s["n"] == lo_n].all() and gd_grows is not False:
            gd_grows = True
        else:
            ev.append(f"gd (m={int(key[-1])}): growth {k_hi / k_lo:.2f}× does not decide "
                      f"(rule: ≥{GD_GROWTH}×, smallest n converged)")
    if contra:
        verdict = CONTRADICTED
    elif support_gn and all(support_gn) and gd_grows:
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
        if not support_gn:
            ev.append(f"no GN-type method reached ε at ≥{F.MIN_SIZES} sizes n")
        if gd_grows is None and gd.empty:
            ev.append("no gd runs")
    return Claim("C1", STATEMENTS["C1"], "; ".join(ev) or "no runs", verdict, RULES["C1"])


def check_c2(fits_n: pd.DataFrame, fits_m: pd.DataFrame) -> Claim:
    methods = ("gd", "gn_exact", "gn_gram", "gn_sketch")
    ev, agree, disagree, fitted = [], [], [], set()
    for var, fits in (("n", fits_n), ("m", fits_m)):
        if fits is None or not len(fits):
            continue
        for alg in methods:
            f = fits[(fits["algorithm"] == alg) & fits["agrees"].notna()]
            if not len(f):
                continue
            fitted.add(alg)
            ok = f["agrees"].astype(bool)
            detail = ", ".join(f"{r.slope:.2f} [{r.lo:.2f}, {r.hi:.2f}] vs {r.theory:.2f} "
                               f"({r.term}, {r.range}, {r.fixed}, {r.device})"
                               for r in f.itertuples())
            (agree if ok.mean() >= 0.5 else disagree).append(f"{alg} in {var}")
            ev.append(f"{alg} in {var}: {detail}")
    missing = [a for a in methods if a not in fitted]
    if missing:
        ev.append(f"not fitted: {', '.join(missing)}")
    if disagree:
        verdict = CONTRADICTED
        ev.insert(0, f"disagree: {', '.join(disagree)}")
    elif len(fitted) >= 2:
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    return Claim("C2", STATEMENTS["C2"], "; ".join(ev), verdict, RULES["C2"])


def check_c3(cells: pd.DataFrame) -> Claim:
    ev, flat_variants, grow_variants, fitted_variants = [], [], [], []
    done = cells[cells["status"].isin(DONE) & cells["mean_inner_iters"].notna()]
    for alg in ("gn_sketch", "gn_cg"):
        for variant, g in done[done["algorithm"] == alg].groupby("variant"):
            flats, grows = [], []
            for key, s in _slices(g, "m"):
                if s["n"].nunique() < F.MIN_SIZES:
                    continue
                fit = F.fit_loglog(s["n"], s["mean_inner_iters"], n_boot=1000)
                flats.append(fit.hi < INNER_FLAT_MAX)
                grows.append(fit.lo > GROW_MIN)
                ev.append(f"{variant} (m={int(key[-1])}): inner iterations "
                          f"{s['mean_inner_iters'].min():.1f}–{s['mean_inner_iters'].max():.1f} "
                          f"over n={int(s['n'].min())}–{int(s['n'].max())}, slope "
                          f"{_fmt_fit(fit)}")
            if alg == "gn_sketch" and flats:
                fitted_variants.append(variant)
                if all(flats):
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
            ev.append(f"no gn_sketch runs with inner iterations at ≥{F.MIN_SIZES} sizes n")
    return Claim("C3", STATEMENTS["C3"], "; ".join(ev), verdict, RULES["C3"])


def trajectory_gaps(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per gn_sketch run and its exact partner: the largest gap in decades and the largest
    relative gap |L_s − L_e| / L_e over iterations where both are above ε."""
    out = []
    if not len(rows):
        return pd.DataFrame(out)
    key = ["dataset", "data_params", "n", "m", "d", "seed", "dtype", "device"]
    ok = cells[cells["data_ok"].astype(bool)]
    exact = ok[ok["algorithm"].isin(["gn_gram", "gn_exact"])]
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
        if not len(both):
            continue
        dec = np.abs(np.log10(both["s"] / both["e"]))
        out.append({"variant": r.variant, "partner": partner["algorithm"], "n": r.n, "m": r.m,
                    "seed": r.seed, "gap_decades": float(dec.max()),
                    "max_rel_gap": float((np.abs(both["s"] - both["e"]) / both["e"]).max()),
                    "iters_sketch": r.iters_to_target,
                    "iters_exact": partner["iters_to_target"]})
    return pd.DataFrame(out)


def check_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> Claim:
    gaps = trajectory_gaps(cells, rows)
    if not len(gaps):
        return Claim("C4", STATEMENTS["C4"], "no gn_sketch run with an exact GN partner "
                     "(same problem and seed)", UNDECIDED, RULES["C4"])
    med = float(gaps["gap_decades"].median())
    ev = [f"{len(gaps)} pairs; median largest gap {med:.2f} decades, worst "
          f"{gaps['gap_decades'].max():.2f}; largest relative loss gap "
          f"{gaps['max_rel_gap'].max():.2g}"]
    for variant, g in gaps.groupby("variant"):
        its = g.dropna(subset=["iters_sketch", "iters_exact"])
        extra = (f", iterations to ε {its['iters_sketch'].median():g} vs "
                 f"{its['iters_exact'].median():g}" if len(its) else "")
        ev.append(f"{variant}: median gap {g['gap_decades'].median():.2f} decades{extra}")
    verdict = SUPPORTED if med <= C4_AGREE else CONTRADICTED if med > C4_DISAGREE else UNDECIDED
    return Claim("C4", STATEMENTS["C4"], "; ".join(ev), verdict, RULES["C4"])


def check_c5(cells: pd.DataFrame, rows: pd.DataFrame) -> Claim:
    cols = ntk_columns(cells, rows)
    ev, parts = [], {}

    def slope_part(name, frame, col, label):
        frame = frame[frame[col].notna()]
        if frame["m"].nunique() < F.MIN_SIZES:
            if len(frame):
                ev.append(f"{label}: only {frame['m'].nunique()} widths")
            return
        fit = F.fit_loglog(frame["m"], frame[col], n_boot=1000)
        ok = fit.lo <= -0.5 + F.TOLERANCE and fit.hi >= -0.5 - F.TOLERANCE
        parts[name] = ok
        ev.append(f"{label} vs m: slope {_fmt_fit(fit)} (theory −0.5) over m="
                  f"{int(frame['m'].min())}–{int(frame['m'].max())}")

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
    if parts and not all(parts.values()):
        verdict = CONTRADICTED
    elif parts.get("a"):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    return Claim("C5", STATEMENTS["C5"], "; ".join(ev), verdict, RULES["C5"])


def check_c6(cells: pd.DataFrame) -> Claim:
    sk = cells[(cells["algorithm"] == "gn_sketch") & cells["status"].isin(DONE)]
    gr = cells[(cells["algorithm"] == "gn_gram") & cells["status"].isin(DONE)]
    if not len(sk) or not len(gr):
        return Claim("C6", STATEMENTS["C6"], "needs both gn_sketch and gn_gram runs",
                     UNDECIDED, RULES["C6"])
    ev, wins, no_sign, slices = [], 0, 0, 0
    for key, s in sk.groupby(["device", "dataset", "data_params", "d", "dtype", "m"]):
        g = gr
        for k, v in zip(["device", "dataset", "data_params", "d", "dtype", "m"], key):
            g = g[g[k] == v]
        # the best gn_sketch variant at each n (median over seeds)
        t_s = s.groupby(["n", "variant"])["time_to_target_s"].median().groupby("n").min()
        t_g = g.groupby("n")["time_to_target_s"].median()
        common = sorted(set(t_s.dropna().index) & set(g["n"]))
        if not common:
            continue
        slices += 1
        ratio = pd.Series({n: t_s[n] / t_g[n] if t_g.get(n, np.nan) == t_g.get(n, np.nan)
                           else 0.0 for n in common})
        big = common[-1]
        ev.append(f"{key[0]} m={int(key[-1])}: time ratio gn_sketch/gn_gram "
                  + ", ".join(f"{r:.2g} (n={int(n)})" for n, r in ratio.items()))
        if ratio[big] < 1:
            wins += 1
        elif len(common) >= 3 and (ratio > 1).all() and ratio.iloc[-1] >= ratio.iloc[0]:
            no_sign += 1
    if wins:
        verdict = SUPPORTED
    elif slices and no_sign == slices:
        verdict = CONTRADICTED
    else:
        verdict = UNDECIDED
    return Claim("C6", STATEMENTS["C6"], "; ".join(ev) or "no common sizes reached ε",
                 verdict, RULES["C6"])


def check_claims(cells: pd.DataFrame, rows: pd.DataFrame, fits_n: pd.DataFrame,
                 fits_m: pd.DataFrame) -> list[Claim]:
    """All six claims; a check that fails on odd data reports it instead of raising."""
    checks = [("C1", lambda: check_c1(cells)), ("C2", lambda: check_c2(fits_n, fits_m)),
              ("C3", lambda: check_c3(cells)), ("C4", lambda: check_c4(cells, rows)),
              ("C5", lambda: check_c5(cells, rows)), ("C6", lambda: check_c6(cells))]
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

