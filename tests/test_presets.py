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


@pytest.mark.parametrize("name", ALGORITHMS.names())
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
