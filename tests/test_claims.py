"""The claims check on synthetic tables: every claim must be able to give each of its verdicts,
and censored, stuck (at an iteration cap) and noisy data must not make a claim supported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.reporting import claims, crossover, fits, tables
from harness.reporting.load import Loaded
from harness.reporting.metrics import cell_metrics

NS = [64, 128, 256, 512, 1024, 2048]
MS = [256, 1024, 2048, 4096, 16384]


def cell(alg: str, n: int, m: int = 2048, *, variant: str | None = None, status="converged",
         iters: float | None = 3, lower: float | None = None, time: float | None = 1.0,
         time_lower: float | None = None, inner: float | None = None, capped: float = 0.0,
         tpi: float | None = None, hp: dict | None = None, seed: int = 0, **extra) -> dict:
    """One row of a cells table (metrics.cell_metrics) with the fields the claims read."""
    reached = iters is not None
    row = {"cell": f"{alg}_{variant}_{n}_{m}_{seed}", "algorithm": alg,
           "variant": variant or alg, "status": status, "device": "cpu",
           "dataset": "synthetic", "data_params": "{}", "d": 16, "dtype": "float64",
           "n": n, "m": m, "seed": seed, "data_ok": True, "target": 1e-6,
           "hyperparameters": json.dumps(hp or {}),
           "iters_to_target": float(iters) if reached else np.nan,
           "iters_lower_bound": np.nan if lower is None else float(lower),
           "censor": None if reached else status,
           "time_to_target_s": time if reached and time is not None else np.nan,
           "time_lower_bound_s": np.nan if time_lower is None else time_lower,
           "mean_inner_iters": np.nan if inner is None else inner,
           "inner_capped_frac": np.nan if inner is None else capped,
           "refresh_frac": 1.0,
           "time_per_iter_s": tpi, "time_per_iter_median_s": tpi,
           "time_per_iter_amortised_s": tpi}
    row.update(extra)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


# --- C1 -----------------------------------------------------------------------------------------

def _c1_table(gn_sizes, gd_top: dict) -> pd.DataFrame:
    rows = [cell("gn_gram", n, iters=3) for n in gn_sizes]
    rows += [cell("gd", 64, iters=40), cell("gd", 2048, **gd_top)]
    return frame(rows)


def test_c1_supported_with_flat_gn_iterations_at_five_sizes_and_growing_gd():
    claim = claims.check_c1(_c1_table(NS, {"iters": 400}))
    assert claim.verdict == claims.SUPPORTED, claim.evidence


def test_c1_contradicted_when_gn_iterations_grow_with_n():
    rows = [cell("gn_gram", n, iters=int(2 * np.sqrt(n))) for n in NS]
    rows += [cell("gd", 64, iters=40), cell("gd", 2048, iters=400)]
    assert claims.check_c1(frame(rows)).verdict == claims.CONTRADICTED


def test_c1_needs_five_sizes():
    claim = claims.check_c1(_c1_table(NS[:4], {"iters": 400}))
    assert claim.verdict == claims.UNDECIDED, claim.evidence


def test_c1_gd_stopped_at_its_cap_below_the_growth_factor_is_evidence_of_the_cap_only():
    # gd at n=2048 stopped by max_iters=50: ≥50 is not ≥1.5 × 40
    claim = claims.check_c1(_c1_table(NS, {"iters": None, "status": "max_iters", "lower": 50}))
    assert claim.verdict == claims.UNDECIDED, claim.evidence
    assert "the cap, not the method" in claim.evidence
    # a cap far above what n=64 needed is evidence of growth
    claim = claims.check_c1(_c1_table(NS, {"iters": None, "status": "max_iters", "lower": 500}))
    assert claim.verdict == claims.SUPPORTED, claim.evidence


# --- C2 -----------------------------------------------------------------------------------------

SKETCH_HP = {"sketch": "tensor_srht", "sketch_ratio": 4.0}


def flops(alg: str, n: float, m: float, d: float = 16, k: float = 4.0, c: float = 4.0) -> float:
    """The spec's per-iteration flop counts, written apart from the methods' cost_terms."""
    if alg == "gd":
        return 4 * n * m * d
    if alg == "gn_exact":
        return 2 * n * n * m * d + n**3 / 3 + 5 * n * m * d
    if alg == "gn_gram":
        return 2 * n * n * (m + d) + n**3 / 3 + 4 * n * m * d
    # gn_sketch, tensor_srht: CG products, triangular solves, Hadamard transforms, QR of cn×n
    return ((4 * k + 4) * n * m * d + 2 * k * n * n + n * (m * np.log2(m) + d * np.log2(d))
            + c * n * n + 2 * c * n**3 - 2 * n**3 / 3)


def _timed(alg: str, n: int, m: int, jitter: float, exponent_n: float | None = None,
           hp: dict | None = None, inner: float | None = None) -> dict:
    """A cell whose amortised time per iteration follows the method's flops (or n^p)."""
    work = flops(alg, n, m) if exponent_n is None else 1e9 * (n / 64) ** exponent_n * m / 2048
    return cell(alg, n, m, tpi=1e-9 * work * jitter, inner=inner, hp=hp)


