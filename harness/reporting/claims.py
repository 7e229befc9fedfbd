"""The claims check: C1–C6 of the spec (§5), each decided by an explicit rule on the measured
data, with the numbers that decided it.

Verdicts: ``supported``, ``contradicted``, ``not enough data`` (the data needed are missing, or
present but not decisive under the rule; the evidence says which).

A claim is one registration (``@claim``, below): its statement, the rule text shown in the
report, the named constants that text is written from (thresholds, minimum sizes, margins:
module constants, so a reader can see and change them in one place, and the check reads the
same ones), the function that applies the rule and, optionally, the least data the rule needs
(the report's "what these data can decide" table). ``check_claims`` and that table read the
registry, so a new claim is one decorated function::

    @claim("C7", statement="...", rule="... at least {C7_MIN} runs ...",
           constants={"C7_MIN": C7_MIN})
    def check_c7(cells: pd.DataFrame) -> tuple[str, str]:
        ...
        return verdict, evidence

A check names the inputs it reads as its parameters (``ClaimInputs``: ``cells``, ``rows``,
``fits_n``, ``fits_m``, ``prediction``) and returns (verdict, evidence); called directly it
returns the ``Claim``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from algorithms.base import ALGORITHMS
from harness.execution.results import DONE_STATUSES as DONE
from harness.reporting import crossover, fits
from harness.reporting.figures import lambda_ratio, neuron_movement, ntk_columns
from harness.reporting.metrics import with_model

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
#: C6: (n, m) cells compared, cells with exact ratios for the growth fit, and distinct values
#: of m/n among those.
C6_MIN_CELLS, C6_MIN_GROWTH_CELLS, C6_MIN_RATIOS = 6, 5, 3


# --- the registry --------------------------------------------------------------------------------


@dataclass
class Claim:
    """A claim's verdict on one set of data, with the evidence and the rule that decided it."""

    id: str
    statement: str
    evidence: str
    verdict: str
    rule: str


@dataclass(frozen=True)
class ClaimInputs:
    """What a check (or its count of the least data) may read; it names what it reads as its
    parameters."""

    cells: pd.DataFrame  # metrics.cell_metrics
    rows: pd.DataFrame  # per-iteration rows (load.Loaded.rows)
    fits_n: pd.DataFrame | None = None  # fits.scaling_fits in n and in m
    fits_m: pd.DataFrame | None = None
    #: what the calibrated cost model says beyond the measured cells (check_c6)
    prediction: dict | None = None


_INPUT_NAMES = tuple(f.name for f in dataclasses.fields(ClaimInputs))


def _parameters(fn: Callable) -> list[str]:
    names = list(inspect.signature(fn).parameters)
    unknown = [n for n in names if n not in _INPUT_NAMES]
    if unknown:
        raise TypeError(f"{fn.__name__}: parameter(s) {', '.join(unknown)} are not claim "
                        f"inputs ({', '.join(_INPUT_NAMES)})")
    return names


def _call(fn: Callable, inputs: ClaimInputs):
    return fn(**{name: getattr(inputs, name) for name in _parameters(fn)})


class _RuleFormatter(string.Formatter):
    """``str.format`` that writes a sequence of names as ``a, b`` and a mapping of names to
    sequences as ``a: x, y; b: z``."""

    def format_field(self, value, format_spec: str) -> str:
        if isinstance(value, Mapping):
            return "; ".join(f"{k}: {self.format_field(v, '')}" for k, v in value.items())
        if isinstance(value, (tuple, list)):
            return ", ".join(str(v) for v in value)
        return super().format_field(value, format_spec)


RULE_FORMAT = _RuleFormatter()


