"""The cost model (harness.costmodel): hand-computed formulas on a synthetic profile,
monotonicity, the frontier where the answer is known, the JSON round trip, ``nlt-bench
--calibrate --quick`` and its bad-input errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from algorithms import ALGORITHMS
from harness import costmodel
from harness.common.errors import ConfigError
from harness.costmodel import Profile, fit_kernel, frontier, predict
from harness.costmodel.pricing import CG_VECTOR_PASSES
from harness.costmodel.profile import size_curve
from harness.perf import bench, calibrate
from harness.sketches import SKETCHES

DATASHEET = Path(__file__).resolve().parent.parent / "reports" / "profiles" / \
    "h100_datasheet.json"
#: A calibration's ladder curves: every method on the two-layer model, and on the MLP every
#: method but kfac (which needs the two-layer structure)
METHODS = costmodel.modelled_methods()
LADDER_KEYS = set(METHODS) | {f"{m}@mlp" for m in METHODS if m != "kfac"}

# Only flops cost (1e9 flop/s); elementwise passes and triangular solves at 1e9 elements/s;
# element traffic of GEMMs free; no fixed costs, no int8 routes.
UNIT = Profile.synthetic(flops=1e9)
# Only flops cost: elementwise passes, triangular solves, Hadamard passes free.
FLOPS_ONLY = Profile.synthetic(flops=1e9, elementwise={"rates": {"elements": None}},
                               trsv={"rates": {"elements": None}},
                               fwht={"rates": {"elements": None, "flops": None}})


def test_gn_gram_by_hand():
    n, m, d = 10, 100, 2
    t = predict("gn_gram", {}, n, m, d, UNIT)
    forward = 2 * n * m * d + 3 * n * m + 2 * n  # X Wᵀ flops; relu_, ·a, sign_; f − y
    gram = 2 * n * n * m + 2 * n * n * d + 2 * n * n  # D Dᵀ, X Xᵀ, ⊙ and /m
    solve = n**3 / 3 + 2 * n * n  # Cholesky, two triangular solves
    update = n * d + 2 * n * m * d + 3 * m * d  # g ⊙ X, Dᵀ(·), scale and W −= …
    assert t["forward"] == pytest.approx(forward / 1e9)
    assert t["gram"] == pytest.approx(gram / 1e9)
    assert t["solve"] == pytest.approx(solve / 1e9)
    assert t["update"] == pytest.approx(update / 1e9)
    assert t["total"] == pytest.approx((forward + gram + solve + update) / 1e9)
    assert t["total"] == pytest.approx(32773.3333e-9, rel=1e-6)


def test_gd_and_gn_cg_by_hand():
    n, m, d = 10, 100, 2
    gd = predict("gd", {"lr": 0.1}, n, m, d, UNIT)
    assert gd["gradient"] == pytest.approx((n * d + 2 * n * m * d + 2 * m * d) / 1e9)
    assert gd["update"] == pytest.approx(m * d / 1e9)
    cg = predict("gn_cg", {}, n, m, d, UNIT, inner_iters=3)
    per_iter = 2 * n * d + 2 * (2 * n * m * d) + n + CG_VECTOR_PASSES * n
    assert cg["solve"] == pytest.approx(3 * per_iter / 1e9)


def test_gn_sketch_phases_and_adaptive_amortisation():
    n, m, d = 16, 64, 4
    params = {"sketch_ratio": 2.0, "factor": "qr", "refresh": "always"}
    always = predict("gn_sketch", params, n, m, d, FLOPS_ONLY, inner_iters=2)
    s = 2 * n
    assert always["factor"] == pytest.approx((2 * s * n * n - 2 * n**3 / 3) / 1e9)
    assert always["solve"] == pytest.approx(2 * 2 * (2 * n * m * d) / 1e9)
    adaptive = predict("gn_sketch", {**params, "refresh": "adaptive"}, n, m, d, FLOPS_ONLY,
                       inner_iters=2, refresh_every=4)
    assert adaptive["factor"] == pytest.approx(always["factor"] / 4)
    assert adaptive["sketch"] == pytest.approx(always["sketch"] / 4)
    chol = predict("gn_sketch", {**params, "factor": "cholesky_qr"}, n, m, d, FLOPS_ONLY,
                   inner_iters=2)
    assert chol["factor"] == pytest.approx((2 * n * n * s + n**3 / 3) / 1e9)


def test_every_method_predicts_positive_phases():
    for name in METHODS:
        t = predict(name, {}, 64, 512, 8, UNIT)
        assert t["total"] == pytest.approx(sum(v for k, v in t.items() if k != "total"))
        assert all(v >= 0 for v in t.values()) and t["total"] > 0, name


def test_int8_route_is_chosen_where_faster():
    fast = Profile.synthetic(flops=1e9, int8_speedup=4.0)
    slow = Profile.synthetic(flops=1e9, int8_speedup=0.5)
    assert costmodel.predict_routes("gn_gram", {}, 64, 512, 8, fast)["pattern_gram"] == "int8"
    assert costmodel.predict_routes("gn_gram", {}, 64, 512, 8, slow)["pattern_gram"] == "float"
    forced = costmodel.predict_routes("gn_gram", {}, 64, 512, 8, slow, kernels_mode="int8")
    assert forced["pattern_gram"] == "int8"
    assert (predict("gn_gram", {}, 64, 512, 8, fast)["gram"]
            < predict("gn_gram", {}, 64, 512, 8, slow)["gram"])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_monotone_in_n_and_m(name):
    prof = Profile.synthetic(flops=1e10, elements=1e9, overhead_s=1e-6)
    by_n = [predict(name, {}, n, 4096, 16, prof)["total"] for n in (64, 128, 256, 512)]
    by_m = [predict(name, {}, 256, m, 16, prof)["total"] for m in (1024, 2048, 4096, 8192)]
    assert all(b >= a for a, b in zip(by_n, by_n[1:])), by_n  # sgd/ggn: batch fixed
    assert all(b > a for a, b in zip(by_m, by_m[1:])), by_m


def test_frontier_where_the_answer_is_known():
    # FLOPS_ONLY, d = 1, one CG iteration, s = n (ratio 1):
    #   gn_gram   = 2nm + (2n²m + 2n²) + n³/3 + 2nm
    #   gn_sketch = 2nm + (2n·n² − 2n³/3) + 4nm + 2nm
    # gn_sketch is faster iff m (2n² − 4n) > n³ − 2n², i.e. m > n/2.
    params = {"gn_sketch": {"sketch_ratio": 1.0, "factor": "qr", "refresh": "always"}}
    table = frontier(FLOPS_ONLY, [64, 128], range(1, 200), 1, params=params,
                     inner_iters={"gn_sketch": 1},
                     outer_iters={"gn_sketch": 2, "gn_gram": 1})
    assert list(table["m_per_iteration"]) == [33, 65]
    # to ε with 2 sketch iterations against 1: m (2n² − 12n) > 7n³/3 − 2n²
    expected = [math.floor((7 * n**3 / 3 - 2 * n**2) / (2 * n**2 - 12 * n)) + 1
                for n in (64, 128)]
    assert list(table["m_to_target"]) == expected


def test_frontier_stops_at_the_memory_limit():
    params = {"gn_sketch": {"sketch_ratio": 1.0}}
    table = frontier(FLOPS_ONLY, [64], range(1, 200), 1, params=params,
                     inner_iters={"gn_sketch": 1}, memory_bytes=1.0)
    assert table["m_per_iteration"].iloc[0] is None
    assert table["m_max_fits"].iloc[0] is None
    with pytest.raises(ConfigError, match="outer_iters"):
        frontier(FLOPS_ONLY, [64], [64], 1, outer_iters={"gn_sketch": 2})


def test_fit_recovers_overhead_and_rate():
    points = [{"elements": e, "flops": 0.0, "seconds": 1e-5 + e / 2e9}
              for e in (1e3, 1e5, 1e7)]
    fit = fit_kernel(points, ("elements",))
    assert fit.overhead_s == pytest.approx(1e-5, rel=1e-3)
    assert fit.rates["elements"] == pytest.approx(2e9, rel=1e-3)


def test_profile_round_trip(tmp_path):
    prof = Profile.synthetic(flops=3e9, elements=2e9, overhead_s=1e-6, int8_speedup=2.0,
                             memory_bytes=2**30)
    path = prof.save(tmp_path / "p.json")
    back = Profile.load(path)
    assert back.to_dict() == json.loads(json.dumps(prof.to_dict()))
    assert back.memory_bytes == 2**30
    assert predict("gn_sketch", {}, 128, 1024, 16, back) == predict("gn_sketch", {}, 128, 1024,
                                                                    16, prof)


def test_datasheet_profile_is_labelled_and_usable():
    prof = Profile.load(DATASHEET)
    assert prof.data["source"] == costmodel.DATASHEET_SOURCE
    assert prof.memory_bytes == 80e9
    t = predict("gn_gram", {}, 4096, 65536, 16, prof)
    assert 0 < t["total"] < 1.0
    table = frontier(prof, [1024], [2**k for k in range(8, 20)], 16)
    assert table["m_max_fits"].iloc[0] is not None


def test_predicted_vs_measured_rows_and_summary():
    prof = Profile.synthetic(flops=1e9, elements=1e9)
    cells = []
    for alg, factor in (("gd", 1.0), ("gn_gram", 2.0), ("gn_cg", 1.2)):
        pred = predict(alg, {}, 64, 512, 8, prof, inner_iters=5)["total"]
        cells.append({"algorithm": alg, "n": 64, "m": 512, "d": 8, "hyperparameters": "{}",
                      "time_per_iter_s": pred * factor, "mean_step_time_s": pred * factor,
                      "mean_inner_iters": 5.0 if alg == "gn_cg" else float("nan")})
    cells.append({"algorithm": "not_a_method", "n": 1, "m": 1, "d": 1, "time_per_iter_s": 1.0})
    rows = costmodel.predicted_vs_measured(pd.DataFrame(cells), prof)
    assert list(rows["algorithm"]) == ["gd", "gn_gram", "gn_cg"]
    # fed the cells' measured k (5), the prediction is the one the cells were made from ...
    assert rows["ratio_measured_k"].tolist() == pytest.approx([1.0, 0.5, 1 / 1.2])
    # ... the prediction itself uses the predicted k (no ladder here: gn_cg's default)
    k = costmodel.predicted_inner("gn_cg", costmodel.method_params("gn_cg", {}), 64, prof)
    assert rows["inner_iters_pred"].iloc[2] == pytest.approx(k) and k != 5.0
    assert rows["ratio"].iloc[2] == pytest.approx(
        predict("gn_cg", {}, 64, 512, 8, prof, inner_iters=k)["total"]
        / cells[2]["time_per_iter_s"])
    rows["ratio"] = rows["ratio_measured_k"]
    summary = costmodel.ratio_summary(rows)
    assert summary["cells"] == 3 and summary["within"] == 2
    assert summary["fraction_within"] == pytest.approx(2 / 3)
    assert summary["worst_ratio"] == pytest.approx(0.5)
    assert summary["median_ratio"] == pytest.approx(1 / 1.2)


def test_predicted_vs_bench_report():
    prof = Profile.synthetic(flops=1e9, elements=1e9)
    report = {"meta": {"dtype": "float32"}, "per_iteration": {
        "n": 32, "m": 256, "d": 8, "methods": {
            "gd": {"seconds": 1e-3, "inner_iters": [None]},
            "gn_sketch adaptive": {"seconds": 2e-3, "steps": 3, "inner_iters": [3, 3, 3],
                                   "refreshed": [1, 0, 0]},
            "kfac": {"note": "skipped"}}}}
    rows = costmodel.predicted_vs_bench(report, prof)
    assert list(rows["algorithm"]) == ["gd", "gn_sketch"]
    assert (rows["ratio"] > 0).all()


def test_bad_inputs():
    with pytest.raises(ConfigError, match="Unknown method"):
        predict("newton_magic", {}, 10, 10, 2, UNIT)
    with pytest.raises(ConfigError, match="Unknown parameter 'sketchratio'"):
        predict("gn_sketch", {"sketchratio": 2}, 10, 10, 2, UNIT)
    with pytest.raises(ConfigError, match="sketch"):
        predict("gn_sketch", {"sketch": "nope"}, 10, 10, 2, UNIT)
    with pytest.raises(ConfigError, match="n must be"):
        predict("gd", {}, 0, 10, 2, UNIT)
    with pytest.raises(ConfigError, match="does not exist"):
        Profile.load("/nonexistent/profile.json")


def test_cli_calibrate_quick_writes_a_valid_profile(tmp_path, capsys):
    out = tmp_path / "prof.json"
    bench.main(["--calibrate", "--quick", "--calibrate-dtypes", "float32", "--out", str(out)])
    prof = Profile.load(out)
    data = prof.data
    # one dtype measured: the other is refused by name, never priced from nothing
    assert set(prof.fits) == {"float32"}
    with pytest.raises(ConfigError, match="float64"):
        predict("gn_sketch", {}, 256, 2048, 16, prof, dtype="float64")
    for key in ("device", "device_name", "cpu", "threads", "torch", "git_commit", "date",
                "memory_bytes", "source"):
        assert key in data, key
    assert data["quick"] is True and data["device"] == "cpu"
    assert set(costmodel.kernel_table()) - {"mm_int8", "rmm_int8", "gram_int8"} <= set(
        prof.fits["float32"])
    for fit in prof.fits["float32"].values():
        assert fit.overhead_s >= 0 and any(r for r in fit.rates.values())
    assert {"pattern_gram", "pattern_mm", "pattern_rmm"} <= set(data["routes"]["float32"])
    assert set(data["phase_curves"]["float32"]) == LADDER_KEYS
    assert {"sketch:tensor_srht", "factor:qr", "factor:cholesky_qr", "solve"} <= set(
        data["phase_curves"]["float32"]["gn_sketch"])
    assert data["ladder"]["sizes"] == [list(x) for x in calibrate.QUICK_LADDER]
    assert predict("gn_sketch", {}, 256, 2048, 16, prof)["total"] > 0
    # k and f: fitted on the ladder and the inner ladder, stored, no note
    model = costmodel.inner_model(prof)
    assert {"gn_sketch", "gn_sketch:tensor_srht", "gn_cg"} <= set(model.coef)
    assert model.drift > 0 and 0 <= model.rebuild <= 1
    assert data["inner_ladder"]["adaptive_runs"] and not any(
        n.startswith("no inner-iteration model") for n in prof.notes)
    assert "profile written to" in capsys.readouterr().out


def test_cli_predict_prints_and_missing_profile_exits_2(tmp_path, capsys):
    bench.main(["--predict", str(DATASHEET), "--quick"])
    out = capsys.readouterr().out
    assert "gn_sketch" in out and "smallest m" in out
    with pytest.raises(SystemExit) as exc:
        bench.main(["--predict", str(tmp_path / "missing.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nlt-bench: error:") and "does not exist" in err
    assert len(err.splitlines()) == 1


def test_runner_skips_a_cell_predicted_to_outlast_its_budget(tmp_path):
    """cost_profile: one step predicted above time_budget_s is skipped with the prediction;
    a fast prediction runs; a missing profile file is a one-line ConfigError."""
    from harness.execution.config import resolve
    from tests.helpers import compose_cfg, run_in_process

    slow = Profile.synthetic(flops=1.0, elements=1.0)  # one flop a second
    slow.data.update(device_name="slow test machine", date="2026-01-01")
    fast = Profile.synthetic(flops=1e15, elements=1e15)
    fast.data.update(device_name="fast test machine", date="2026-01-01")
    paths = {k: p.save(tmp_path / f"{k}.json") for k, p in (("slow", slow), ("fast", fast))}
    small = ("algorithm=gn_gram", "data.n=16", "model.m=32", "time_budget_s=5")
    store = tmp_path / "store"
    outcome, run, _ = run_in_process(store, *small, f"cost_profile={paths['slow']}")
    assert outcome.status == "skipped" and "cost model predicts" in run["reason"]
    assert run["predicted_step_time_s"] > 5
    outcome, run, _ = run_in_process(store, *small, f"cost_profile={paths['fast']}",
                                     "force=true")
    assert outcome.status == "converged" and run["predicted_step_time_s"] < 5
    with pytest.raises(ConfigError, match="cost_profile"):
        resolve(compose_cfg(*small, f"cost_profile={tmp_path / 'none.json'}"))


# --- size curves and fresh buffers (the model's size dependence) ------------------------------


def test_size_curve_is_measured_over_fitted_interpolated_in_log_log():
    fit = costmodel.Fit(0.0, {"elements": 1e9})  # 1 ns an element on the straight line
    # measured: at 1e3 as the line, at 1e5 twice as slow (cache), at 1e7 eight times (memory)
    points = [{"elements": x, "seconds": x * 1e-9 * r} for x, r in ((1e3, 1), (1e5, 2),
                                                                   (1e7, 8))]
    fit.curve = size_curve(fit, points)
    assert fit.curve == [(pytest.approx(1e3), pytest.approx(1.0)),
                         (pytest.approx(1e5), pytest.approx(2.0)),
                         (pytest.approx(1e7), pytest.approx(8.0))]
    assert fit.factor(1e4) == pytest.approx(2**0.5)  # halfway in log size: √2
    assert fit.factor(1e6) == pytest.approx(4.0)
    assert fit.factor(10.0) == pytest.approx(1.0) and fit.factor(1e9) == pytest.approx(8.0)
    assert fit.seconds(elements=1e6) == pytest.approx(1e6 * 1e-9 * 4.0)
    assert fit.base_seconds(elements=1e6) == pytest.approx(1e-3)


def test_size_curve_merges_close_sizes_by_geometric_mean():
    fit = costmodel.Fit(0.0, {"elements": 1e9, "flops": None})
    points = [{"elements": 1000.0, "flops": 0.0, "seconds": 1e-6 * 2},
              {"elements": 1200.0, "flops": 0.0, "seconds": 1.2e-6 * 8}]
    (size, factor), = size_curve(fit, points)
    assert size == pytest.approx(math.sqrt(1000 * 1200)) and factor == pytest.approx(4.0)


def test_fit_kernel_curve_corrects_a_line_that_cannot_bend():
    # 1 ns an element up to 1e5, 4 ns beyond (out of cache): no straight line fits both
    points = [{"elements": x, "seconds": x * (1e-9 if x <= 1e5 else 4e-9)}
              for x in (1e3, 1e4, 1e5, 1e6, 1e7)]
    fit = fit_kernel(points, ("elements",))
    for p in points:
        assert fit.seconds(elements=p["elements"]) == pytest.approx(p["seconds"], rel=1e-6)
    flat = fit_kernel(points, ("elements",), curve=False)
    assert not flat.curve and flat.seconds(elements=1e7) < 0.9 * 4e-2


def test_fault_anchored_at_the_largest_buffer_and_charged_in_forward():
    # 0 below 32 MB (the allocator reuses), 0.25 ms a MB above: anchored at the largest
    points = [{"bytes": b, "seconds": max(b / 4e9 if b > 2**25 else 0.0, 1e-7)}
              for b in (2**20, 2**24, 2**26, 2**30)]
    fault = fit_kernel(points, ("bytes",), anchor=True)
    assert fault.overhead_s == 0 and fault.rates["bytes"] == pytest.approx(4e9)
    assert fault.seconds(bytes=2**30) == pytest.approx(2**30 / 4e9)
    assert fault.seconds(bytes=2**20) == pytest.approx(1e-7)
    n, m, d = 1024, 65536, 16
    plain = Profile.synthetic(flops=1e9)
    faulting = Profile.synthetic(flops=1e9, fault=fault.as_dict())
    extra = costmodel.Costs(faulting, "float32").fresh(n * m)
    assert extra == pytest.approx(fault.seconds(bytes=4 * n * m))
    assert (predict("gd", {}, n, m, d, faulting)["forward"]
            == pytest.approx(predict("gd", {}, n, m, d, plain)["forward"] + extra))
    assert costmodel.Costs(faulting, "float64").fresh(n * m) == pytest.approx(
        fault.seconds(bytes=8 * n * m))


def test_old_profile_without_curves_or_fault_loads_with_notes(tmp_path):
    old = Profile.synthetic(flops=1e9, elements=1e9, overhead_s=1e-6).to_dict()
    for table in old["kernels"].values():
        assert "fault" not in table and all("curve" not in f for f in table.values())
    prof = Profile.load(Profile(old).save(tmp_path / "old.json"))
    assert any("no fault kernel" in note for note in prof.notes)
    assert any("no size curve" in note for note in prof.notes)
    assert costmodel.Costs(prof, "float32").fresh(10**9) == 0.0
    assert predict("gd", {}, 64, 512, 8, prof)["total"] > 0


def test_committed_profiles_still_predict_with_their_fallbacks_noted():
    for path in sorted(DATASHEET.parent.glob("*.json")):
        prof = Profile.load(path)
        if not prof.is_datasheet:  # a calibration: every kernel, the ladder of its day
            assert set(costmodel.kernel_table()) - {"mm_int8", "rmm_int8", "gram_int8"} <= set(
                prof.fits["float32"])
            laddered = set(prof.data["phase_curves"]["float32"])
            assert laddered <= LADDER_KEYS, laddered - LADDER_KEYS
            # methods modelled after the calibration are named in its one note
            late = sorted(LADDER_KEYS - laddered)
            expected = [f"float32: no step ladder for {', '.join(late)} (modelled after this "
                        f"calibration: kernels only for them)"] if late else []
            assert [n for n in prof.notes if n.startswith("float32")] == expected, path.name
        for name in METHODS:
            assert predict(name, {}, 1024, 65536, 16, prof)["total"] > 0, (path.name, name)
    assert Profile.load(DATASHEET).notes  # a datasheet: no curves, no fault kernel


# --- the step ladder: per-phase corrections measured on each method's own steps -----------------


def test_curve_factor_interpolates_in_log_log_and_holds_the_ends():
    curve = [[1e-6, 4.0], [1e-4, 1.0]]
    assert costmodel.curve_factor(curve, 1e-7) == 4.0  # held below the first point
    assert costmodel.curve_factor(curve, 1e-2) == 1.0  # held above the last
    assert costmodel.curve_factor(curve, 1e-5) == pytest.approx(2.0)  # log-log midpoint
    assert costmodel.curve_factor([], 1e-5) == 1.0
    assert costmodel.curve_factor(curve, 0.0) == 1.0


def test_ladder_factor_holds_the_excess_as_seconds_above_the_top():
    curve = [[1e-6, 4.0], [1e-4, 3.0]]
    # within and below the ladder: as curve_factor
    assert costmodel.ladder_factor(curve, 1e-5) == costmodel.curve_factor(curve, 1e-5)
    assert costmodel.ladder_factor(curve, 1e-7) == 4.0
    assert costmodel.ladder_factor(curve, 1e-4) == pytest.approx(3.0)
    # above the top, 2e-4 s of excess per occurrence, whatever the work
    for x in (2e-4, 1e-3, 1e-1):
        assert costmodel.ladder_factor(curve, x) * x == pytest.approx(x + 2e-4)
    assert costmodel.ladder_factor(curve, 1e3) == pytest.approx(1.0, abs=1e-6)
    # a top below 1 (the kernels overpriced there): the deficit, too, is seconds
    low = [[1e-4, 0.5]]
    assert costmodel.ladder_factor(low, 1e-2) * 1e-2 == pytest.approx(1e-2 - 0.5e-4)
    assert costmodel.ladder_factor([], 1.0) == 1.0 and costmodel.ladder_factor(curve, 0.0) == 1.0


def test_predict_holds_a_ladder_excess_as_seconds_beyond_the_ladder():
    n, m, d = 256, 2048, 16
    fwd = predict("gd", {}, n, m, d, UNIT)["forward"]
    # the ladder's top is at a hundredth of this forward pass, factor 3 there: 2 % more
    prof = _with_curves(UNIT, {"gd": {"forward": [[fwd / 1000, 5.0], [fwd / 100, 3.0]]}})
    assert predict("gd", {}, n, m, d, prof)["forward"] == pytest.approx(fwd * 1.02)


def test_ladder_points_at_one_cost_merge_by_geometric_mean():
    pts = [(1e-3, 2.0), (1.2e-3, 8.0), (1e-1, 1.0), (5e-6, 3.0)]
    got = [v for point in costmodel.merged_curve(pts) for v in point]
    assert got == pytest.approx([5e-6, 3.0, math.sqrt(1.2e-6), 4.0, 1e-1, 1.0])


def test_phase_keys_name_the_operation_a_hyperparameter_picks():
    def key(method, params, phase):
        return ALGORITHMS.get(method).phase_key(params, phase)

    assert key("gn_sketch", {"sketch": "srht"}, "sketch") == "sketch:srht"
    assert key("gn_sketch", {"factor": "qr"}, "factor") == "factor:qr"
    assert key("gn_exact", {"jacobian": "autograd"}, "jacobian") == "jacobian:autograd"
    assert key("gn_sketch", {"sketch": "srht"}, "solve") == "solve"
    assert key("gd", {}, "forward") == "forward"


def _with_curves(prof: Profile, curves: dict) -> Profile:
    return Profile({**prof.data, "phase_curves": {"float32": curves}})


def test_predict_scales_each_phase_by_its_curve_at_its_cost_per_occurrence():
    n, m, d = 256, 2048, 16
    base = predict("gd", {}, n, m, d, UNIT)
    fwd = base["forward"]
    # forward: factor 3 up to its own cost, 1 from ten times it; gradient: no curve
    prof = _with_curves(UNIT, {"gd": {"forward": [[fwd, 3.0], [10 * fwd, 1.0]]}})
    got = predict("gd", {}, n, m, d, prof)
    assert got["forward"] == pytest.approx(3 * fwd)
    assert got["gradient"] == base["gradient"] and got["update"] == base["update"]
    assert got["total"] == pytest.approx(sum(v for k, v in got.items() if k != "total"))
    # an inner solve is looked up per CG iteration: ten iterations of one cost
    one = predict("gn_cg", {}, n, m, d, UNIT, inner_iters=1.0)["solve"]
    ten = predict("gn_cg", {}, n, m, d, UNIT, inner_iters=10.0)["solve"]
    per = ten / 10
    prof = _with_curves(UNIT, {"gn_cg": {"solve": [[per / 1.01, 2.0], [per * 1000, 1.0]]}})
    assert predict("gn_cg", {}, n, m, d, prof, inner_iters=10.0)["solve"] == pytest.approx(
        2 * ten, rel=1e-3)
    assert one > 0
    # an amortised build is looked up per build, and the sketch's curve is its sketch's own
    p = {"refresh": "adaptive"}
    plain = predict("gn_sketch", p, n, m, d, UNIT, refresh_every=4.0)
    build = 4.0 * plain["sketch"]
    prof = _with_curves(UNIT, {"gn_sketch": {"sketch:tensor_srht": [[build, 5.0]],
                                             "sketch:srht": [[build, 50.0]]}})
    assert predict("gn_sketch", p, n, m, d, prof, refresh_every=4.0)["sketch"] == \
        pytest.approx(5 * plain["sketch"])


def test_a_sketch_kernel_prices_the_sketch_where_the_profile_has_one():
    n, m, d, s = 256, 1000, 16, 512
    work = SKETCHES.get("tensor_srht").work(n, m, d, s)
    assert work == {"elements": n * (1024 + 16), "flops": n * (1024 * 10 + 16 * 4),
                    "rows": n * s, "draw": 1024 * 16}  # a permutation of all m'd' pairs
    assert SKETCHES.get("tensor_srht").work(n, 1 << 13, 1 << 12, s)["draw"] == s
    for name in ("tensor_srht", "srht", "countsketch", "gaussian", "tensorsketch"):
        assert set(SKETCHES.get(name).work(n, m, d, s)) == set(
            costmodel.kernel_table()[f"sketch_{name}"])
    rates = {"overhead_s": 1e-4, "rates": {"elements": 1e9, "flops": 1e10, "rows": 1e8,
                                           "draw": 1e7}}
    prof = Profile.synthetic(flops=1e9, sketch_tensor_srht=rates)
    c = costmodel.Costs(prof, "float32")
    want = 1e-4 + n * 1040 / 1e9 + n * (10240 + 64) / 1e10 + n * s / 1e8 + 1024 * 16 / 1e7
    assert c.sketch("tensor_srht", n, m, d, s) == pytest.approx(want)
    # without one, the pass-by-pass formula (not this kernel)
    assert costmodel.Costs(UNIT, "float32").sketch("tensor_srht", n, m, d, s) != \
        pytest.approx(want)
    with pytest.raises(ConfigError, match="tensor_srht"):
        c.sketch("nope", n, m, d, s)


def test_the_ladder_measures_a_curve_for_every_phase_a_step_times(monkeypatch):
    monkeypatch.setattr(ALGORITHMS.get("gd"), "ladder_runs", ({"lr": 1e-6},))
    monkeypatch.setattr(ALGORITHMS.get("gn_sketch"), "ladder_runs", (
        {"refresh": "always", "sketch": "countsketch", "step_size": 0.05},))
    curves, raw = calibrate._measure_ladder(
        torch.device("cpu"), "float32", UNIT, ((32, 64, 4), (64, 256, 8)),
        lambda s: None, [("two_layer", 1)], None, methods=("gd", "gn_sketch"))
    assert set(curves["gd"]) == {"forward", "gradient", "update"}
    assert set(curves["gn_sketch"]) == {"forward", "sketch:countsketch", "factor:cholesky_qr",
                                        "solve", "update"}
    for table in curves.values():
        for curve in table.values():
            assert 1 <= len(curve) <= 2 and all(x > 0 and r > 0 for x, r in curve)
            assert [x for x, _ in curve] == sorted(x for x, _ in curve)
    assert {(r["n"], r["m"], r["d"]) for r in raw} == {(32, 64, 4), (64, 256, 8)}
    # a point is measured over the model with no correction, at that point's own size
    r = next(r for r in raw if r["method"] == "gd" and r["phase"] == "forward" and r["n"] == 64)
    assert r["model_s"] == pytest.approx(predict("gd", {"lr": 1e-6}, 64, 256, 8, UNIT)["forward"])


def test_the_mlp_ladder_has_curves_of_its_own_and_depth_falls_back_to_two_layer(monkeypatch):
    monkeypatch.setattr(ALGORITHMS.get("gd"), "ladder_runs", ({"lr": 1e-6},))
    monkeypatch.setattr(ALGORITHMS.get("kfac"), "ladder_runs", ({},))
    curves, raw = calibrate._measure_ladder(
        torch.device("cpu"), "float32", UNIT, ((32, 64, 4),), lambda s: None,
        [("two_layer", 1), ("mlp", 2)], None, methods=("gd", "kfac"))
    assert set(curves) == {"gd", "kfac", "gd@mlp"}  # kfac has no MLP run
    assert {r["depth"] for r in raw if r["method"] == "gd"} == {1, 2}
    n, m, d = 128, 256, 8
    two = {"gd": {"forward": [[1e3, 2.0]]}}
    both = {**two, "gd@mlp": {"forward": [[1e3, 5.0]]}}
    base = predict("gd", {}, n, m, d, UNIT, depth=3, model="mlp")["forward"]
    assert predict("gd", {}, n, m, d, _with_curves(UNIT, both), depth=3,
                   model="mlp")["forward"] == pytest.approx(5 * base)
    assert predict("gd", {}, n, m, d, _with_curves(UNIT, two), depth=3,
                   model="mlp")["forward"] == pytest.approx(2 * base)  # no MLP ladder
    assert predict("gd", {}, n, m, d, _with_curves(UNIT, both))["forward"] == pytest.approx(
        2 * predict("gd", {}, n, m, d, UNIT)["forward"])


def test_the_ladder_stops_climbing_where_the_model_puts_a_step_past_its_limit(monkeypatch):
    monkeypatch.setattr(ALGORITHMS.get("gd"), "ladder_runs", ({"lr": 1e-6},))
    limit = predict("gd", {"lr": 1e-6}, 48, 96, 4, UNIT)["total"] * 1.01
    _, raw = calibrate._measure_ladder(torch.device("cpu"), "float32", UNIT,
                                       ((32, 64, 4), (48, 96, 4), (64, 256, 8)),
                                       lambda s: None, [("two_layer", 1)], limit,
                                       methods=("gd",))
    assert {r["n"] for r in raw} == {32, 48}


# --- depth: the deep MLP (harness.model.mlp) in the time and flop models --------------------------

# Every kernel at a different rate, int8 routes, fixed costs and page faults: a two-layer
# prediction that changed anywhere would change these numbers.
MIXED = Profile.synthetic(flops=1e10, elements=2e9, overhead_s=1e-6, int8_speedup=3.0,
                          fault={"overhead_s": 0.0, "rates": {"bytes": 5e9}})
# predict(...)["total"] on MIXED before depth existed (commit 1b27e5c), except where marked
# "cast priced": the skinny pattern products then took the int8 route without its cast (the
# int8 copy of D, made once per linearisation); they now rent float until the cast pays, as
# kernels.Selector.run does (test_the_cast_is_rented_then_bought_as_the_selector_does).
# gn_nystrom at n=64: that commit priced its block products with Ω blocks of n·m // d
# columns (d passed where _block_columns takes P), now n·m // P = n // d, as gn_nystrom runs them.
TWO_LAYER_TOTALS = {
    ("adam", 64, 512, 8): 0.0002484330666666667,  # cast priced
    ("adam", 1024, 2048, 16): 0.017595048533333334,  # cast priced
    ("gd", 64, 512, 8): 0.00022404906666666666,  # cast priced
    ("gd", 1024, 2048, 16): 0.017455976533333334,  # cast priced
    ("ggn", 64, 512, 8): 0.0003934453333333334,
    ("ggn", 1024, 2048, 16): 0.0017552800000000001,
    ("gn_cg", 64, 512, 8): 0.0007408202666666667,  # cast priced
    ("gn_cg", 1024, 2048, 16): 0.14188956222243043,  # cast priced
    ("gn_exact", 64, 512, 8): 0.004718616533333333,
    ("gn_exact", 1024, 2048, 16): 7.073474059733334,
    ("gn_gram", 64, 512, 8): 0.0003934453333333334,
    ("gn_gram", 1024, 2048, 16): 0.20304136,
    ("gn_nystrom", 64, 512, 8): 0.005285191893333334,  # cast priced; block fix (was 0.0048)
    ("gn_nystrom", 1024, 2048, 16): 0.435797216,  # cast priced
    ("gn_sketch", 64, 512, 8): 0.0017846519111111112,  # cast priced  # sketch=srht
    ("gn_sketch", 1024, 2048, 16): 0.21301281777777778,  # cast priced
    ("kfac", 64, 512, 8): 0.00038963733333333334,
    ("kfac", 1024, 2048, 16): 0.2023517216,
    ("ngd", 64, 512, 8): 0.0003934453333333334,
    ("ngd", 1024, 2048, 16): 0.20304136,
    ("sgd", 64, 512, 8): 0.00012314453333333333,  # cast priced
    ("sgd", 1024, 2048, 16): 0.0006364842666666666,  # cast priced
}


@pytest.mark.parametrize("key", sorted(TWO_LAYER_TOTALS))
def test_depth_one_is_the_two_layer_prediction_bit_for_bit(key):
    name, n, m, d = key
    params = {"sketch": "srht"} if (name == "gn_sketch" and n == 64) else {}
    plain = predict(name, params, n, m, d, MIXED)
    assert predict(name, params, n, m, d, MIXED, depth=1) == plain
    assert plain["total"] == TWO_LAYER_TOTALS[key]  # exact: no tolerance
    assert (costmodel.predict_routes(name, params, n, m, d, MIXED, depth=1)
            == costmodel.predict_routes(name, params, n, m, d, MIXED))


DEEP_CASES = [(name, {}) for name in sorted(METHODS) if name != "kfac"] + [
    ("gn_sketch", {"sketch": s}) for s in ("srht", "gaussian", "countsketch", "tensorsketch")]


@pytest.mark.parametrize("name,params", DEEP_CASES)
def test_a_deeper_model_is_predicted_slower(name, params):
    for prof in (UNIT, MIXED):
        t = [predict(name, params, 128, 1024, 16, prof, depth=L,
                     model="mlp" if L > 1 else "two_layer") for L in (1, 2, 3)]
        assert t[0]["total"] < t[1]["total"] < t[2]["total"], (name, params)
        assert set(t[0]) == set(t[2])  # the same phases
        assert all(v >= 0 for v in t[2].values())


def test_deep_gram_and_forward_by_hand():
    """UNIT prices GEMMs by their flops and elementwise passes by their elements."""
    n, m, d = 10, 100, 2
    t = predict("gn_gram", {}, n, m, d, UNIT, depth=2, model="mlp")
    # zeroed G; layer 1: X Xᵀ, K Kᵀ, G += ⊙ (2 passes); layer 2: H Hᵀ, K Kᵀ, 2 passes
    gram = n * n + (2 * n * n * d + 2 * n * n * m + 2 * n * n) + (4 * n * n * m + 2 * n * n)
    assert t["gram"] == pytest.approx(gram / 1e9)
    # the two-layer forward, plus the second layer's forward and backward n×m×m GEMMs and
    # five passes over n×m (relu_, scale; sign into a new buffer, two products)
    forward = 2 * n * m * d + 3 * n * m + 2 * n + 2 * (2 * n * m * m) + 5 * n * m
    assert t["forward"] == pytest.approx(forward / 1e9)
    P = m * d + m * m
    # Jᵀg per layer: g ⊙ B, Kᵀ(·), copied into the P-vector; W −= η·(it): 3 passes over P
    update = (n * d + 2 * n * m * d + m * d) + (n * m + 2 * n * m * m + m * m) + 3 * P
    assert t["update"] == pytest.approx(update / 1e9)


def test_deep_sketches_by_layer_or_on_the_flat_rows():
    n, m, d, s = 64, 256, 8, 128
    deep = costmodel.Costs(MIXED, "float32", depth=3, model="mlp")
    flat = costmodel.Costs(MIXED, "float32")
    # tensor_srht: one sketch per layer (m×d, then m×m twice), summed
    layered = (flat.sketch("tensor_srht", n, m, d, s)
               + 2 * flat.sketch("tensor_srht", n, m, m, s)
               + 2 * flat.ew(n * s))
    assert deep.sketch("tensor_srht", n, m, d, s) == pytest.approx(layered)
    # srht: on the rows of J, P = md + 2m² long
    P = m * d + 2 * m * m
    assert deep.sketch("srht", n, m, d, s) == pytest.approx(flat.sketch("srht", n, P, 1, s))


def test_kfac_has_no_deep_cost():
    with pytest.raises(ConfigError, match=r"kfac needs the two_layer .* depth=2"):
        predict("kfac", {}, 64, 512, 8, UNIT, depth=2, model="mlp")
    with pytest.raises(ConfigError, match="depth must be a positive integer"):
        predict("gd", {}, 64, 512, 8, UNIT, depth=0)
    assert predict("kfac", {}, 64, 512, 8, UNIT, depth=1)["total"] > 0


def test_predicted_vs_measured_and_frontier_read_depth():
    prof = Profile.synthetic(flops=1e9, elements=1e9)
    deep = predict("gd", {}, 64, 512, 8, prof, depth=3, model="mlp")["total"]
    cells = pd.DataFrame([{"algorithm": "gd", "n": 64, "m": 512, "d": 8, "depth": 3,
                           "model": "mlp",
                           "hyperparameters": "{}", "time_per_iter_s": deep}])
    rows = costmodel.predicted_vs_measured(cells, prof)
    assert rows["ratio"].tolist() == pytest.approx([1.0]) and rows["depth"].tolist() == [3]
    # a deeper model's memory plan (P, 2L − 1 n×m factors) leaves less room for m
    limit = 2**27
    shallow = frontier(prof, [256], [2**k for k in range(8, 16)], 16, memory_bytes=limit)
    deeper = frontier(prof, [256], [2**k for k in range(8, 16)], 16, memory_bytes=limit,
                      depth=3, model="mlp")
    assert deeper["m_max_fits"].iloc[0] < shallow["m_max_fits"].iloc[0]


def test_runner_predicts_mlp_cells_at_their_depth(tmp_path):
    """model=mlp: the step is predicted at the cell's depth and a slow one is skipped."""
    from tests.helpers import run_in_process

    slow = Profile.synthetic(flops=1e3, elements=1e3)
    slow.data.update(device_name="slow test machine", date="2026-01-01")
    path = slow.save(tmp_path / "slow.json")
    cell = ("algorithm=gn_gram", "data.n=16", "model.m=32", "model=mlp", "model.depth=2",
            "time_budget_s=1", f"cost_profile={path}")
    outcome, run, _ = run_in_process(tmp_path / "store", *cell)
    assert outcome.status == "skipped" and "cost model predicts" in run["reason"]
    d = run["d"]
    expected = predict("gn_gram", {}, 16, 32, d, slow, depth=2, model="mlp",
                       dtype=run["dtype"])["total"]
    assert run["predicted_step_time_s"] == pytest.approx(expected)
    assert expected > predict("gn_gram", {}, 16, 32, d, slow, dtype=run["dtype"])["total"]


