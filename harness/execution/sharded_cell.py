"""Launching one cell on P ranks (``distributed=local distributed.world_size=P``).

The cell's own process (the runner, holding the cell's lock) validates P and plans one rank's
memory; it then starts P rank processes on this machine (``python -m harness.execution.rank``),
which join a gloo process group through a file and each run the method on their block of
neurons (``harness.model.sharded``). Every rank writes a small outcome file when it ends; rank
0's carries the rows. The cell process writes the cell (``results.write_cell``, atomic) from
rank 0's outcome, or a ``failed`` one naming the first rank that failed and why. A rank that
dies takes the others with it: they are killed by the cell process, and each rank also dies
with the cell process (``PR_SET_PDEATHSIG``), so no rank survives its cell.

This module does not import the runner (the runner calls it); ``harness.execution.rank``,
the rank's entry point, does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.common.device import format_bytes
from harness.common.errors import ConfigError, unknown
from harness.model import TWO_LAYER, Shape
from harness.model.sharded import SHARDED_FEATURES

KINDS = ("none", "local")
BACKENDS = ("gloo",)
#: how long the other ranks get to end on their own after rank 0 has ended, before the kill
GRACE_S = 5.0
#: a rank waiting in a collective on a rank that hangs gives up after this long
COLLECTIVE_TIMEOUT_S = 600.0
#: at most this many ranks on one machine
MAX_LOCAL_RANKS = 256


def check_distributed(node: dict[str, Any], device, model: str) -> None:
    """The ``distributed`` options of a run: a known kind and backend, P ≥ 1 (and > 1 for a
    launcher), a CPU run of the two-layer model. A ConfigError names the bad value."""
    kind, world = node["kind"], node["world_size"]
    if kind not in KINDS:
        raise unknown("distributed.kind", kind, list(KINDS))
    if node["backend"] not in BACKENDS:
        raise unknown("distributed.backend", node["backend"], list(BACKENDS))
    for key in ("world_size", "threads_per_rank"):
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"distributed.{key} must be a positive integer, got {value!r}")
    if kind == "none":
        if world != 1:
            raise ConfigError(f"distributed.world_size={world} needs a launcher: "
                              f"distributed=local (P processes on this machine)")
        return
    if kind == "local" and world > MAX_LOCAL_RANKS:
        # not tied to this machine's cores: the pre-flight may run on a SLURM login node
        raise ConfigError(f"distributed.world_size={world} ranks on one machine; use at "
                          f"most {MAX_LOCAL_RANKS}")
    if model != "two_layer":
        raise ConfigError(f"distributed={kind} shards the two-layer model over its width; "
                          f"model={model} has no sharded form (use model=two_layer)")
    if getattr(device, "type", device) != "cpu":
        raise ConfigError(f"distributed={kind} runs gloo ranks on the CPU; got "
                          f"device={getattr(device, 'type', device)} (use device=cpu)")


def world_size(cfg) -> int:
    node = cfg.get("distributed") if hasattr(cfg, "get") else None
    return int(node["world_size"]) if node and node["kind"] != "none" else 1


def active(cfg) -> bool:
    """Whether the cell runs on ranks (``distributed.kind`` other than none)."""
    node = cfg.get("distributed") if hasattr(cfg, "get") else None
    return bool(node) and node["kind"] != "none"


def rank_shape(shape: Shape, cfg) -> Shape:
    """One rank's share of a distributed cell: the widest block of ⌈m/P⌉ neurons, with the
    sharded structure; the whole shape otherwise."""
    return rank_shape_of(shape, world_size(cfg)) if active(cfg) else shape


def unshardable_cell(cfg, run) -> str | None:
    """Why the distributed cell ``run`` cannot run (None: it can, or it is not distributed)."""
    return unshardable(run.algorithm, run.params) if active(cfg) else None


def unshardable(algorithm, params) -> str | None:
    """Why ``algorithm`` cannot run on a sharded problem (None: it can): its own declaration
    (``Algorithm.unshardable``), or structure of the whole model it needs."""
    reason = getattr(algorithm, "unshardable", None)
    if reason:
        return f"{algorithm.name} cannot run sharded over the width: {reason}"
    missing = algorithm.required_features(params) - SHARDED_FEATURES
    if missing:
        need = ", ".join(sorted(missing))
        what = " (the whole pattern D on one process)" if TWO_LAYER in missing else ""
        return f"{algorithm.name} cannot run sharded over the width: it needs the {need} " \
               f"structure{what}"
    return None


#: the largest P the memory plan of a cell too big for one process looks for
MAX_PLANNED_RANKS = 4096


def plan_ranks(plan: dict[str, Any], run, shape: Shape, cfg) -> None:
    """Amend the memory ``plan`` of a cell (``runner.memory_plan``; ``shape``: one rank's
    share when distributed) with its ranks. Distributed on this machine: the P ranks together
    must fit its budget (``rank_memory_bytes`` each). One process over its budget: the reason
    names the P that would bring each rank under it (ranks on machines of this memory)."""
    budget = plan["memory_budget_bytes"]
    if active(cfg):
        world = world_size(cfg)
        each = plan["estimated_memory_bytes"]
        plan["rank_memory_bytes"] = each
        plan["estimated_memory_bytes"] = world * each
        if plan["reason"] is None and world * each > budget:
            plan["reason"] = (f"{world} ranks of about {format_bytes(each)} each need "
                              f"{format_bytes(world * each)} on this machine, above the memory "
                              f"budget of {format_bytes(budget)}")
        return
    if plan["reason"] is None or shape.model != "two_layer" or \
            unshardable(run.algorithm, run.params):
        return
    if run.algorithm.skip(run.params, shape, 1 << 62):  # not a memory reason
        return
    world = 2
    while world <= MAX_PLANNED_RANKS:
        part = rank_shape_of(shape, world)
        each = run.algorithm.memory_bytes(run.params, part) + plan["estimated_data_memory_bytes"]
        if each <= budget and not run.algorithm.skip(run.params, part, budget):
            plan["ranks_needed"] = world
            plan["reason"] += (f"; sharded over P = {world} ranks it needs about "
                               f"{format_bytes(each)} per rank (one rank per machine of this "
                               f"memory: docs/distributed.md)")
            return
        world *= 2


def rank_shape_of(shape: Shape, world: int) -> Shape:
    return replace(shape, m=math.ceil(shape.m / world), features=SHARDED_FEATURES)


def cell_threads(cfg) -> int:
    """The torch threads of all the cell's ranks together."""
    return world_size(cfg) * int(cfg["distributed"]["threads_per_rank"])


