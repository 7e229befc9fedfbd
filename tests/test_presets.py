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