# --- depth in the flop models (harness.common.flops.deepen, Algorithm.flops) ----------------------


def _flops(name: str, n, m, d, depth, params=None, inner=None) -> dict[str, float]:
    from algorithms.base import ALGORITHMS

    terms = ALGORITHMS.get(name).flops(float(n), float(m), float(d), params or {}, inner, 1.0,
                                       depth=depth, model="mlp" if depth > 1 else "two_layer")
    return {t.label: t.value for t in terms}


def test_deepen_by_hand():
    from harness.common.flops import deepen, monomial

    n, m, d = 8, 16, 4
    gram = [monomial("n²m", 2, n, m, d, 2, 1, 0), monomial("n²d", 2, n, m, d, 2, 0, 1)]
    # the MLP's Gram at L = 3: Σₗ 2n²(m_l + m_{l−1}) = 2n²d + 5·2n²m
    assert sum(t.value for t in deepen(gram, m, d, 3)) == 2 * n * n * d + 5 * 2 * n * n * m
    assert deepen(gram, m, d, 1) == gram
    P = m * d + 2 * m * m
    (jv,) = deepen([monomial("nmd", 2, n, m, d, 1, 1, 1)], m, d, 3)  # J·v: 2nP
    assert (jv.label, jv.value) == ("nP", 2 * n * P)
    assert jv.exponents == {"n": 1, "m": 2, "d": 0}  # (L − 1)m > d: m² leads
    (grad,) = deepen([monomial("nmd", 4, n, m, d, 1, 1, 1, linearize=0.5)], m, d, 3)
    assert grad.value == 2 * n * P + 2 * n * (P - m * d) + 2 * n * P  # forward, signals, Jᵀr


