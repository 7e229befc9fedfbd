"""The model seam: every method reaches a model only through ``harness.model.two_layer.Problem``.

Checked here: depth 1 of the MLP reproduces the two-layer model's training trajectory for the
methods that run on both (the seam changes nothing the methods compute); a method that needs
the two-layer structure is refused with a reason on the MLP; the layered tensor sketch is
S Jᵀ of the explicit Jacobian; the model is part of a cell's identity, while the default
model keeps the identity it had before the model group; bad model options are one-line errors.
"""

from __future__ import annotations

import pytest
import torch

from algorithms.base import ALGORITHMS, Shape
from harness.common.errors import ConfigError
from harness.common.timing import NullClock
from harness.execution.config import resolve
from harness.execution.results import cell_name, config_hash
from harness.model import LAYERED, MODELS, TWO_LAYER, Jacobian, Problem, make_problem
from harness.reporting import claims, tables
from harness.reporting.load import load_stores
from harness.reporting.metrics import cell_metrics
from harness.reporting.report import build
from harness.sketches import SKETCHES, LayeredSketch, sketch_problem
from tests.helpers import compose_cfg, nlt_run, run_in_process

N, D, M = 24, 6, 48


def _problem(model: str, depth: int = 1, **kw):
    return make_problem("synthetic", n=N, d=D, m=M, seed=0, dtype=torch.float64, model=model,
                        depth=depth, **kw)


def _losses(name: str, problem, steps: int = 4, **params) -> list[float]:
    cls = ALGORITHMS.get(name)
    alg = cls(problem, cls.Params(**params), torch.Generator().manual_seed(5))
    alg.setup(NullClock())
    losses = [problem.loss()]
    for _ in range(steps):
        alg.step(NullClock())
        losses.append(problem.loss())
    return losses


def test_both_models_implement_the_protocol():
    for name in ("two_layer", "mlp"):
        problem = _problem(name)
        assert isinstance(problem, Problem) and problem.model == name
        assert isinstance(problem.linearize().jacobian, Jacobian)
    assert sorted(MODELS.names()) == ["mlp", "two_layer"]


@pytest.mark.parametrize("name,params", [
    ("gd", {}), ("adam", {}), ("gn_gram", {}), ("ngd", {}), ("gn_cg", {}), ("gn_exact", {}),
    ("gn_nystrom", {}), ("gn_sketch", {}), ("gn_sketch", {"sketch": "gaussian"}),
    ("lbfgs", {}), ("sgd", {}),
])
def test_depth_one_mlp_reproduces_the_two_layer_trajectory(name, params):
    """Same seeds, same method: the MLP path at depth 1 trains exactly like the two-layer
    model (float64 rounding; the layered tensor sketch draws the same S for one layer)."""
    two = _losses(name, _problem("two_layer"), **params)
    deep = _losses(name, _problem("mlp", 1), **params)
    assert two[-1] < two[0]  # the methods do train here: the comparison is not vacuous
    torch.testing.assert_close(torch.tensor(deep), torch.tensor(two), rtol=1e-9, atol=0.0)


def test_depth_changes_the_trajectory():
    """The comparison above could fail: depth 2 trains differently."""
    assert _losses("gn_gram", _problem("mlp", 2)) != _losses("gn_gram", _problem("two_layer"))


def test_two_layer_only_methods_are_skipped_with_a_reason_on_the_mlp():
    deep = _problem("mlp", 2)
    shape = Shape(N, M, D, 8, depth=2, model="mlp", features=deep.features)
    reason = ALGORITHMS.get("kfac").skip(ALGORITHMS.get("kfac").Params(), shape, 1 << 40)
    assert reason == "kfac needs the two_layer structure, which model=mlp does not have"
    for name in ALGORITHMS.names():  # everything else runs on the MLP
        if name != "kfac":
            cls = ALGORITHMS.get(name)
            assert cls.skip(cls.Params(), shape, 1 << 40) is None, name


@pytest.mark.parametrize("sketch", sorted(SKETCHES.names()))
def test_every_sketch_of_a_deep_jacobian_is_s_applied_to_the_explicit_jacobian(sketch):
    deep = _problem("mlp", 3)
    jac = deep.linearize().jacobian
    S = sketch_problem(sketch, deep, 20, torch.Generator().manual_seed(1))
    B = S.sketch_jacobian(jac)
    J = jac.dense()
    if isinstance(S, LayeredSketch):  # tensor sketches: one per layer, summed
        assert LAYERED in SKETCHES.get(sketch).requires
        expected = sum(part.apply(J[:, blk.start:blk.stop]).T
                       for part, blk in zip(S.parts, deep.layout))
    else:
        expected = S.apply(J).T
    torch.testing.assert_close(B, expected, rtol=1e-10, atol=1e-12)