def _c2_cells(*, exact_exponent=None, noisy_gram_m=False, sketch_sizes=NS,
              sketch_m=2048) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for alg, hp, inner in (("gd", None, None), ("gn_exact", None, None),
                           ("gn_gram", None, None), ("gn_sketch", SKETCH_HP, 4.0)):
        sizes = sketch_sizes if alg == "gn_sketch" else NS
        m_n = sketch_m if alg == "gn_sketch" else 2048
        for n in sizes:
            p = exact_exponent if alg == "gn_exact" else None
            sigma = 0.6 if noisy_gram_m and alg == "gn_gram" else 0.02
            rows.append(_timed(alg, n, m_n, np.exp(rng.normal(0, sigma)), p, hp, inner))
        for m in MS:
            sigma = 0.6 if noisy_gram_m and alg == "gn_gram" else 0.02
            rows.append(_timed(alg, 256, m, np.exp(rng.normal(0, sigma)), None, hp, inner))
    return frame(rows)


def _c2(cells: pd.DataFrame) -> claims.Claim:
    return claims.check_c2(cells)


def test_c2_supported_when_every_method_follows_its_model_in_n_and_m():
    claim = _c2(_c2_cells())
    assert claim.verdict == claims.SUPPORTED, claim.evidence


def test_c2_contradicted_by_gn_exact_growing_like_a_first_order_step():
    # issue 23 overturns "contradicted by a slope of 1.43": a finite-range slope is not the
    # test. A gn_exact whose time has no n²md part at all (it grows like nmd) still is.
    cells = _c2_cells()
    exact = cells["algorithm"] == "gn_exact"
    cells.loc[exact, "time_per_iter_amortised_s"] = [
        1e-9 * flops("gd", n, m) for n, m in zip(cells.loc[exact, "n"], cells.loc[exact, "m"])]
    claim = _c2(cells)
    assert claim.verdict == claims.CONTRADICTED, claim.evidence
    assert "disagree: gn_exact" in claim.evidence


def test_c2_one_disagreeing_fit_makes_the_method_disagree():
    # gn_exact follows its model in float64 but runs like nmd in float32
    cells = _c2_cells()
    extra = cells[cells["algorithm"] == "gn_exact"].copy()
    extra["dtype"] = "float32"
    extra["cell"] = extra["cell"] + "_f32"
    extra["time_per_iter_amortised_s"] = [1e-9 * flops("gd", n, m)
                                          for n, m in zip(extra["n"], extra["m"])]
    claim = _c2(pd.concat([cells, extra], ignore_index=True))
    assert claim.verdict == claims.CONTRADICTED, claim.evidence


def test_c2_a_noisy_method_decides_nothing_and_is_not_supported():
    claim = _c2(_c2_cells(noisy_gram_m=True))
    assert claim.verdict == claims.UNDECIDED, claim.evidence
    assert "gn_gram: no deciding fit" in claim.evidence


