"""The report's headline size and its "what these data can decide" table, on small made-up
cell tables (no runs needed)."""

from __future__ import annotations

import pandas as pd

from harness.reporting import tables as T


def _cells(spec: list[tuple[str, int, int, str]]) -> pd.DataFrame:
    """Cells from (algorithm, n, m, status), on one device and problem."""
    return pd.DataFrame([{"algorithm": a, "variant": a, "n": n, "m": m, "status": s,
                          "device": "cpu", "dataset": "synthetic", "d": 16, "dtype": "float32",
                          "seed": 0, "cell": f"{a}/{n}_{m}"} for a, n, m, s in spec])


def test_headline_takes_the_largest_n_where_the_main_methods_all_ran():
    spec = [(a, n, 2048, "converged") for a in ("gd", "gn_gram", "gn_sketch", "gn_exact",
                                                 "ngd", "kfac") for n in (64, 256)]
    spec += [(a, 1024, 2048, "converged") for a in ("gd", "gn_gram", "gn_sketch", "gn_exact")]
    spec += [("gn_exact", 4096, 2048, "skipped"), ("gn_gram", 4096, 2048, "converged")]
    device, n, m, why = T.reference_size(_cells(spec))
    # 1024 has fewer methods than 256, and 4096 lacks a finished gn_exact
    assert (device, n, m) == ("cpu", 1024, 2048)
    assert "largest n" in why and "gn_exact" in why


def test_headline_does_not_wait_for_a_main_method_that_is_absent():
    spec = [(a, n, 512, "max_iters") for a in ("gd", "gn_gram", "gn_sketch") for n in (64, 128)]
    assert T.reference_size(_cells(spec))[1] == 128


def test_headline_falls_back_to_the_size_with_the_most_methods():
    spec = [("gd", 64, 512, "converged"), ("gn_gram", 64, 512, "converged"),
            ("gn_sketch", 128, 512, "converged")]
    _, n, _, why = T.reference_size(_cells(spec))
    assert n == 64 and "most methods" in why


def test_decidable_says_which_rules_have_their_minimum():
    three = [(a, n, 2048, "converged") for a in ("gd", "gn_gram", "gn_sketch", "gn_exact")
             for n in (64, 256, 1024)]
    table = T.decidable(_cells(three), pd.DataFrame())
    assert list(table["claim"]) == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert set(table["can decide"]) == {"no"}  # 3 sizes, no rows, one width
    five = [(a, n, 2048, "converged") for a in ("gd", "gn_gram", "gn_sketch")
            for n in (64, 128, 256, 512, 1024)]
    got = T.decidable(_cells(five), pd.DataFrame()).set_index("claim")["can decide"]
    assert got["C1"] == "yes" and got["C3"] == "yes" and got["C2"] == "no"
    grid = [(a, n, m, "converged") for a in ("gn_gram", "gn_sketch") for n in (64, 128)
            for m in (1024, 4096, 16384)]
    got = T.decidable(_cells(grid), pd.DataFrame()).set_index("claim")
    # issue 23: C6 fits its growth along n (3 sizes) and a sure win needs 3 seeds
    assert got.loc["C6", "can decide"] == "no", got.loc["C6"].to_dict()
    grid = [(a, n, m, "converged") for a in ("gn_gram", "gn_sketch") for n in (64, 128, 256)
            for m in (1024, 4096, 16384)]
    seeded = pd.concat([_cells(grid).assign(seed=s, cell=lambda f, s=s: f["cell"] + f"_{s}")
                        for s in range(3)], ignore_index=True)
    got = T.decidable(seeded, pd.DataFrame()).set_index("claim")
    assert got.loc["C6", "can decide"] == "yes", got.loc["C6"].to_dict()