def facts(cfg) -> dict[str, Any]:
    """What run.json and every row of a sharded cell record of its ranks."""
    node = cfg["distributed"]
    return {"distributed": str(node["kind"]), "world_size": int(node["world_size"]),
            "backend": str(node["backend"]), "threads_per_rank": int(node["threads_per_rank"]),
            "hosts": socket.gethostname()}


# --- the cell process: start the ranks, watch them, collect rank 0's outcome ---------------


def _die_with_parent() -> None:
    """In a rank: SIGKILL when the cell process that started it exits (Linux)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _death(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def read_outcome(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


def write_outcome(path: Path, outcome: dict[str, Any]) -> None:
    """A rank's outcome, atomically (a reader never sees half of it)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(outcome, fh)
    os.replace(tmp, path)


def run_ranks(container: dict[str, Any], launch: dict[str, Any]
              ) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    """Run the cell ``container`` (a resolved config) on its P ranks. Returns (status,
    reason, rank 0's rows, info for run.json); a rank that dies or fails makes the cell
    ``failed`` with that rank's reason, and no rank outlives this call. Rank 0's log lines
    (its progress) are passed on to the cell's log once it has ended."""
    world = int(container["distributed"]["world_size"])
    with tempfile.TemporaryDirectory(prefix="nlt-ranks-") as tmp:
        work = Path(tmp)
        spec = {"config": container, "launch": launch, "world_size": world,
                "init_file": str(work / "rendezvous"), "timeout_s": COLLECTIVE_TIMEOUT_S}
        (work / "spec.json").write_text(json.dumps(spec, default=str))
        procs = []
        for rank in range(world):
            err = open(work / f"rank{rank}.err", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "harness.execution.rank", str(work), str(rank)],
                stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            err.close()
        try:
            return _watch(procs, work, world)
        finally:
            for proc in procs:  # no rank survives its cell
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            _relay(work / "rank0.err")


def _relay(path: Path, limit: int = 200) -> None:
    """The last ``limit`` lines of a rank's output into the harness log."""
    log = logging.getLogger("harness")
    try:
        lines = path.read_text(errors="replace").splitlines()[-limit:]
    except OSError:
        return
    for line in lines:
        if line.strip():
            log.info("%s", line)


#: How long a failed rank's peers get to report their own outcome (the cause may be theirs).
ECHO_WAIT_S = 2.0


def _echo(reason: str) -> bool:
    """Whether a rank's failure only echoes another's: gloo's lost connection to a peer."""
    text = str(reason)
    return "Connection closed by peer" in text or "remote worker" in text


def _watch(procs, work: Path, world: int):
    """Poll the ranks until the cell has its outcome: rank 0's, once it ended (the others
    get ``GRACE_S`` to end too); or the first rank that died or failed before it."""
    started = time.perf_counter()
    rank0_done: float | None = None
    first_failure: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        outs = [read_outcome(work / f"rank{r}.out") if c is not None else None
                for r, c in enumerate(codes)]
        if rank0_done is None:
            dead = [r for r, c in enumerate(codes)
                    if c is not None and (c != 0 or outs[r] is None)]
            if dead:  # a rank died: the cell fails with the first one's reason
                rank = dead[0]
                why = _last_line(work / f"rank{rank}.err")
                return ("failed", f"rank {rank} of {world} {_death(codes[rank])} after "
                        f"{time.perf_counter() - started:.1f}s" + (f": {why}" if why else ""),
                        [], {})
            failed = [(_echo(o["reason"]), o["time"], r) for r, o in enumerate(outs)
                      if o is not None and o["status"] == "failed"]
            if failed and first_failure is None:
                first_failure = time.perf_counter()
            # the cause, not its echo: a rank that lost its peer fails too, sometimes first;
            # wait a moment for every rank's outcome, then take the first failure that is
            # not a lost connection
            settled = all(c is not None for c in codes) or (
                first_failure is not None and time.perf_counter() - first_failure > ECHO_WAIT_S)
            if failed and settled:
                rank = min(failed)[2]
                out = outs[rank]
                return ("failed", f"rank {rank} of {world}: {out['reason']}",
                        (outs[0] or {}).get("rows", []), (outs[0] or {}).get("info", {}))
            if codes[0] is not None:
                rank0_done = time.perf_counter()
        if rank0_done is not None and (all(c is not None for c in codes) or
                                       time.perf_counter() - rank0_done > GRACE_S):
            out = read_outcome(work / "rank0.out")
            info = dict(out["info"])
            info["rank_peak_memory_bytes"] = [
                (read_outcome(work / f"rank{r}.out") or {}).get("peak_memory_bytes")
                for r in range(world)]
            return out["status"], out["reason"], out["rows"], info
        time.sleep(0.05)
