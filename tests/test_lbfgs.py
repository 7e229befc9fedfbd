"""lbfgs: steps against torch.optim.LBFGS driven by autograd, whole runs, parameters, warm-up."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from algorithms.base import ALGORITHMS, Shape
from harness.common.errors import ConfigError
from harness.common.timing import NullClock
from harness.execution.config import resolve
from harness.execution.listing import list_algorithms
from harness.model import make_problem
from tests.helpers import compose_cfg, run_in_process

RUN = ("algorithm=lbfgs", "data.n=32", "model.m=256", "data.d=8", "dtype=float64")


@pytest.fixture
def problem():
    """n=24, m=64, d=5, float64."""
    return make_problem("synthetic", n=24, d=5, m=64, seed=3, dtype=torch.float64)


def ours(problem, steps: int, **params):
    """(W after each step, inner_iters of each step) of the harness's lbfgs on a copy."""
    p = copy.deepcopy(problem)
    cls = ALGORITHMS.get("lbfgs")
    alg = cls(p, cls.Params(**params), torch.Generator())
    alg.setup(NullClock())
    Ws, evals = [], []
    for _ in range(steps):
        info = alg.step(NullClock())
        Ws.append(p.W.clone())
        evals.append(info.inner_iters)
    return Ws, evals


def reference(problem, steps: int, line_search="strong_wolfe", lr=1.0, history_size=10):
    """torch.optim.LBFGS on the mean loss by autograd, one step(closure) per outer iteration,
    with the harness's evaluation budget and zero tolerances; also its closure-call count."""
    p = problem
    W = p.W.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([W], lr=lr, max_iter=1, max_eval=25, tolerance_grad=0.0,
                            tolerance_change=0.0, history_size=history_size,
                            line_search_fn=None if line_search == "none" else line_search)

    def closure():
        opt.zero_grad()
        f = torch.relu(p.X @ W.T) @ p.a / math.sqrt(p.m)
        loss = 0.5 * (f - p.y).pow(2).sum() / p.n
        loss.backward()
        return loss

    Ws = []
    for _ in range(steps):
        opt.step(closure)
        Ws.append(W.detach().clone())
    return Ws, opt.state[W]["func_evals"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("params", [dict(), dict(history_size=3),
                                    dict(line_search="none", lr=0.5)])
def test_steps_match_autograd_lbfgs(problem, params):
    """Same W as torch's LBFGS on autograd after one and after several steps; every step pays
    only its line-search evaluations (the repeated start evaluation is answered from memory)."""
    steps = 12
    Ws, evals = ours(problem, steps, **params)
    ref, ref_evals = reference(problem, steps, **params)
    assert rel(Ws[0], problem.W) > 1e-3  # a real step
    for k in (0, 1, 4, steps - 1):
        assert rel(Ws[k], ref[k]) <= 1e-10, k
    if params.get("line_search") == "none":  # no line search: one evaluation, nothing repeated
        assert evals == [1] * steps and ref_evals == steps
    else:
        assert sum(evals) == ref_evals - (steps - 1) and min(evals) >= 1


def test_converges_on_a_small_problem(store):
    outcome, run, rows = run_in_process(store, *RUN, "max_iters=60")
    assert outcome.status == "converged", outcome.reason
    assert run["iterations"] <= 40 and rows["rel_loss"].iloc[-1] <= 1e-6
    steps = rows.iloc[1:]
    assert steps["inner_iters"].min() >= 1
    assert (steps["inner_iters"] == 1).mean() >= 0.5  # the first trial is usually accepted
    assert {"t_forward", "t_gradient", "step_length", "history", "restarted"} <= set(rows.columns)
    assert not steps["restarted"].any()


def test_warm_up_copy_does_not_change_the_trajectory(tmp_path):
    """The runner's throw-away warm-up instance has its own optimizer and memory: the timed
    run's losses are the same with and without it."""
    losses = []
    for warmup in (0, 1):
        _, run, rows = run_in_process(tmp_path / f"w{warmup}", *RUN, "max_iters=8",
                                      f"warmup_steps={warmup}")
        assert run["warmup_steps"] == warmup
        losses.append(rows["loss"].tolist())
        inner = rows["inner_iters"].tolist()
        assert inner[1] > 1  # step 1 searches from scratch, not from a leftover history
    assert losses[0] == losses[1]


def test_a_step_that_cannot_move_restarts_the_history(problem):
    """torch returns without moving (here: its gradient tolerance fires); the history is
    cleared and the step says so."""
    p = copy.deepcopy(problem)
    cls = ALGORITHMS.get("lbfgs")
    alg = cls(p, cls.Params(tolerance_grad=1e9), torch.Generator())
    alg.setup(NullClock())
    info = alg.step(NullClock())
    assert torch.equal(p.W, problem.W)
    assert info.extras["restarted"] and info.inner_iters == 1
    assert not alg.optimizer.state


@pytest.mark.parametrize("params, word", [
    (dict(lr=0.0), "lr"), (dict(lr="big"), "lr"), (dict(history_size=0), "history_size"),
    (dict(max_iter=1.5), "max_iter"), (dict(max_eval=1), "max_eval"),
    (dict(tolerance_grad=-1.0), "tolerance_grad"), (dict(tolerance_change="x"), "tolerance_change"),
    (dict(line_search="armijo"), "strong_wolfe, none"),
])
def test_bad_parameters_are_refused(params, word):
    with pytest.raises(ConfigError, match=word):
        ALGORITHMS.get("lbfgs").Params(**params)


def test_bad_parameter_refused_by_the_preflight():
    with pytest.raises(ConfigError, match="algorithm.line_search must be one of strong_wolfe"):
        resolve(compose_cfg("algorithm=lbfgs", "algorithm.line_search=armijo"))


def test_yaml_defaults_are_the_params_defaults_and_listed():
    cfg = compose_cfg("algorithm=lbfgs")
    cls = ALGORITHMS.get("lbfgs")
    assert {k: v for k, v in cfg.algorithm.items() if k != "name"} == vars(cls.Params())
    assert "lbfgs [first_order]" in list_algorithms()


def test_memory_counts_the_history():
    cls = ALGORITHMS.get("lbfgs")
    shape = Shape(1024, 16384, 16, 4)
    grow = cls.memory_bytes(cls.Params(history_size=20), shape) - cls.memory_bytes(
        cls.Params(history_size=10), shape)
    assert grow == 2 * 10 * 16384 * 16 * 4
    assert cls.memory_bytes(cls.Params(), shape) > ALGORITHMS.get("gd").memory_bytes(
        ALGORITHMS.get("gd").Params(), shape) + 2 * 10 * 16384 * 16 * 4
