"""Sizes, problems and feasibility rules shared by the benchmark modules.

Benchmarks skip a case by raising ``NotImplementedError`` in ``setup`` (asv's convention):
the large size unless ``NLT_ASV_LARGE=1``, a method whose planned memory exceeds the suite's
budget, a method or sketch that this commit does not have.
"""

from __future__ import annotations

import os

import torch

from harness.model import make_generator, make_problem

#: d of every benchmark problem (the issue's reference sizes use d = 16).
D = 16
#: (n, m) grid: small and medium always; large only with NLT_ASV_LARGE=1.
SMALL, MEDIUM, LARGE = (256, 4096), (1024, 16384), (4096, 65536)
LARGE_ENABLED = os.environ.get("NLT_ASV_LARGE", "") not in ("", "0")
SIZES = [SMALL, MEDIUM, LARGE] if LARGE_ENABLED else [SMALL, MEDIUM]  # no permanent n/a column
#: planned memory above this is skipped (lifted to 32 GiB with the large sizes).
MEMORY_BUDGET = (32 if LARGE_ENABLED else 2) * 2**30

torch.set_num_threads(int(os.environ.get("NLT_ASV_THREADS", torch.get_num_threads())))


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    if tuple(size) == LARGE and not LARGE_ENABLED:
        raise NotImplementedError("large size: set NLT_ASV_LARGE=1")
    return size


def problem(size: tuple[int, int], seed: int = 0, dtype=torch.float32):
    """The synthetic problem at (n, m), d = D, float32 on the CPU."""
    n, m = check_size(size)
    return make_problem("synthetic", n=n, d=D, m=m, seed=seed, dtype=dtype)


def generator(seed: int = 0) -> torch.Generator:
    return make_generator(seed)