def test_flops_at_depth_are_the_mlp_operator_counts():
    """harness.model.mlp's counts: linearize 2nP + 2n(P − md), Jᵀg 2nP, G·p 4nP, Gram
    2n²(d + (2L − 1)m), J written out nP."""
    n, m, d, L = 64, 128, 8, 3
    P = m * d + (L - 1) * m * m
    linearize, jtg = 2 * n * P + 2 * n * (P - m * d), 2 * n * P
    gram = 2 * n * n * (d + (2 * L - 1) * m)
    assert sum(_flops("gd", n, m, d, L).values()) == pytest.approx(linearize + jtg)
    assert sum(_flops("gn_gram", n, m, d, L).values()) == pytest.approx(
        linearize + gram + n**3 / 3 + jtg)
    k = 7.0
    assert sum(_flops("gn_cg", n, m, d, L, inner=k).values()) == pytest.approx(
        linearize + k * 4 * n * P + jtg)
    assert sum(_flops("gn_exact", n, m, d, L).values()) == pytest.approx(
        2 * n * n * P + n**3 / 3 + linearize + n * P + jtg)
    sk = _flops("gn_sketch", n, m, d, L, {"sketch": "tensor_srht", "sketch_ratio": 4.0},
                inner=k)
    assert sk["nm·log m (sketch)"] == pytest.approx((2 * L - 1) * n * m * math.log2(m))
    assert sk["ns (sketch)"] == pytest.approx(L * n * 4 * n)  # s = 4n rows, once per layer
    srht = _flops("gn_sketch", n, m, d, L, {"sketch": "srht"}, inner=k)
    N = 2 ** math.ceil(math.log2(P))
    assert srht["nP·log(P) (sketch)"] == pytest.approx(n * N * math.log2(N))
    ts = _flops("gn_sketch", n, m, d, L, {"sketch": "tensorsketch"}, inner=k)
    assert ts["n(m+d) (sketch)"] == pytest.approx(n * (d + (2 * L - 1) * m))