def test_c2_a_per_step_constant_that_leads_at_every_size_decides_nothing():
    # 1 s of fixed cost per step dwarfs gn_sketch's arithmetic at these sizes: the named
    # terms never lead, which says nothing about them
    cells = _c2_cells()
    sk = cells["algorithm"] == "gn_sketch"
    cells.loc[sk, "time_per_iter_amortised_s"] = 1.0 + 1e-3 * cells.loc[
        sk, "time_per_iter_amortised_s"]
    claim = _c2(cells)
    assert claim.verdict == claims.UNDECIDED, claim.evidence
    assert "gn_sketch: no deciding fit" in claim.evidence


# --- C3 -----------------------------------------------------------------------------------------

def _c3_cells(inner, capped=0.0, sizes=NS) -> pd.DataFrame:
    hp = {"max_inner": 200, "tol": 0.1}
    return frame([cell("gn_sketch", n, inner=inner(n), capped=capped, hp=hp) for n in sizes])


def test_c3_supported_with_a_flat_inner_count():
    claim = claims.check_c3(_c3_cells(lambda n: 4.0 + 0.01 * np.log(n)))
    assert claim.verdict == claims.SUPPORTED, claim.evidence


def test_c3_contradicted_by_an_inner_count_growing_like_sqrt_n():
    claim = claims.check_c3(_c3_cells(lambda n: 2.0 * np.sqrt(n)))
    assert claim.verdict == claims.CONTRADICTED, claim.evidence


def test_c3_a_solver_stuck_at_max_inner_at_every_n_is_not_flat():
    claim = claims.check_c3(_c3_cells(lambda n: 200.0, capped=1.0))
    assert claim.verdict == claims.UNDECIDED, claim.evidence
    assert "max_inner" in claim.evidence


def test_c3_stuck_at_the_largest_n_only_is_growth():
    # issue 23 overturns "cannot support" (not enough data): 4 inner iterations up to
    # n=1024, the cap of 200 at n=2048 is the count growing with n
    cells = _c3_cells(lambda n: 4.0)
    cells.loc[cells["n"] == 2048, ["mean_inner_iters", "inner_capped_frac"]] = [200.0, 1.0]
    claim = claims.check_c3(cells)
    assert claim.verdict == claims.CONTRADICTED, claim.evidence


def test_stuck_steps_are_found_from_the_residual_or_the_cap():
    from harness.reporting.metrics import inner_capped_fraction

    steps = pd.DataFrame({"inner_iters": [5, 200, 200, 7],
                          "cg_rel_residual": [0.05, 0.5, 0.09, 0.08]})
    assert inner_capped_fraction(steps, {"max_inner": 200, "tol": 0.1}) == 0.25
    assert inner_capped_fraction(steps.drop(columns="cg_rel_residual"),
                                 {"max_inner": 200}) == 0.5


# --- C4 -----------------------------------------------------------------------------------------

def _c4(pairs: list[tuple[str, str, list[float], list[float]]]):
    """pairs: (sketch status, exact status, sketch losses, exact losses) per seed."""
    cells, rows = [], []
    for seed, (s_status, e_status, s_loss, e_loss) in enumerate(pairs):
        for alg, status, losses in (("gn_sketch", s_status, s_loss),
                                    ("gn_gram", e_status, e_loss)):
            reached = next((i for i, v in enumerate(losses, 1) if v <= 1e-6), None)
            c = cell(alg, 256, seed=seed, status=status, iters=reached)
            cells.append(c)
            rows += [{"cell": c["cell"], "iter": i, "rel_loss": v}
                     for i, v in enumerate([1.0, *losses])]
    return claims.check_c4(frame(cells), frame(rows))


GOOD = [1e-2, 1e-4, 1e-8]


def test_c4_supported_by_three_pairs_that_follow_each_other():
    claim = _c4([("converged", "converged", [2e-2, 2e-4, 1e-8], GOOD)] * 3)
    assert claim.verdict == claims.SUPPORTED, claim.evidence


def test_c4_three_pairs_far_apart_but_at_the_rate_keep_the_guarantee():
    # issue 23 overturns "contradicted": the paper proves a rate, not the trajectory; the
    # 3-decade gap stays as the variant's diagnostic
    claim = _c4([("converged", "converged", [1e-1, 1e-1, 1e-2, 1e-8], GOOD)] * 3)
    assert claim.verdict == claims.SUPPORTED, claim.evidence
    assert "apart from the exact trajectory" in claim.evidence


