"""Named configurations of harness/conf/algorithm/: each method's YAML equals its Params
defaults, and named variants (gn_sketch_paper) resolve to their method and are recorded as such."""

from __future__ import annotations

import dataclasses

import pytest

from algorithms.base import ALGORITHMS
from harness.common.errors import ConfigError
from harness.execution.config import CONF_DIR, algorithm_preset, preset_for
from harness.execution.preflight import algorithm_choices
from tests.helpers import run_in_process

#: methods that ship a conf/algorithm/<name>.yaml; an outside plugin needs none
SHIPPED_YAML = sorted(n for n in ALGORITHMS.names() if (CONF_DIR / "algorithm" / f"{n}.yaml")
                      .is_file())


def test_every_method_of_the_repository_ships_its_yaml():
    ours = [n for n in ALGORITHMS.names()
            if ALGORITHMS.get(n).__module__.startswith("algorithms.")]
    assert ours and set(ours) <= set(SHIPPED_YAML)


@pytest.mark.parametrize("name", SHIPPED_YAML)
def test_method_yaml_equals_params_defaults(name):
    alg, values = algorithm_preset(name)
    defaults = {f.name: f.default for f in dataclasses.fields(ALGORITHMS.get(name).Params)}
    assert alg == name and values == defaults
    assert preset_for(name, defaults) == name


def test_paper_variant_of_gn_sketch():
    alg, values = algorithm_preset("gn_sketch_paper")
    assert alg == "gn_sketch"
    assert (values["refresh"], values["sketch_ratio"], values["factor"]) == ("always", 4.0, "qr")
    assert preset_for("gn_sketch", values) == "gn_sketch_paper"
    assert preset_for("gn_sketch", {**values, "sketch_ratio": 3.0}) is None
    # the defaults are another variant: the paper's must stay runnable beside them
    _, defaults = algorithm_preset("gn_sketch")
    assert defaults != values


def test_choices_and_unknown_presets():
    stems = {p.stem for p in (CONF_DIR / "algorithm").glob("*.yaml")}
    assert set(algorithm_choices()) == stems | set(ALGORITHMS.names())
    with pytest.raises(ConfigError, match="Unknown algorithm preset 'nope'"):
        algorithm_preset("nope")


def test_run_records_its_preset(store):
    small = ("data.n=32", "model.m=256", "data.d=8")
    _, run, _ = run_in_process(store, "algorithm=gn_sketch_paper", *small)
    assert run["algorithm"] == "gn_sketch" and run["preset"] == "gn_sketch_paper"
    _, run, _ = run_in_process(store, "algorithm=gn_sketch", *small)
    assert run["preset"] == "gn_sketch"
    _, run, _ = run_in_process(store, "algorithm=gn_sketch", "algorithm.sketch_ratio=3", *small)
    assert run["preset"] is None


# --- the held-out preset: cells no calibration and no other preset uses ----------------------


def _identities(preset: str) -> set[tuple[int, int, int, int]]:
    from harness.execution.preflight import preflight
    from harness.execution.suites import suite_parts

    seen: set[tuple[int, int, int, int]] = set()
    parts = suite_parts(["-m", f"+sweep={preset}"]) or [["-m", f"+sweep={preset}"]]
    for args in parts:
        preflight([a if a != "device=cuda" else "device=cpu" for a in args[1:]],
                  visit=lambda cfg, run: seen.add((run.n, run.m, run.d, run.seed)))
    return seen


def test_heldout_preset_is_big_enough_and_off_the_calibration():
    from harness.perf import calibrate
    from harness.reporting.predictions import heldout_identities

    held = _identities("heldout")
    assert held == heldout_identities()  # what the report scores as held out
    assert len(held) * 5 >= 40  # five methods per identity
    shapes = {(n, m, d) for n, m, d, _ in held}
    calibrated = {tuple(x) for x in (*calibrate.LADDER, *calibrate.QUICK_LADDER)}
    calibrated |= {(n, m, d) for n, m, d, _ in calibrate.FULL_CAL.sketch}
    assert not shapes & calibrated
    assert not {n for n, _, _ in shapes} & {n for n, _ in calibrate.FULL_CAL.pattern}


@pytest.mark.slow
def test_heldout_cells_are_in_no_other_preset():
    from harness.execution.preflight import sweep_presets

    held = _identities("heldout")
    shapes = {(n, m, d) for n, m, d, _ in held}
    for preset in sweep_presets():
        if preset != "heldout":
            assert not shapes & {(n, m, d) for n, m, d, _ in _identities(preset)}, preset


# --- the crossover suite's evidence tiers ---------------------------------------------------


def _suite_cells(preset: str) -> list[dict]:
    """(algorithm, n, m, seed) of every cell of a suite, from its entries and the grid's
    defaults (no Hydra composition: a plain reading of the values)."""
    from omegaconf import OmegaConf

    from harness.execution.config import CONF_DIR
    from harness.execution.suites import suite_parts

    out = []
    for args in suite_parts(["-m", f"+sweep={preset}"]):
        values = dict(a.split("=", 1) for a in args if "=" in a)
        grid = OmegaConf.load(CONF_DIR / "sweep" / f"{values['+sweep']}.yaml")
        params = grid.hydra.sweeper.params
        algs, ns, ms = (str(values.get(key, params.get(key, ""))).split(",")
                        for key in ("algorithm", "data.n", "model.m"))
        for alg in algs:
            for n in ns:
                for m in ms:
                    for seed in values.get("seed", "0").split(","):
                        out.append({"algorithm": alg, "n": int(n), "m": int(m),
                                    "seed": int(seed)})
    return out


def test_crossover_tiers_put_every_large_cell_on_three_seeds():
    cells = _suite_cells("crossover")
    seeds: dict[tuple, set] = {}
    for c in cells:
        seeds.setdefault((c["algorithm"], c["n"], c["m"]), set()).add(c["seed"])
    large = {k: v for k, v in seeds.items() if k[1] >= 4096}
    assert large and all(len(v) >= 3 for v in large.values())
    at_8192 = {k[0] for k in large if k[1] == 8192}
    assert {"gn_gram", "gn_sketch", "gn_sketch_paper", "gn_cg"} <= at_8192
    # the two widths where the sketch was measured to win, for every method of the claim
    for alg in ("gn_gram", "gn_sketch", "gn_sketch_paper", "gn_cg"):
        assert {2**17, 2**18} <= {k[2] for k in large if k[:2] == (alg, 8192)}


def test_the_16384_tier_is_the_widest_width_that_fits_by_the_cost_model():
    from omegaconf import OmegaConf

    from harness.costmodel import Profile
    from harness.execution.config import CONF_DIR
    from harness.reporting.predictions import tier_width

    tier = OmegaConf.load(CONF_DIR / "sweep" / "crossover_16384.yaml")
    prof = Profile.synthetic(flops=1e10, elements=1e10)
    got = tier_width(int(tier.data.n), profile=prof, memory_bytes=20e9)
    assert got["m"] == int(tier.model.m)
    assert set(str(tier.hydra.sweeper.params.seed).split(",")) == {"0", "1", "2"}
    assert tier_width(16384, profile=prof, memory_bytes=1e6)["m"] is None