def test_two_layer_only_methods_have_no_deep_flops():
    from algorithms.base import ALGORITHMS

    kfac = ALGORITHMS.get("kfac")
    assert kfac.flops(64.0, 128.0, 8.0, {}, None, 1.0, depth=2, model="mlp") is None
    assert kfac.flops(64.0, 128.0, 8.0, {}, None, 1.0) == kfac.cost_terms(
        64.0, 128.0, 8.0, {}, None, 1.0)
    with pytest.raises(ConfigError, match="depth must be a positive integer"):
        kfac.flops(64.0, 128.0, 8.0, {}, None, 1.0, depth=0)


def test_the_cast_is_rented_then_bought_as_the_selector_does():
    """One D Z per linearisation never pays for the int8 copy of D (float, as gd's Jᵀr runs);
    CG's products on one D rent float until the int8 savings cover the cast, then pay it once
    and run int8; an int8 Gram leaves the copy for the products after it."""
    from harness.costmodel import Costs

    n, m, k = 1024, 4096, 16
    prof = Profile.synthetic(flops=1e10, elements=2e9, overhead_s=1e-6, int8_speedup=1.25,
                             fault={"overhead_s": 0.0, "rates": {"bytes": 1e9}})
    c = Costs(prof, "float32")
    c.forward(n, m, k)
    work = {"elements": n * m + (n + m) * k, "flops": 2 * n * m * k}
    fl = prof.seconds("mm_float", "float32", **work)
    i8 = prof.seconds("mm_int8", "float32", **work)
    cast = c.ew(n * m) + c.fresh(n * m / 4)
    assert i8 < fl and cast > fl - i8  # int8 wins cast-free, one product does not repay it
    assert c.pattern("pattern_mm", n, m, k) == fl  # rented
    buys = math.ceil(cast / (fl - i8))  # the call whose savings so far reach the cast
    for _ in range(buys - 2):
        assert c.pattern("pattern_mm", n, m, k) == fl
    assert c.pattern("pattern_mm", n, m, k) == pytest.approx(i8 + cast)  # bought
    assert c.pattern("pattern_mm", n, m, k) == i8  # the copy stays for this linearisation
    c.forward(n, m, k)  # a new D: rent again
    assert c.pattern("pattern_mm", n, m, k) == fl
    c.forward(n, m, k)
    c.pattern("pattern_gram", n, m)  # the int8 Gram makes the copy
    assert c.pattern("pattern_mm", n, m, k) == i8