def test_c4_contradicted_by_three_pairs_far_slower_than_the_rate():
    slow = [0.7 ** (2 * t) for t in range(1, 26)]  # ε at 20 iterations; the bound is 10
    claim = _c4([("converged", "converged", [v * 0.9 for v in slow], GOOD)] * 3)
    assert claim.verdict == claims.CONTRADICTED, claim.evidence


def test_c4_one_pair_of_diverged_runs_is_not_enough():
    diverging = [10.0, 1e3, 1e5]
    claim = _c4([("diverged", "diverged", diverging, diverging)])
    assert claim.verdict == claims.UNDECIDED, claim.evidence
    # nor are three: a diverged exact run is no reference trajectory
    claim = _c4([("diverged", "diverged", diverging, diverging)] * 3)
    assert claim.verdict == claims.UNDECIDED, claim.evidence


def test_c4_a_sketch_run_that_stops_short_of_eps_cannot_support():
    claim = _c4([("max_iters", "converged", [2e-2, 2e-4, 2e-6], GOOD)] * 3)
    assert claim.verdict == claims.UNDECIDED, claim.evidence


# --- C5 -----------------------------------------------------------------------------------------

def _c5(gaps) -> claims.Claim:
    cells = frame([cell("gn_gram", 256, m, ntk_gram_gap=g) for m, g in zip(MS, gaps)])
    return claims.check_c5(cells, pd.DataFrame())


def test_c5_supported_when_the_gap_falls_like_one_over_sqrt_m():
    claim = _c5([3.0 / np.sqrt(m) * (1 + 0.01 * i) for i, m in enumerate(MS)])
    assert claim.verdict == claims.SUPPORTED, claim.evidence


def test_c5_contradicted_when_the_gap_does_not_fall():
    claim = _c5([0.2 * (1 + 0.01 * i) for i in range(len(MS))])
    assert claim.verdict == claims.CONTRADICTED, claim.evidence


def test_c5_very_noisy_data_decide_nothing():
    noise = [3.0, 0.3, 2.5, 0.25, 1.0]
    claim = _c5([3.0 / np.sqrt(m) * e for m, e in zip(MS, noise)])
    assert claim.verdict == claims.UNDECIDED, claim.evidence
    assert "decides nothing" in claim.evidence


def test_c5_needs_five_widths():
    claim = _c5([3.0 / np.sqrt(m) for m in MS[:4]] + [np.nan])
    assert claim.verdict == claims.UNDECIDED, claim.evidence


# --- C6 -----------------------------------------------------------------------------------------

def reached(t: float) -> dict:
    return {"time": t}


def stopped(bound: float) -> dict:
    return {"iters": None, "status": "max_iters", "lower": 20, "time": None,
            "time_lower": bound}


GRID = [(n, m) for n in (256, 1024) for m in (4096, 16384, 65536)]


def _c6(sketch: dict, gram: dict, prediction=None, **kw) -> claims.Claim:
    """sketch/gram: (n, m) -> cell kwargs (reached(t) or stopped(bound))."""
    rows = [cell("gn_sketch", n, m, **kw_) for (n, m), kw_ in sketch.items()]
    rows += [cell("gn_gram", n, m, **kw_) for (n, m), kw_ in gram.items()]
    return claims.check_c6(frame(rows), prediction, **kw)


def _ratio_grid(ratio) -> tuple[dict, dict]:
    """gn_gram takes 1 s everywhere; gn_sketch 1/ratio(n, m)."""
    return ({nm: reached(1.0 / ratio(*nm)) for nm in GRID}, {nm: reached(1.0) for nm in GRID})


SEEDED = [(n, m) for n in (256, 512, 1024) for m in (4096, 8192, 16384, 32768)]


def _seeded(ratio, seeds=(0, 1, 2)) -> claims.Claim:
    """gn_gram takes 1 s everywhere, gn_sketch 1/ratio(n, m, seed), on SEEDED."""
    rows = [cell("gn_sketch", n, m, seed=s, time=1.0 / ratio(n, m, s))
            for (n, m) in SEEDED for s in seeds]
    rows += [cell("gn_gram", n, m, seed=s, time=1.0) for (n, m) in SEEDED for s in seeds]
    return claims.check_c6(frame(rows))


