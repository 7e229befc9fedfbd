"""The runner's clock: wall time with device synchronisation, and named phases inside a step."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from harness.device import synchronize


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