# --- predicted inner iterations k and refresh share f (harness.costmodel.inner) -------------


def _sketch_params(**kw):
    return costmodel.method_params("gn_sketch", kw)


def test_inner_model_recovers_the_constants_it_was_made_from():
    from harness.costmodel import inner

    points = []
    for ratio in (1.5, 2.0, 4.0, 8.0):
        for tol in (0.1, 1e-3):
            p = _sketch_params(sketch_ratio=ratio, tol=tol)
            points.append({"method": "gn_sketch", "params": p, "n": 64,
                           "inner_iters": 0.7 * inner.theory_k(p)})
    for n in (64, 256, 1024):
        p = costmodel.method_params("gn_cg", {})
        points.append({"method": "gn_cg", "params": p, "n": n,
                       "inner_iters": 2.0 * n**0.3 * inner.theory_k(p)})
    runs = [{"ks": [5, 6, 7, 5, 6], "refreshed": [1, 0, 0, 1, 0]}]
    model = inner.fit(points, runs)
    assert model.coef["gn_sketch"]["a"] == pytest.approx(0.7)
    assert model.coef["gn_sketch"]["b"] == 0.0  # the bound has no n
    assert model.coef["gn_cg"]["a"] == pytest.approx(2.0)
    assert model.coef["gn_cg"]["b"] == pytest.approx(0.3)
    assert model.drift == pytest.approx(5.8 / 5.0) and model.rebuild == pytest.approx(0.25)
    # the shape: halving ln r doubles k, a tighter tolerance costs ln(2/tol) more
    always = _sketch_params(refresh="always")
    k2 = model.k("gn_sketch", always, 4096)
    assert model.k("gn_sketch", _sketch_params(refresh="always", sketch_ratio=4.0),
                   4096) == pytest.approx(k2 / 2)
    assert model.k("gn_sketch", _sketch_params(refresh="always", tol=1e-3), 99) == \
        pytest.approx(k2 * math.log(2e3) / math.log(20))
    assert model.k("gn_sketch", _sketch_params(), 4096) == pytest.approx(k2 * model.drift)
    assert model.k("gn_sketch", _sketch_params(sketch_ratio=0.5), 64) == 200  # capped
    assert model.refresh_share(1) == 1.0
    assert model.refresh_share(5) == pytest.approx((1 + 4 * 0.25) / 5)