def test_c6_supported_where_the_sketch_surely_wins_by_a_margin_growing_with_n():
    # issue 23 overturns "growing with m/n": the margin grows with n at fixed m/n
    claim = _seeded(lambda n, m, s: 0.02 * n * (1 + 0.05 * s) * (m / n) ** 0.05)
    assert claim.verdict == claims.SUPPORTED, claim.evidence
    assert "(n=1024, m=32768)" in claim.evidence  # the cells are named


def test_c6_a_win_without_growth_in_n_is_no_verdict():
    noise = {4096: 1.3, 8192: 1.0, 16384: 0.9, 32768: 1.2}
    claim = _seeded(lambda n, m, s: 2 * noise[m] * (1.0 if n == 512 else 0.97)
                    * (1 + 0.02 * s))
    assert claim.verdict == claims.UNDECIDED, claim.evidence
    assert "not established" in claim.evidence


def test_c6_contradicted_only_with_a_cost_model_predicting_no_win():
    sketch, gram = _ratio_grid(lambda n, m: 0.5)
    assert _c6(sketch, gram).verdict == claims.UNDECIDED  # no model: a loss decides nothing
    win = _c6(sketch, gram, {"predicted_win": True, "text": "wins at m ≥ 2^20"})
    assert win.verdict == claims.UNDECIDED and "beyond" in win.evidence
    lose = _c6(sketch, gram, {"predicted_win": False, "text": "no win within 14 GB"})
    assert lose.verdict == claims.CONTRADICTED, lose.evidence


def test_c6_a_censored_gn_gram_at_one_size_is_no_win():
    # gn_gram stopped after 1 s without reaching ε; a 100 s gn_sketch run did reach it
    claim = _c6({(256, 4096): reached(100.0)}, {(256, 4096): stopped(1.0)})
    assert claim.verdict == claims.UNDECIDED, claim.evidence


def _comparison(sketch: dict, gram: dict, n: int, m: int) -> pd.Series:
    rows = [cell("gn_sketch", *nm, **k) for nm, k in sketch.items()]
    rows += [cell("gn_gram", *nm, **k) for nm, k in gram.items()]
    comp = crossover.sketch_vs_exact(frame(rows))
    return comp[(comp["n"] == n) & (comp["m"] == m)].iloc[0]


def test_c6_censoring_decides_a_cell_only_on_the_right_side_of_one():
    sketch, gram = _ratio_grid(lambda n, m: 0.3 * (m / n) ** 0.4)
    # gn_gram stopped at 1 s where gn_sketch took 100: open, never a win
    sketch[(1024, 65536)], gram[(1024, 65536)] = reached(100.0), stopped(1.0)
    row = _comparison(sketch, gram, 1024, 65536)
    assert row["kind"] == "lower bound" and row["wins"] is None
    # gn_gram stopped at 50 s where gn_sketch took 10: surely a win (ratio ≥ 5)
    gram[(1024, 65536)], sketch[(1024, 65536)] = stopped(50.0), reached(10.0)
    row = _comparison(sketch, gram, 1024, 65536)
    assert bool(row["wins"]) and row["ratio"] == 5.0
    # gn_sketch stopped at 2 s where gn_gram took 1: surely a loss (ratio ≤ 0.5)
    sketch[(1024, 65536)], gram[(1024, 65536)] = stopped(2.0), reached(1.0)
    row = _comparison(sketch, gram, 1024, 65536)
    assert row["kind"] == "upper bound" and row["wins"] is not None and not row["wins"]


def test_c6_needs_a_grid_and_enough_cells():
    one_m = {(n, 4096): reached(0.1) for n in (256, 512, 1024)}
    claim = _c6(one_m, {k: reached(1.0) for k in one_m})
    assert claim.verdict == claims.UNDECIDED and "no (n, m) grid" in claim.evidence
    few = {(n, m): reached(0.1) for n in (256, 512) for m in (4096, 8192)}  # a 2×2 grid
    claim = _c6(few, {k: reached(1.0) for k in few})
    assert claim.verdict == claims.UNDECIDED and "needs 6" in claim.evidence


