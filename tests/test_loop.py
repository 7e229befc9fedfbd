"""harness/execution/loop.py: the stopping rule, the timed step and the warm-up that the runner and
nlt-bench share."""

from __future__ import annotations

import math

import pytest
import torch

from harness.execution.loop import DIVERGENCE_FACTOR, Stopping, timed_step, warm_up
from harness.linalg import kernels
from harness.model import make_problem


@pytest.mark.parametrize("it, loss, timed, expected", [
    (3, math.nan, 0.0, "diverged"),
    (3, 2 * DIVERGENCE_FACTOR, 0.0, "diverged"),
    (3, 1e-7, 99.0, "converged"),  # reaching ε wins over the budget it also used up
    (3, 0.5, 10.0, "time_budget"),
    (5, 0.5, 1.0, "max_iters"),
    (3, 0.5, 1.0, None),
])
def test_each_verdict_of_the_stopping_rule(it, loss, timed, expected):
    rule = Stopping(max_iters=5, target_rel_loss=1e-6, time_budget_s=10.0)
    ended = rule.verdict(it, loss, 1.0, timed)
    assert (ended[0] if ended else None) == expected


def test_no_budget_never_stops_on_time():
    assert Stopping(5, 1e-6).verdict(1, 0.5, 1.0, 1e9) is None


class _Counting:
    """A stand-in algorithm: counts its steps, moves W, and calibrates once."""

    def __init__(self, problem):
        self.problem, self.steps = problem, 0

    def setup(self, phase):
        pass

    def step(self, phase):
        self.steps += 1
        self.problem.W.add_(1.0)
        kernels.selector().calibration_s += 0.25  # as if a new shape had been calibrated
        return None


def test_timed_step_leaves_calibration_out_and_warm_up_restores_w():
    p = make_problem("synthetic", n=8, d=3, m=16, seed=0, dtype=torch.float64)
    alg = _Counting(p)
    _, seconds, cal = timed_step(alg, None, torch.device("cpu"))
    assert cal == pytest.approx(0.25) and seconds < 0.25 and alg.steps == 1
    W0 = p.W0.clone()
    made = []
    warm_up(p, lambda: made.append(_Counting(p)) or made[-1], steps=3)
    assert made[0].steps == 3 and torch.equal(p.W, W0)
    assert warm_up(p, lambda: _Counting(p), steps=0) == 0.0


def test_wall_clock_limit_interrupts_and_is_removed():
    import time

    from harness.execution.loop import WallBudgetExceeded, wall_clock_limit

    with pytest.raises(WallBudgetExceeded, match="wall-clock budget of 0.2s"):
        with wall_clock_limit(0.2):
            for _ in range(100):
                time.sleep(0.05)
    with wall_clock_limit(0.2):  # finishing in time: no alarm left behind
        pass
    time.sleep(0.3)
    with wall_clock_limit(None):
        time.sleep(0.01)


def test_a_cell_over_its_wall_budget_keeps_its_steps(store):
    from tests.helpers import run_in_process

    outcome, run, rows = run_in_process(store, "algorithm=gd", "algorithm.lr=0.5", "data.n=16",
                                        "model.m=32", "data.d=4", "max_iters=100",
                                        "wall_budget_s=1.5", "testing.slow_step_s=0.3")
    assert outcome.status == "time_budget" and "wall-clock" in run["reason"]
    assert 2 <= run["iterations"] < 100 and len(rows) == run["rows"]
    assert (rows["step_time_s"].iloc[1:] < 0.3).all()  # the sleep is outside the clock