def _with_inner_model(prof, a=0.5, drift=1.5, rebuild=0.0):
    prof.data["inner_model"] = {"coef": {"gn_sketch": {"a": a, "b": 0.0}},
                                "drift": drift, "rebuild": rebuild}
    return Profile(prof.data)


def test_predictions_use_the_predicted_k_and_f_never_the_cells():
    prof = _with_inner_model(Profile.synthetic(flops=1e9, elements=1e9))
    k = costmodel.predicted_inner("gn_sketch", _sketch_params(), 256, prof)
    assert k == pytest.approx(0.5 * 1.5 * 2 * math.log(20) / math.log(2))
    base = {"algorithm": "gn_sketch", "n": 256, "m": 2048, "d": 8, "n_steps": 4,
            "hyperparameters": "{}", "time_per_iter_amortised_s": 1e-3,
            "mean_step_time_s": 1e-3}
    cells = pd.DataFrame([{**base, "mean_inner_iters": 3.0, "refresh_frac": 0.25},
                          {**base, "mean_inner_iters": 150.0, "refresh_frac": 1.0}])
    rows = costmodel.predicted_vs_measured(cells, prof)
    assert rows["ratio"].iloc[0] == rows["ratio"].iloc[1]  # the cells' k and f unread
    assert rows["inner_iters_pred"].tolist() == pytest.approx([k, k])
    assert rows["refresh_every_pred"].tolist() == pytest.approx([4.0, 4.0])  # rebuild 0
    assert rows["ratio_measured_k"].iloc[1] > 3 * rows["ratio_measured_k"].iloc[0]
    fed = costmodel.ratio_summary(rows, column="ratio_measured_k")
    assert fed["cells"] == 2