def test_c6_ranks_the_paper_variant_under_its_own_name():
    rows = [cell("gn_sketch", 256, 4096, time=2.0, preset="gn_sketch"),
            cell("gn_sketch", 256, 4096, time=3.0, preset="gn_sketch_paper", seed=1),
            cell("gn_gram", 256, 4096, time=1.0, preset="gn_gram"),
            cell("gn_gram", 256, 8192, time=1.0, preset="gn_gram"),
            cell("gn_sketch", 256, 8192, time=0.5, preset="gn_sketch_paper"),
            cell("gn_gram", 512, 4096, time=1.0, preset="gn_gram"),
            cell("gn_gram", 512, 8192, time=1.0, preset="gn_gram")]
    ranked = crossover.rankings(frame(rows), "time_to_target")
    r = ranked[(ranked["n"] == 256) & (ranked["m"] == 4096)].iloc[0]
    assert (r["winner"], r["runner_up"], r["margin"]) == ("gn_gram", "gn_sketch", 2.0)
    r = ranked[(ranked["n"] == 256) & (ranked["m"] == 8192)].iloc[0]
    assert r["winner"] == "gn_sketch_paper" and r["decided"]


def test_c6_a_stopped_run_below_the_winner_leaves_the_cell_undecided():
    rows = [cell("gn_sketch", 256, 4096, time=2.0), cell("gn_gram", 256, 4096, **stopped(1.0)),
            *[cell("gn_gram", n, m, time=1.0) for n, m in ((256, 8192), (512, 4096),
                                                          (512, 8192))]]
    ranked = crossover.rankings(frame(rows), "time_to_target")
    r = ranked[ranked["n"] == 256].iloc[0]
    assert r["winner"] == "gn_sketch" and not r["decided"] and r["margin_is_bound"]

# --- time per iteration -------------------------------------------------------------------------

def _loaded(step_times: dict[str, list[float]]) -> Loaded:
    runs, rows = [], []
    for name, times in step_times.items():
        alg = name.split(":")[0]
        runs.append({"cell": name, "algorithm": alg, "status": "converged", "data_ok": True,
                     "setup_time_s": 0.0, "n": 256, "m": 2048, "hyperparameters": "{}"})
        total = 0.0
        for it, t in enumerate([0.0, *times]):
            total += t
            rows.append({"cell": name, "iter": it, "step_time_s": t, "time_s": total,
                         "rel_loss": 10.0 ** -it,
                         "refreshed": float(t > 0.005) if alg == "gn_sketch" else np.nan})
    return Loaded(pd.DataFrame(runs), pd.DataFrame(rows))


def test_time_per_iteration_is_reported_two_ways_with_the_refreshes_amortised():
    # adaptive refresh: a 20 ms refresh step, then four 1 ms steps that reuse the factor
    cells = cell_metrics(_loaded({"gn_sketch:a": [0.020, 0.001, 0.001, 0.001, 0.001]}))
    row = cells.iloc[0]
    assert row["time_per_iter_median_s"] == pytest.approx(0.001)
    assert row["time_per_iter_amortised_s"] == pytest.approx(0.024 / 5)  # step 1 counts
    assert row["refresh_frac"] == pytest.approx(0.2)


def test_crossover_per_iteration_uses_the_amortised_time():
    # gn_sketch's steady step (1 ms) is below gn_gram's 2 ms, its amortised step (4.8 ms) not
    rows = []
    for n in (256, 512, 1024):
        rows.append(cell("gn_sketch", n, tpi=0.001, time=1.0))
        rows[-1]["time_per_iter_amortised_s"] = 0.0048
        rows.append(cell("gn_gram", n, tpi=0.002, time=0.5))
    table = tables.crossover(frame(rows))
    assert table["per iteration (amortised)"].tolist() == ["not reached in the measured range"]


def test_crossover_to_target_respects_a_censored_gn_gram():
    rows = [cell("gn_sketch", 256, time=100.0, tpi=1.0), cell("gn_gram", 256, tpi=1.0,
                                                             **stopped(1.0))]
    assert tables.crossover(frame(rows))["to target"].tolist() == [
        "not reached in the measured range"]
    rows = [cell("gn_sketch", 256, time=10.0, tpi=1.0), cell("gn_gram", 256, tpi=1.0,
                                                            **stopped(50.0))]
    assert "> 50 s (stopped)" in tables.crossover(frame(rows))["to target"].iloc[0]