@dataclass(frozen=True)
class ClaimSpec:
    """One registered claim."""

    id: str
    statement: str
    #: the rule, with a ``{NAME}`` field (format spec allowed) for each of ``constants``
    template: str
    #: the named values the rule is written from, the same ones the check reads
    constants: Mapping[str, object]
    #: the rule applied: inputs -> (verdict, evidence)
    decide: Callable[..., tuple[str, str]]
    #: the least data the rule needs: inputs -> (what it needs, what the data have, met?)
    needs: Callable[..., tuple[str, str, bool]] | None = None

    @property
    def rule(self) -> str:
        return RULE_FORMAT.format(self.template, **self.constants)

    def result(self, verdict: str, evidence: str) -> Claim:
        return Claim(self.id, self.statement, evidence, verdict, self.rule)

    def check(self, inputs: ClaimInputs) -> Claim:
        return self.result(*_call(self.decide, inputs))

    def least_data(self, inputs: ClaimInputs) -> tuple[str, str, bool] | None:
        return None if self.needs is None else _call(self.needs, inputs)


#: every claim, in the order of the report
REGISTRY: dict[str, ClaimSpec] = {}


def claim(cid: str, *, statement: str, rule: str, constants: Mapping[str, object] | None = None,
          needs: Callable[..., tuple[str, str, bool]] | None = None):
    """Register the decorated function as the check of claim ``cid``; it returns (verdict,
    evidence), the decorated name returns the ``Claim``. ``rule`` is formatted with
    ``constants``: a field without its constant fails here, at import."""
    def register(decide: Callable[..., tuple[str, str]]):
        if cid in REGISTRY:
            raise ValueError(f"claim {cid} is registered twice")
        spec = ClaimSpec(cid, statement, rule, dict(constants or {}), decide, needs)
        for fn in (decide, needs):
            if fn is not None:
                _parameters(fn)
        spec.rule  # noqa: B018 (formats the rule now, so that a missing constant fails early)
        REGISTRY[cid] = spec

        @functools.wraps(decide)
        def check(*args, **kwargs) -> Claim:
            return spec.result(*decide(*args, **kwargs))

        return check

    return register


def check_claims(cells: pd.DataFrame, rows: pd.DataFrame, fits_n: pd.DataFrame,
                 fits_m: pd.DataFrame, prediction: dict | None = None) -> list[Claim]:
    """Every registered claim; a check that fails on odd data reports it instead of raising."""
    inputs = ClaimInputs(cells, rows, fits_n, fits_m, prediction)
    out = []
    for spec in REGISTRY.values():
        if not len(cells):
            out.append(spec.result(UNDECIDED, "no runs"))
            continue
        try:
            out.append(spec.check(inputs))
        except Exception as exc:  # a report with one claim unchecked beats no report
            out.append(spec.result(UNDECIDED, f"check failed: {type(exc).__name__}: {exc}"))
    return out


#: the claims the report decides again on each model depth (docs/reports.md, "Depth")
DEPTH_CLAIMS = ("C1", "C3", "C4")