def test_the_frontier_uses_the_predicted_k():
    slow = _with_inner_model(Profile.synthetic(flops=1e9, elements=1e9), a=3.0)
    fast = _with_inner_model(Profile.synthetic(flops=1e9, elements=1e9), a=0.2)
    ms = [2**k for k in range(8, 16)]
    k = costmodel.predicted_inner("gn_sketch", _sketch_params(), 512, slow)
    given = frontier(slow, [512], ms, 8, inner_iters={"gn_sketch": k})
    assert frontier(slow, [512], ms, 8).equals(given)
    assert (frontier(fast, [512], ms, 8)["ratio_at_max"].iloc[0]
            > given["ratio_at_max"].iloc[0])


def test_an_old_profile_fits_k_from_its_ladder_with_a_note():
    prof = Profile.synthetic(flops=1e9, elements=1e9)
    assert costmodel.inner_model(prof) is None  # no ladder: the methods' defaults
    assert costmodel.predicted_inner("gn_sketch", _sketch_params(), 64, prof) == \
        ALGORITHMS.get("gn_sketch").default_inner_iters(64, _sketch_params())
    data = dict(prof.data, source="measured (old)")
    data["ladder"] = {"points": {"float32": [
        {"method": "gn_sketch", "params": {"refresh": "always"}, "n": n, "m": 4 * n, "d": 8,
         "phase": phase, "inner_iters": 5.0} for n in (64, 128) for phase in ("solve", "x")]}}
    old = Profile(data)
    model = costmodel.inner_model(old)
    assert model.coef["gn_sketch"]["points"] == 2 and "at load" in model.note
    assert costmodel.predicted_inner("gn_sketch", _sketch_params(refresh="always"), 8192,
                                     old) == pytest.approx(5.0)
    assert any(n.startswith("no inner-iteration model") for n in old.notes)