# --- the registry -------------------------------------------------------------------------------

def _shown(value) -> list[str]:
    """How a constant's value is written in a rule: a number as %g, names one by one."""
    if isinstance(value, dict):
        return [str(k) for k in value] + [t for v in value.values() for t in _shown(v)]
    if isinstance(value, (tuple, list)):
        return [str(v) for v in value]
    return [f"{value:g}"]


def _fields(template: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_claim_is_registered_with_a_rule_written_from_its_constants():
    import dataclasses

    assert list(claims.REGISTRY)[:6] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    for cid, spec in claims.REGISTRY.items():
        assert spec.statement and spec.constants, cid
        # every field of the rule is a declared constant, and every constant is written
        assert _fields(spec.template) == set(spec.constants), cid
        for name, value in spec.constants.items():
            for text in _shown(value):
                assert text in spec.rule, (cid, name, text)
            # and the text follows the constant: another value gives another rule
            other = {int: 987, float: 98.765}.get(type(value), ("zz_other",))
            if isinstance(value, dict):
                other = {"zz_key": ("zz_term",)}
            changed = dataclasses.replace(spec, constants={**spec.constants, name: other})
            assert all(t in changed.rule for t in _shown(other)), (cid, name)


def test_the_rules_use_the_constants_the_checks_read():
    spec = claims.REGISTRY
    assert spec["C1"].constants["C1_SLACK"] == claims.C1_SLACK
    assert spec["C1"].constants["MIN_SIZES"] == fits.MIN_SIZES
    assert spec["C2"].constants["C2_METHODS"] == claims.C2_METHODS
    assert spec["C4"].constants["C4_MIN_PAIRS"] == claims.C4_MIN_PAIRS
    assert spec["C6"].constants["C6_MIN_NS"] == claims.C6_MIN_NS
    assert spec["C6"].constants["EXACT_BASELINES"] == crossover.EXACT_BASELINES
    # a check called directly returns its claim, with the registered statement and rule
    claim = claims.check_c4(frame([]), frame([]))
    assert (claim.id, claim.rule, claim.statement) == ("C4", spec["C4"].rule,
                                                         spec["C4"].statement)
    assert "needs 3" in claim.evidence


TOY_MIN_CELLS = 2


@pytest.fixture
def toy_claim():
    """A claim added by one registration; removed again after the test."""
    @claims.claim("C99", statement="a toy claim", rule="supported with ≥{TOY_MIN_CELLS} cells",
                  constants={"TOY_MIN_CELLS": TOY_MIN_CELLS},
                  needs=lambda cells: (f"{TOY_MIN_CELLS} cells", f"{len(cells)} cells",
                                       len(cells) >= TOY_MIN_CELLS))
    def check_toy(cells: pd.DataFrame) -> tuple[str, str]:
        verdict = claims.SUPPORTED if len(cells) >= TOY_MIN_CELLS else claims.UNDECIDED
        return verdict, f"{len(cells)} cells"

    yield check_toy
    claims.REGISTRY.pop("C99")


def test_a_claim_is_one_registration(toy_claim):
    cells = frame([cell("gd", 64), cell("gd", 128)])
    got = {c.id: c for c in claims.check_claims(cells, pd.DataFrame(), None, None)}
    assert list(got)[-1] == "C99"
    assert got["C99"].verdict == claims.SUPPORTED and got["C99"].rule == "supported with ≥2 cells"
    assert toy_claim(cells.head(1)).verdict == claims.UNDECIDED
    table = tables.decidable(cells, pd.DataFrame()).set_index("claim")
    assert table.loc["C99", "can decide"] == "yes"


def test_a_bad_registration_fails_at_once():
    with pytest.raises(KeyError):
        claims.claim("C98", statement="s", rule="above {UNDECLARED}")(lambda cells: None)
    with pytest.raises(TypeError, match="not claim inputs"):
        claims.claim("C98", statement="s", rule="r")(lambda table: None)
    with pytest.raises(ValueError, match="twice"):
        claims.claim("C1", statement="s", rule="r")(lambda cells: None)
    assert "C98" not in claims.REGISTRY