def test_the_layered_sketch_is_an_isometry_in_expectation():
    """E‖S z‖² = ‖z‖² for S = [S₁ ⋯ S_L] (mean of 400 draws within 10 %)."""
    deep = _problem("mlp", 2)
    z = torch.randn(3, deep.num_params, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    norms = []
    for t in range(400):
        S = sketch_problem("tensor_srht", deep, 16, torch.Generator().manual_seed(t))
        norms.append(sum(part.apply(z[:, blk.start:blk.stop])
                         for part, blk in zip(S.parts, deep.layout)).pow(2).sum(1))
    ratio = torch.stack(norms).mean(0) / z.pow(2).sum(1)
    assert torch.all((ratio - 1).abs() < 0.1), ratio


def test_the_default_model_keeps_its_cell_identity():
    run = resolve(compose_cfg("device=cpu", "data.n=32", "model.m=64"))
    assert run.identity["model"] == {"m": 64} and run.model == "two_layer"
    assert "mlp" not in cell_name(run.identity)
    deep = resolve(compose_cfg("device=cpu", "data.n=32", "model.m=64", "model=mlp",
                               "model.depth=3"))
    assert deep.identity["model"] == {"name": "mlp", "m": 64, "depth": 3}
    assert "/mlp3_synthetic_n32_m64_" in cell_name(deep.identity)
    assert config_hash(deep.identity) != config_hash(run.identity)
    assert TWO_LAYER not in MODELS.get("mlp").features


@pytest.mark.parametrize("overrides,message", [
    (("model.depth=2",), "model.depth=2 does not apply to model=two_layer"),
    (("model=mlp", "model.depth=0"), "model.depth must be a positive integer, got 0"),
    (("model=mlp", "record.ntk=true"), "record.ntk compares G with the two-layer NTK limit"),
])
def test_bad_model_options_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(compose_cfg("device=cpu", *overrides))


def test_a_deep_cell_records_its_model(tmp_path):
    outcome, run, rows = run_in_process(tmp_path, "algorithm=gn_gram", "model=mlp",
                                        "model.depth=2", "data.n=32", "model.m=32", "data.d=8")
    assert outcome.status == "converged"
    assert (run["model"], run["depth"]) == ("mlp", 2)
    assert set(rows["model"]) == {"mlp"} and set(rows["depth"]) == {2}


def test_cli_deep_run_and_unknown_model(tmp_path):
    """The issue's command, at a small size, through the CLI; an unknown model is exit 2."""
    ok = nlt_run(tmp_path, "model=mlp", "model.depth=3", "algorithm=gn_sketch", "data=digits",
                 "data.n=64", "model.m=32", "device=cpu", f"store={tmp_path / 'r'}")
    assert ok.returncode == 0, ok.stderr
    assert "mlp3_digits_n64_m32" in ok.stdout + ok.stderr
    bad = nlt_run(tmp_path, "model=resnet", f"store={tmp_path / 'r'}")
    assert bad.returncode == 2
    assert "resnet" in bad.stderr and "mlp" in bad.stderr and "two_layer" in bad.stderr


# --- reports: cells of different depths are different problems ----------------------------------


@pytest.fixture(scope="module")
def depth_store(tmp_path_factory):
    """gn_gram and gn_sketch at depth 1 and 2 of the MLP, plus a two-layer gn_gram, on tiny
    problems (three sizes n)."""
    store = tmp_path_factory.mktemp("depth_store")
    common = ("data.d=8", "model.m=32", "max_iters=12")
    for n in (16, 24, 32):
        run_in_process(store, "algorithm=gn_gram", f"data.n={n}", *common)
        for depth in (1, 2):
            for alg in ("gn_gram", "gn_sketch"):
                if (depth, alg) == (2, "gn_gram") and n == 32:
                    continue  # depth 2 at n=32 has no exact partner of its own depth
                run_in_process(store, f"algorithm={alg}", "model=mlp", f"model.depth={depth}",
                               f"data.n={n}", *common)
    return store


def test_sketch_runs_pair_only_with_exact_runs_of_the_same_depth(depth_store):
    loaded = load_stores([depth_store])
    cells = cell_metrics(loaded)
    gaps = claims.trajectory_gaps(cells, loaded.rows)
    by_variant = gaps.groupby("variant")["n"].apply(sorted).to_dict()
    # depth 2 at n=32 has only a two-layer (and a depth-1) gn_gram beside it: no pair
    assert by_variant == {"gn_sketch [mlp L=1]": [16, 24, 32], "gn_sketch [mlp L=2]": [16, 24]}


def test_report_decides_claims_per_depth_and_tabulates_time_to_target(depth_store, tmp_path,
                                                                     no_figures):
    report = build([str(depth_store)], tmp_path / "out")
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "## Depth" in text
    table = claims.claims_by_depth(report.cells, report.loaded.rows)
    assert set(zip(table["model"], table["depth"])) == {("two_layer", 1), ("mlp", 1), ("mlp", 2)}
    assert set(table["claim"]) == set(claims.DEPTH_CLAIMS)
    c4 = table[(table["claim"] == "C4") & (table["depth"] == 2)].iloc[0]
    assert "2 gn_sketch run(s)" in c4["evidence"]  # the two depth-2 pairs, not three
    times = tables.depth_table(report.cells)
    assert {"gn_gram", "gn_sketch", "gn_sketch inner/outer"} <= set(times.columns)
    assert len(times) == 3 * 3  # (model, depth) × n


def test_a_two_layer_store_has_no_depth_section(tmp_path, no_figures):
    store = tmp_path / "s"
    run_in_process(store, "algorithm=gn_gram", "data.n=16", "data.d=8", "model.m=32")
    build([str(store)], tmp_path / "out")
    assert "## Depth" not in (tmp_path / "out" / "REPORT.md").read_text()
