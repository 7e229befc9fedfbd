"""Driving an algorithm on a problem: what the runner, ``nlt-bench`` and the asv suite share.

``warm_up`` is the one warm-up rule of the harness: every method, wherever it is timed, first
runs untimed steps of a throw-away copy of itself on the problem, which is then put back to
its initial weights. First-call costs (thread pools, allocator growth, lazy library
initialisation, kernel-route calibration in ``harness.kernels``) are paid there, so that the
first timed step means what every other step means.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from harness.timing import NullClock, Stopwatch


def warm_up(problem, make_algorithm: Callable[[], Any], steps: int = 1, clock=None) -> float:
    """Run ``steps`` untimed steps of ``make_algorithm()`` (setup included) on ``problem``,
    then restore W to W₀ and drop the copy. Returns the seconds it took (0 for no steps)."""
    if steps <= 0:
        return 0.0
    clock = clock if clock is not None else NullClock()
    with Stopwatch(problem.device) as sw:
        warm = make_algorithm()
        warm.setup(clock)
        for _ in range(steps):
            warm.step(clock)
        del warm
        with torch.no_grad():
            problem.W.copy_(problem.W0)
        problem.W.grad = None
        gc.collect()
    clock.pop()
    return sw.seconds
