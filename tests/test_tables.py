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
