"""One cell on P ranks (``distributed=local``): the process group, and a rank's run of a
method on its shard of the two-layer problem (``harness.model.sharded``).

``rank_trajectory`` is the check the tests drive in-process (``torch.multiprocessing``): every
rank runs the same methods on its shard and rank 0 keeps the losses and the gathered W, which
must follow the unsharded run. ``harness.execution.sharded_cell`` launches the ranks of a cell.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.common.timing import NullClock
from harness.model import make_generator, make_problem, stream_seed
from harness.model.sharded import Comm, ShardedTwoLayer


def init_ranks(rank: int, world: int, init_file: str | Path, backend: str = "gloo",
               timeout_s: float = 300.0, threads: int | None = 1) -> Comm:
    """Join the process group of ``world`` ranks through a file on this machine (no port to
    pick); ``threads`` torch threads per rank. A rank that waits on a dead one gives up after
    ``timeout_s``."""
    import torch.distributed as dist

    if threads is not None:
        torch.set_num_threads(int(threads))
    dist.init_process_group(backend, init_method=f"file://{os.fspath(init_file)}", rank=rank,
                            world_size=world,
                            timeout=datetime.timedelta(seconds=float(timeout_s)))
    return Comm()


def close_ranks() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Case:
    """One method run for ``steps`` steps on the synthetic problem (n, d, m), float64."""

    algorithm: str
    params: dict[str, Any]
    n: int = 16
    d: int = 4
    m: int = 64
    steps: int = 4
    seed: int = 0


def run_case(case: Case, comm: Comm | None) -> dict[str, Any]:
    """Losses after each of ``case.steps`` steps and the final W (whole: gathered from the
    ranks), on the unsharded problem (``comm`` None) or on this rank's shard."""
    from algorithms.base import ALGORITHMS

    problem = make_problem("synthetic", case.n, case.d, case.m, case.seed, dtype=torch.float64)
    if comm is not None:
        problem = ShardedTwoLayer.of(problem, comm)
    cls = ALGORITHMS.get(case.algorithm)
    algorithm = cls(problem, cls.Params(**case.params),
                    make_generator(stream_seed(case.seed, "algorithm")))
    clock = NullClock()
    algorithm.setup(clock)
    losses = [problem.loss()]
    for _ in range(case.steps):
        algorithm.step(clock)
        losses.append(problem.loss())
    W = problem.params.detach()
    if comm is not None:
        W = gather_rows(problem, comm)
    return {"losses": losses, "W": W.clone()}


def gather_rows(problem: ShardedTwoLayer, comm: Comm) -> torch.Tensor:
    """The whole W from every rank's block of rows."""
    bounds = problem.bounds
    widest = max(b1 - b0 for b0, b1 in zip(bounds, bounds[1:]))
    padded = problem.W.new_zeros(widest, problem.d)
    padded[:problem.W.shape[0]] = problem.W
    parts = comm.all_gather(padded, "gather")
    return torch.cat([part[:b1 - b0] for part, b0, b1 in zip(parts, bounds, bounds[1:])])


def rank_trajectory(rank: int, world: int, init_file: str, cases: list[Case],
                    out: str) -> None:
    """Entry point of one rank (``torch.multiprocessing.spawn``): run every case on this
    rank's shard; rank 0 saves the results to ``out``."""
    comm = init_ranks(rank, world, init_file, timeout_s=120.0)
    try:
        results = [run_case(case, comm) for case in cases]
        if rank == 0:
            torch.save(results, out)
    finally:
        close_ranks()
