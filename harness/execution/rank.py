"""One rank of a distributed cell: ``python -m harness.execution.rank WORKDIR [RANK]``, started
by ``harness.execution.sharded_cell.run_ranks`` (RANK given), or by torchrun or srun (RANK
from their environment: ``RANK`` / ``SLURM_PROCID``, checked against the cell's P).

The rank joins the process group, builds its shard of the problem and runs the runner's own
loop (``runner._Run``) on it; its rows carry the ``comm`` phase (seconds of the step's
collectives, and per collective) with ``comm_bytes`` and ``comm_calls``, and the world size,
backend, hosts and threads per rank. It writes nothing into the store: its outcome goes to
``WORKDIR/rank<r>.out`` (rank 0's with the rows), from which the cell process writes the cell.

Rank 0 decides when a run ends by time (``time_budget_s``, ``wall_budget_s``): the other ranks
follow it through the collectives and are stopped when it has ended. A fault injected for the
tests (``testing.fail_at_iter``) fires on the last rank only: one rank dies, the others not.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.common.timing import PhaseClock
from harness.execution import sharded_cell
from harness.execution.config import resolve
from harness.execution.distributed import close_ranks, init_ranks
from harness.execution.loop import wall_clock_limit
from harness.execution.runner import Outcome, _apply_runtime_options, _peak_memory, _Run
from harness.linalg import kernels
from harness.model.sharded import EVALUATION, Comm, ShardedTwoLayer


def comm_columns(stats: dict[str, tuple[float, int, int]]) -> tuple[dict[str, float],
                                                                  dict[str, Any]]:
    """A step's collectives (``Comm.pop``) as (phases, extra columns): the ``comm`` phase,
    then ``comm_bytes``, ``comm_calls`` and per collective ``comm_s:<name>`` and
    ``comm_bytes:<name>``; the loss evaluated after the step is left out."""
    stats = {k: v for k, v in stats.items() if k != EVALUATION}
    phases = {"comm": sum(v[0] for v in stats.values())}
    extras: dict[str, Any] = {"comm_bytes": int(sum(v[1] for v in stats.values())),
                              "comm_calls": int(sum(v[2] for v in stats.values()))}
    for name, (seconds, size, _) in sorted(stats.items()):
        extras[f"comm_s:{name}"] = seconds
        extras[f"comm_bytes:{name}"] = int(size)
    return phases, extras


class CommPhaseClock(PhaseClock):
    """A phase clock whose phases leave out the collectives run inside them: those seconds
    are the step's ``comm`` phase, so the phases of a step still add up to at most its time."""

    def __init__(self, device, comm: Comm):
        super().__init__(device)
        self.comm = comm

    @contextmanager
    def __call__(self, name: str):
        before = self.comm.seconds
        try:
            with super().__call__(name):
                yield
        finally:
            self.times[name] -= self.comm.seconds - before


class _RankRun(_Run):
    def __init__(self, run, work: Path, launch: dict[str, Any], comm: Comm):
        super().__init__(run, work, launch)
        self.work, self.comm = work, comm
        self.facts = sharded_cell.facts(run.cfg, hosts(comm))
        self.info.update(self.facts)

    def _sharded(self) -> Outcome:
        with wall_clock_limit(self._wall_budget()):
            return self._loop()

    def _clock(self) -> PhaseClock:
        return CommPhaseClock(self.run.device, self.comm)

    def _make_problem(self):
        return ShardedTwoLayer.of(super()._make_problem(), self.comm)

    def _row(self, it, loss, loss0, step, total, inner, phases, extras):
        comm, more = comm_columns(self.comm.pop())  # at it = 0: the warm-up's and setup's
        if it > 0:
            phases, extras = {**phases, **comm}, {**extras, **more}
        row = super()._row(it, loss, loss0, step, total, inner, phases, extras)
        row.update(self.facts)
        return row

    def _finish(self, status: str, reason: str = "") -> Outcome:
        info = {**self.info, "rank_kernels": kernels.report()}
        if hasattr(self, "_wall_start"):
            info["wall_time_s"] = time.perf_counter() - self._wall_start
        sharded_cell.write_outcome(self.work / f"rank{self.comm.rank}.out", {
            "status": status, "reason": reason, "time": time.time(),
            "rows": self.rows if self.comm.rank == 0 else [], "info": info,
            "peak_memory_bytes": _peak_memory(self.run.device)["peak_memory_bytes"]})
        return Outcome(status, reason, self.cell)


#: (rank, world size) variables of the launchers that start ranks: torchrun, then srun
LAUNCHER_ENV = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


def launcher_rank(world: int) -> int:
    """This rank's number from its launcher's environment, whose world must be the cell's."""
    for rank_var, world_var in LAUNCHER_ENV:
        if rank_var in os.environ:
            theirs = int(os.environ.get(world_var, world))
            if theirs != world:
                raise SystemExit(f"the launcher started {theirs} ranks ({world_var}); the "
                                 f"cell has distributed.world_size={world}")
            return int(os.environ[rank_var])
    raise SystemExit("no rank given: pass it as an argument, or start the ranks with "
                     "torchrun or srun (RANK or SLURM_PROCID)")


def hosts(comm: Comm) -> str:
    """The hosts of every rank, sorted, comma-separated (one collective, before the run)."""
    import torch.distributed as dist

    names: list[str | None] = [None] * comm.world
    dist.all_gather_object(names, socket.gethostname())
    return ",".join(sorted({str(n) for n in names}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    work = Path(argv[0])
    sharded_cell._die_with_parent()
    spec = json.loads((work / "spec.json").read_text())
    container, world = spec["config"], int(spec["world_size"])
    rank = int(argv[1]) if len(argv) > 1 else launcher_rank(world)
    if rank != 0:  # rank 0 ends the run by time; the others follow it
        container = {**container, "time_budget_s": None, "wall_budget_s": None}
    if rank != world - 1:  # an injected fault: on the last rank only
        container = {**container, "testing": {**container["testing"], "fail_at_iter": None}}
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[%(asctime)s] rank {rank}: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout)
    node = container["distributed"]
    comm = init_ranks(rank, world, spec["init_file"], node["backend"], spec["timeout_s"],
                      threads=None)
    try:
        cfg = OmegaConf.create(container)
        run = resolve(cfg)
        _apply_runtime_options(cfg, run.device, spec["launch"])
        import torch

        torch.set_num_threads(int(node["threads_per_rank"]))
        _RankRun(run, work, spec["launch"], comm).execute()
    finally:
        close_ranks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