def claims_by_depth(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``DEPTH_CLAIMS`` decided on the cells of each (model, depth) alone, by the same
    registered rules: one row per depth and claim."""
    out = []
    if "depth" not in cells or not len(cells):
        return pd.DataFrame(out)
    for (model, depth), sub in cells.groupby(["model", "depth"], sort=True):
        part = rows[rows["cell"].isin(sub["cell"])] if len(rows) else rows
        inputs = ClaimInputs(sub, part)
        for cid in DEPTH_CLAIMS:
            try:
                c = REGISTRY[cid].check(inputs)
            except Exception as exc:  # as in check_claims: one unchecked cell of the table
                c = REGISTRY[cid].result(UNDECIDED, f"check failed: {type(exc).__name__}")
            out.append({"model": model, "depth": int(depth), "claim": cid,
                        "verdict": f"**{c.verdict}**", "evidence": c.evidence})
    return pd.DataFrame(out)


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([c.__dict__ for c in claims])


# --- shared by the checks ------------------------------------------------------------------------

#: the fits' part of a rule, and the constants it is written from
_FIT = ("≥{MIN_SIZES} sizes; a fit decides only when its 95% interval is at most "
        "{MAX_CI_WIDTH:g} wide")
_FIT_CONSTANTS = {"MIN_SIZES": fits.MIN_SIZES, "MAX_CI_WIDTH": fits.MAX_CI_WIDTH}
#: what one slice of the least-data counts holds fixed (with the other size)
_SLICE_KEYS = ["device", "dataset", "d", "dtype"]


def _family(algorithm: str) -> str:
    """The method's ``family``; a method not registered here counts as first order."""
    return ALGORITHMS.get(algorithm).family if algorithm in ALGORITHMS else "first_order"


def _slices(frame: pd.DataFrame, other: str):
    keys = [*with_model(["device", "dataset", "data_params", "d", "dtype"], frame), other]
    return frame.groupby(keys, dropna=False)


def _fmt_fit(f: fits.SlopeFit) -> str:
    return f"{f.slope:.2f} [{f.lo:.2f}, {f.hi:.2f}]"


def _decides(f: fits.SlopeFit) -> bool:
    return f.hi - f.lo <= fits.MAX_CI_WIDTH


def _slope_in_n(s: pd.DataFrame, col: str, label: str, show: Callable[[float], str],
                ev: list[str]) -> fits.SlopeFit | None:
    """The log-log slope of a count ``col`` vs n over the slice ``s``, written to ``ev``
    after ``label`` with the count's range (``show`` writes a value); None when its interval
    is too wide to decide."""
    fit = fits.fit_loglog(s["n"], s[col], n_boot=1000)
    text = (f"{label} {show(s[col].min())}–{show(s[col].max())} over n={int(s['n'].min())}–"
            f"{int(s['n'].max())}, slope {_fmt_fit(fit)}")
    if not _decides(fit):
        ev.append(text + " (too wide to decide)")
        return None
    ev.append(text)
    return fit


def _finished(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["status"].isin(DONE)] if len(cells) else cells


def _most_sizes(done: pd.DataFrame, algs, var: str, fixed: str) -> int:
    """The most distinct ``var`` that one of ``algs`` finished in one slice at one ``fixed``."""
    sub = done[done["algorithm"].isin(algs)]
    if not len(sub):
        return 0
    return int(sub.groupby(with_model(["algorithm", *_SLICE_KEYS, fixed], sub))[var]
               .nunique().max())


# --- C1 ------------------------------------------------------------------------------------------


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


def _c1_gauss_newton(done: pd.DataFrame, ev: list[str]) -> tuple[bool, list[bool]]:
    """The full-batch GN variants' slopes of iterations to ε in n, and their max_iters
    bounds: (contradicted?, per deciding slope: is it flat?); evidence goes to ``ev``."""
    contra, flat = False, []
    gn = done[[(_family(a) == "gauss_newton") and _full_batch(row)
               for a, (_, row) in zip(done["algorithm"], done.iterrows())]]
    for variant, g in gn.groupby("variant"):
        conv = g[g["iters_to_target"].notna()]
        for key, s in _slices(conv, "m"):
            if s["n"].nunique() < fits.MIN_SIZES:
                if s["n"].nunique() > 1:  # single-size slices (m sweeps) are not news
                    ev.append(f"{variant} ({key[1]}, m={int(key[-1])}): reached ε at only "
                              f"{s['n'].nunique()} sizes n")
                continue
            where = f"{variant} ({key[1]}, m={int(key[-1])})"
            fit = _slope_in_n(s, "iters_to_target", f"{where}: iterations",
                              lambda v: str(int(v)), ev)
            if fit is None:
                continue
            if fit.lo > FLAT_MAX:
                contra = True
            flat.append(fit.hi < FLAT_MAX)
        capped = g[(g["censor"] == "max_iters") & g["iters_lower_bound"].notna()]
        if len(capped) and len(conv) and \
                capped["iters_lower_bound"].max() > CAP_FACTOR * conv["iters_to_target"].max():
            contra = True
            top = int(capped["iters_lower_bound"].max())
            at = sorted(int(x) for x in capped["n"])
            ev.append(f"{variant}: stopped by max_iters at ≥{top} iterations (n={at}) while its "
                      f"converged runs needed ≤{int(conv['iters_to_target'].max())}")
    return contra, flat


def _c1_gd(done: pd.DataFrame, ev: list[str]) -> tuple[bool, bool | None]:
    """gd's iterations at its smallest and largest n per slice: (contradicted?, grows?: None
    when no slice decides); evidence goes to ``ev``."""
    contra, gd_grows = False, None
    for key, s in _slices(done[done["algorithm"] == "gd"], "m"):
        if s["n"].nunique() < 2:
            continue
        k = s["iters_to_target"].fillna(s["iters_lower_bound"])  # NaN: diverged, no bound
        exact = s["iters_to_target"].notna()
        lo_n, hi_n = s["n"].min(), s["n"].max()
        at_lo, at_hi = s["n"] == lo_n, s["n"] == hi_n
        k_lo, k_hi = k[at_lo].median(), k[at_hi].median()
        where = f"gd ({key[1]}, m={int(key[-1])})"
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
    return contra, gd_grows


def _needs_c1(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = _finished(cells)
    gn = [a for a in done["algorithm"].unique() if _family(a) == "gauss_newton"] \
        if len(done) else []
    have = _most_sizes(done, gn, "n", "m")
    return (f"{fits.MIN_SIZES} sizes n at one m for a Gauss–Newton-type method, gd at 2 sizes",
            f"{have} sizes n", have >= fits.MIN_SIZES)


@claim("C1", statement="GN-type methods reach ε in O(log 1/ε) iterations independent of n; GD "
                       "needs iterations growing with n/λ",
       rule="Per full-batch Gauss–Newton-type variant (batch_size < n excluded) and slice "
            "(same m, data, device): log-log slope of iterations to ε vs n over the runs that "
            "reached ε (" + _FIT + "). Runs stopped by max_iters give lower bounds; diverged "
            "runs give nothing. Contradicted if a GN slope interval lies above {FLAT_MAX}, or "
            "a GN run's max_iters lower bound is over {CAP_FACTOR:g}× what its converged runs "
            "needed, or gd (converged at both ends) needs no more iterations at the largest n "
            "than at the smallest. Supported if ≥1 GN slope was fitted, every GN slope "
            "interval lies below {FLAT_MAX}, and gd's iterations grow ≥{GD_GROWTH}× from the "
            "smallest n (reached ε) to the largest (a lower bound counts).",
       constants={"FLAT_MAX": FLAT_MAX, "CAP_FACTOR": CAP_FACTOR, "GD_GROWTH": GD_GROWTH,
                  **_FIT_CONSTANTS},
       needs=_needs_c1)
def check_c1(cells: pd.DataFrame) -> tuple[str, str]:
    ev: list[str] = []
    done = cells[cells["status"].isin(DONE)]
    gn_contra, flat = _c1_gauss_newton(done, ev)
    gd_contra, gd_grows = _c1_gd(done, ev)
    if gn_contra or gd_contra:
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
    return verdict, "; ".join(ev) or "no runs"


# --- C2 ------------------------------------------------------------------------------------------


def _leading_terms(table: pd.DataFrame) -> set[str]:
    return {t.strip() for terms in table["term"].dropna() for t in str(terms).split("→")}


def _needs_c2(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = _finished(cells)
    in_n = min((_most_sizes(done, [a], "n", "m") for a in C2_METHODS), default=0)
    in_m = min((_most_sizes(done, [a], "m", "n") for a in C2_METHODS), default=0)
    k = fits.MIN_SIZES
    return (f"{k} sizes n at one m and {k} widths m at one n, for each of "
            f"{', '.join(C2_METHODS)}", f"{in_n} sizes n, {in_m} widths m (fewest over them)",
            in_n >= k and in_m >= k)


@claim("C2", statement="time per iteration: gn_exact ~ n²md, gn_gram ~ n²(m+d), gn_sketch ~ "
                       "nmd + n³, gd ~ nmd",
       rule="Fit time per iteration (amortised: mean over all steps, refreshes included) vs n "
            "and vs m (" + _FIT + "), against the slope θ of the method's cost model over the "
            "same cells (every term, with the measured inner iterations k and refresh share "
            "f). A fit agrees when its interval lies within θ ± {TOLERANCE:g}, disagrees when "
            "it lies wholly outside. A method agrees in n (m) when it has ≥1 deciding fit and "
            "all its deciding fits agree. Contradicted if any deciding fit of {C2_METHODS} "
            "disagrees; supported if each of them agrees in n and in m, with these terms "
            "leading somewhere in their fits in n: {C2_LEADING_IN_N}.",
       constants={"TOLERANCE": fits.TOLERANCE, "C2_METHODS": C2_METHODS,
                  "C2_LEADING_IN_N": C2_LEADING_IN_N, **_FIT_CONSTANTS},
       needs=_needs_c2)
def check_c2(fits_n: pd.DataFrame, fits_m: pd.DataFrame) -> tuple[str, str]:
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
    return verdict, "; ".join(ev)


# --- C3 ------------------------------------------------------------------------------------------


def _needs_c3(cells: pd.DataFrame) -> tuple[str, str, bool]:
    have = _most_sizes(_finished(cells), ["gn_sketch"], "n", "m")
    return (f"{fits.MIN_SIZES} sizes n at one m for gn_sketch", f"{have} sizes n",
            have >= fits.MIN_SIZES)


@claim("C3", statement="sketch preconditioning makes the inner iteration count independent "
                       "of n",
       rule="Per gn_sketch variant and slice: runs with any step whose CG stopped at "
            "max_inner are stuck (evidence of the cap only) and left out; log-log slope of "
            "mean inner iterations vs n over the rest (" + _FIT + "). Supported if some "
            "variant has ≥1 fitted slice, no stuck run, and every slope interval below "
            "{FLAT_MAX}; contradicted if every fitted variant has a slice whose interval lies "
            "above {FLAT_MAX}. gn_cg's slope is shown for contrast.",
       constants={"FLAT_MAX": FLAT_MAX, **_FIT_CONSTANTS},
       needs=_needs_c3)
def check_c3(cells: pd.DataFrame) -> tuple[str, str]:
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
                where = f"{variant} ({key[1]}, m={int(key[-1])})"
                stuck = s[s["_stuck"]]
                if len(stuck):
                    stuck_any = True
                    ev.append(f"{where}: inner solve stopped at max_inner at "
                              f"n={sorted(int(x) for x in stuck['n'].unique())} (evidence of "
                              f"the cap only)")
                free = s[~s["_stuck"]]
                if free["n"].nunique() < fits.MIN_SIZES:
                    continue
                fit = _slope_in_n(free, "mean_inner_iters", f"{where}: inner iterations",
                                  lambda v: f"{v:.1f}", ev)
                if fit is None:
                    continue
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
    return verdict, "; ".join(ev)


# --- C4 ------------------------------------------------------------------------------------------


def trajectory_gaps(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per gn_sketch run and its exact partner that reached ε: the largest gap in decades
    and the largest relative gap |L_s − L_e| / L_e over iterations where both are above ε
    (infinite when the gn_sketch run diverged)."""
    out = []
    if not len(rows):
        return pd.DataFrame(out)
    key = with_model(["dataset", "data_params", "n", "m", "d", "seed", "dtype", "device"], cells)
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


def _needs_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str, bool]:
    try:
        pairs = len(trajectory_gaps(cells, rows)) if len(cells) else 0
    except Exception:  # odd data: the claims check reports it
        pairs = 0
    return (f"{C4_MIN_PAIRS} gn_sketch runs with an exact partner (same problem and seed) "
            f"that reached ε", f"{pairs} pairs", pairs >= C4_MIN_PAIRS)


@claim("C4", statement="gn_sketch follows the exact Gauss–Newton trajectory",
       rule="Pair each gn_sketch run with the gn_gram (else gn_exact) run of the same problem "
            "and seed that reached ε (diverged or capped partners give no pair); per pair the "
            "largest gap |log10(L_sketch/L_exact)| over the iterations where both relative "
            "losses are above ε (a gn_sketch run that diverged: infinite). With "
            "≥{C4_MIN_PAIRS} pairs: supported if the median gap is ≤ {C4_AGREE} decades and "
            "every gn_sketch run of the pairs reached ε; contradicted if the median is > "
            "{C4_DISAGREE}.",
       constants={"C4_MIN_PAIRS": C4_MIN_PAIRS, "C4_AGREE": C4_AGREE,
                  "C4_DISAGREE": C4_DISAGREE},
       needs=_needs_c4)
def check_c4(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str]:
    gaps = trajectory_gaps(cells, rows)
    if len(gaps) < C4_MIN_PAIRS:
        return UNDECIDED, (f"{len(gaps)} gn_sketch run(s) with an exact GN partner that "
                           f"reached ε (same problem and seed); the rule needs {C4_MIN_PAIRS}")
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
    return verdict, "; ".join(ev)


# --- C5 ------------------------------------------------------------------------------------------


def _needs_c5(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str, bool]:
    done = _finished(cells)
    ntk = ntk_columns(cells, rows) if len(cells) else {}
    widths = 0
    if ntk.get("g0_hinf"):  # ‖G₀ − H∞‖ is per run: the widths that have it
        with_ntk = done[done[ntk["g0_hinf"]].notna()]
        widths = int(with_ntk.groupby([*_SLICE_KEYS, "n"])["m"].nunique().max()) \
            if len(with_ntk) else 0
    return (f"NTK diagnostics (record.ntk=true) at {fits.MIN_SIZES} widths m",
            f"{widths} widths m with ‖G₀ − H∞‖" if any(ntk.values()) else "no diagnostics",
            widths >= fits.MIN_SIZES)


@claim("C5", statement="NTK regime: G₀ → H∞ like 1/√m, λ_min(G_t) ≥ λ/2, weights move "
                       "O(1/√m)",
       rule="(a) log-log slope of ‖G₀ − H∞‖ vs m and (c) of the final per-neuron movement "
            "‖W_t − W₀‖_F/√m vs m (" + _FIT + ") agree when the interval lies within "
            "{NTK_SLOPE} ± {TOLERANCE:g}, fail when it lies wholly outside; (b) "
            "λ_min(G_t)/λ ≥ {LAMBDA_FRACTION} along training at the largest width. "
            "Contradicted if a part fails; supported if (a) agrees and every other measured "
            "part holds.",
       constants={"NTK_SLOPE": NTK_SLOPE, "TOLERANCE": fits.TOLERANCE,
                  "LAMBDA_FRACTION": LAMBDA_FRACTION, **_FIT_CONSTANTS},
       needs=_needs_c5)
def check_c5(cells: pd.DataFrame, rows: pd.DataFrame) -> tuple[str, str]:
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
        return UNDECIDED, "no NTK diagnostic fields in the runs"
    if any(v is False for v in parts.values()):
        verdict = CONTRADICTED
    elif parts.get("a") is True and all(v is True for v in parts.values()):
        verdict = SUPPORTED
    else:
        verdict = UNDECIDED
    return verdict, "; ".join(ev)


# --- C6 ------------------------------------------------------------------------------------------


def _growth(comp: pd.DataFrame) -> tuple[float, float, float, int] | None:
    """OLS slope of log(E/S) against log(m/n) over the cells with exact ratios, with its 95%
    t-interval: (slope, low, high, cells); None with too few cells or values of m/n."""
    exact = comp[comp["kind"] == "exact"]
    if len(exact) < C6_MIN_GROWTH_CELLS or exact["m_over_n"].nunique() < C6_MIN_RATIOS:
        return None
    x = np.log(exact["m_over_n"].to_numpy(float))
    y = np.log(exact["ratio"].to_numpy(float))
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half), len(x)


def _cell_text(r) -> str:
    sign = {"exact": "", "lower bound": "≥", "upper bound": "≤", "undecided": "?"}[r.kind]
    return f"(n={int(r.n)}, m={int(r.m)}): {sign}{r.ratio:.2g}"


def _needs_c6(cells: pd.DataFrame) -> tuple[str, str, bool]:
    done = _finished(cells)
    grid, ratios = 0, 0
    if len(done):
        keys = _SLICE_KEYS + ["n", "m"]
        sk = done[done["algorithm"] == crossover.SKETCH_METHOD]
        ex = done[done["algorithm"].isin(crossover.EXACT_BASELINES)]
        both = sk[keys].drop_duplicates().merge(ex[keys].drop_duplicates())
        if len(both):
            per_slice = both.groupby(_SLICE_KEYS)
            grid = int(per_slice.size().max())
            ratios = int(per_slice.apply(lambda g: (g["m"] / g["n"]).nunique()).max())
    return (f"{C6_MIN_CELLS} (n, m) cells with gn_sketch and an exact-Gram baseline, "
            f"{C6_MIN_RATIOS} values of m/n", f"{grid} cells, {ratios} values of m/n",
            grid >= C6_MIN_CELLS and ratios >= C6_MIN_RATIOS)


@claim("C6", statement="wall-clock time to ε: the sketched step beats the exact Gram step where "
                       "m ≫ n ≫ d, by a margin that grows with m/n",
       rule="On the (n, m) grid of the crossover sweep (the slice with most cells): per cell, "
            "E/S = the best exact-Gram baseline ({EXACT_BASELINES}) over the best gn_sketch "
            "variant, in time to ε (median over seeds). A run that stopped before ε gives a "
            "lower bound, so E/S is a number, a lower bound (E stopped), an upper bound (S "
            "stopped) or open (both); only a bound on the right side of 1 decides a cell. The "
            "rule needs ≥{C6_MIN_CELLS} cells. Supported if gn_sketch surely wins some cell "
            "and its margin grows with m/n: the 95% interval of the slope of log(E/S) against "
            "log(m/n), over ≥{C6_MIN_GROWTH_CELLS} cells with exact ratios and "
            "≥{C6_MIN_RATIOS} values of m/n, lies above 0. Contradicted if it surely loses "
            "every cell and the calibrated cost model predicts no win within the memory "
            "budget; otherwise not enough data.",
       constants={"EXACT_BASELINES": crossover.EXACT_BASELINES, "C6_MIN_CELLS": C6_MIN_CELLS,
                  "C6_MIN_GROWTH_CELLS": C6_MIN_GROWTH_CELLS, "C6_MIN_RATIOS": C6_MIN_RATIOS},
       needs=_needs_c6)
def check_c6(cells: pd.DataFrame, prediction: dict | None = None) -> tuple[str, str]:
    """C6 on the (n, m) grid (harness/reporting/crossover.py). ``prediction``: what the
    calibrated cost model says beyond the measured cells, ``{"predicted_win": bool,
    "text": str}`` (None: no profile, so a loss everywhere measured decides nothing)."""
    comp = crossover.sketch_vs_exact(cells, "time_to_target")
    if not len(comp):
        return UNDECIDED, ("no (n, m) grid with both a gn_sketch variant and an exact-Gram "
                           f"baseline ({', '.join(crossover.EXACT_BASELINES)})")
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
        verdict = _c6_all_lost(prediction, ev)
    else:
        verdict = UNDECIDED
    return verdict, "; ".join(ev)


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
