"""Clocks: wall time with device synchronisation, named phases inside a step, and the one
best-of-N timing loop that kernel routes, the calibration and ``nlt-bench`` share."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from harness.common.device import synchronize


class PhaseClock:
    """Hands algorithms ``with phase("solve"): ...``; accumulates seconds per phase name.

    Each phase boundary synchronises the device, so a phase's time is the work it queued.
    The runner reads and resets the totals around every step; algorithms never read clocks.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.times: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.times[name] += time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out = dict(self.times)
        self.times.clear()
        return out


class NullClock:
    """A PhaseClock that measures nothing, for calling ``step`` outside the runner."""

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        yield

    def pop(self) -> dict[str, float]:
        return {}


class Stopwatch:
    """Synchronised wall time of a block: ``with Stopwatch(dev) as sw: ...; sw.seconds``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def best_time(fn: Callable[[], object], device: torch.device, *, repeats: int = 5,
              min_seconds: float = 0.0, max_calls: int = 200,
              budget_s: float = math.inf) -> float:
    """The minimum over synchronised calls of ``fn`` after one untimed call (first-call costs
    are not the kernel's): at least ``repeats`` calls, more while all calls so far took less
    than ``min_seconds`` (at most ``max_calls``), and no more once they took over ``budget_s``
    (after two). The minimum, not the mean: on a shared machine noise only ever adds time,
    and a single call can lose a scheduler slice."""
    fn()
    synchronize(device)
    best, spent, calls = math.inf, 0.0, 0
    while calls < repeats or (spent < min_seconds and calls < max_calls):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        dt = time.perf_counter() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
        if spent > budget_s and calls >= 2:
            break
    return best