def test_accuracy_table_scores_in_sample_and_held_out_side_by_side():
    from harness.reporting import predictions as P

    rows = pd.DataFrame({"algorithm": "gn_gram", "n": [384, 384, 256, 256], "m": 6144,
                         "d": [24, 24, 16, 16], "seed": [11, 12, 0, 0],
                         "ratio": [1.0, 2.0, 1.1, 1.2],
                         "ratio_measured_k": [1.0, 1.0, 1.1, 3.0]})
    table = P.accuracy_table(rows, ids={(384, 6144, 24, 11), (384, 6144, 24, 12)})
    assert table["cells"].tolist() == ["in sample", "held out"]
    assert table["within 1.5× (predicted k, f)"].tolist() == ["2/2 (100%)", "1/2 (50%)"]
    assert table["within 1.5× (measured k, f)"].tolist() == ["1/2 (50%)", "2/2 (100%)"]
    assert P.heldout_identities()  # the committed preset parses


def test_cells_of_two_machines_are_each_priced_by_their_own_profile():
    from harness.reporting import predictions as P

    slow = Profile({**Profile.synthetic(flops=1e9).to_dict(), "device_name": "cpu A",
                    "source": "measured", "date": "2026-01-01"})
    fast = Profile({**Profile.synthetic(flops=1e10).to_dict(), "device_name": "cpu B",
                    "source": "measured", "date": "2026-01-01"})
    n, m, d = 256, 4096, 16
    one = predict("gd", {}, n, m, d, slow)["total"]
    cells = pd.DataFrame({"algorithm": "gd", "n": n, "m": m, "d": d, "seed": [0, 1],
                          "hyperparameters": "{}", "time_per_iter_s": [one, one / 10],
                          "time_per_iter_median_s": [one, one / 10], "n_steps": 5,
                          "device_name": ["cpu A", "cpu B"], "dtype": "float32"})
    rows, summary = P.vs_measured(slow, cells, [slow, fast])
    assert sorted(rows["profile"]) == ["cpu A (measured rates)", "cpu B (measured rates)"]
    assert rows["ratio"].tolist() == pytest.approx([1.0, 1.0])
    # one profile for both: the other machine's cell is 10x off
    rows, _ = P.vs_measured(slow, cells)
    assert sorted(rows["ratio"].round(6)) == pytest.approx([1.0, 10.0])


def test_predicted_vs_measured_figure_fills_the_held_out_cells(monkeypatch):
    from harness.reporting import predictions as P
    from harness.reporting.figures import predictions as F
    from harness.reporting.figures.registry import Inputs

    rows = pd.DataFrame({"algorithm": "gn_gram", "n": [384, 384, 256], "m": 6144,
                         "d": [24, 24, 16], "seed": [11, 12, 0],
                         "measured_s": [1.0, 2.0, 1.0], "predicted_s": [1.1, 1.0, 3.0],
                         "ratio": [1.1, 0.5, 3.0], "ratio_measured_k": [1.1, 0.5, 3.0]})
    rows["cell"] = ["a", "b", "c"]
    monkeypatch.setattr(P, "vs_measured",
                        lambda *a, **k: (rows, costmodel.ratio_summary(rows)))
    monkeypatch.setattr(P, "heldout_identities", lambda: {(384, 6144, 24, 11),
                                                          (384, 6144, 24, 12)})
    (drawn,) = F.predicted_vs_measured(Inputs(cells=pd.DataFrame(), rows=pd.DataFrame(),
                                              fits_n=None, fits_m=None, profile=UNIT))
    ax = drawn.fig.axes[0]
    points = [ln for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_marker() != "None"]
    filled = [ln for ln in points if ln.get_markerfacecolor() != "none"]
    hollow = [ln for ln in points if ln.get_markerfacecolor() == "none"]
    assert sorted(map(float, filled[0].get_xdata())) == [1.0, 2.0] and len(filled) == 1
    assert [float(x) for x in hollow[0].get_xdata()] == [1.0]
    assert "1 of 2 within 1.5×; hollow: in sample" in drawn.caption
    labels = drawn.fig.legends[0].get_texts() if drawn.fig.legends else []
    assert "filled: held out" in [t.get_text() for t in labels]
    import matplotlib.pyplot as plt
    plt.close(drawn.fig)