def _grid_cells(sketch_times: dict, paper_tol: float | None = 0.1, seeds=(0, 1, 2),
                gn_cg: bool = True) -> pd.DataFrame:
    """A 2 × 2 (n, m) grid: gn_gram takes 2 s to ε everywhere; gn_sketch takes
    sketch_times[(n, m)][seed]; gn_sketch_paper (preset) 4 s at CG tol paper_tol (None: not
    run); gn_cg 3 s where asked."""
    import json

    rows = []

    def add(alg, n, m, seed, t, preset=None, hp=None):
        rows.append({"algorithm": alg, "variant": preset or alg, "preset": preset or alg,
                     "n": n, "m": m, "seed": seed, "status": "converged", "device": "cpu",
                     "dataset": "synthetic", "d": 16, "dtype": "float32", "censor": None,
                     "cell": f"{preset or alg}/{n}_{m}_{seed}", "time_to_target_s": t,
                     "time_lower_bound_s": float("nan"), "hyperparameters": json.dumps(hp or {})})
    for (n, m), times in sketch_times.items():
        for seed in seeds:
            add("gn_gram", n, m, seed, 2.0)
            add("gn_sketch", n, m, seed, times[seed], hp={"tol": 0.1})
            if paper_tol is not None:
                add("gn_sketch", n, m, seed, 4.0, preset="gn_sketch_paper",
                    hp={"tol": paper_tol})
            if gn_cg:
                add("gn_cg", n, m, seed, 3.0)
    return pd.DataFrame(rows)


GRID = [(1024, 4096), (1024, 16384), (2048, 4096), (2048, 16384)]


def test_es_spread_gives_median_min_max_and_seeds_per_cell():
    times = {cell: [1.0, 1.6, 2.5] for cell in GRID}  # E/S 2.0, 1.25, 0.8
    table, note = T.es_spread(_grid_cells(times))
    assert len(table) == 4
    row = table.iloc[0]
    assert row["E/S fastest: median [min–max] (seeds)"] == "1.25 [0.80–2.00] (3 seeds)"
    assert row["E/S gn_sketch_paper at tol ≤ 0.25"] == "0.50 [0.50–0.50] (3 seeds)"
    assert row["gn_cg time to ε"] == "3 s (3 seeds)"
    assert "ran with tol 0.1" in note


def test_es_spread_counts_the_paper_variant_only_at_the_papers_accuracy():
    times = {cell: [1.0, 1.0, 1.0] for cell in GRID}
    table, note = T.es_spread(_grid_cells(times, paper_tol=0.5, gn_cg=False))
    assert set(table["E/S gn_sketch_paper at tol ≤ 0.25"]) == {"not at the paper's accuracy"}
    assert "No cell ran gn_sketch_paper at the paper's accuracy" in note and "0.5" in note
    assert set(table["gn_cg time to ε"]) == {"–"}
    table, note = T.es_spread(_grid_cells(times, paper_tol=None))
    assert set(table["E/S gn_sketch_paper at tol ≤ 0.25"]) == {"not run"}
    assert "did not run" in note


def test_es_spread_marks_a_stopped_baseline_as_a_lower_bound():
    times = {cell: [1.0, 1.0, 1.0] for cell in GRID}
    cells = _grid_cells(times, gn_cg=False)
    stop = (cells["algorithm"] == "gn_gram") & (cells["seed"] == 2)
    cells.loc[stop, ["time_to_target_s", "time_lower_bound_s", "censor"]] = \
        [float("nan"), 5.0, "time_budget"]
    table, _ = T.es_spread(cells)
    assert table.iloc[0]["E/S fastest: median [min–max] (seeds)"].startswith("≥2.00 [≥2.00–5.00]")


def test_es_spread_marks_cells_outside_the_width_condition():
    cells = _grid_cells({(1024, 512): [1.0] * 3, (1024, 4096): [1.0] * 3,
                         (2048, 1024): [1.0] * 3, (2048, 4096): [1.0] * 3})
    table, _ = T.es_spread(cells)
    marks = dict(zip(zip(table["n"], table["m"]), table["m/n"]))
    assert marks[(1024, 512)] == "0.5 (outside m ≥ n)" and marks[(1024, 4096)] == "4"
