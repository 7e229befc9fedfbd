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
import re
import shutil
import signal
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

#: none: one process; local: P rank processes started here; torchrun: P ranks on this
#: machine started by torch's launcher (``torch.distributed.run``); slurm: P tasks of srun
#: over ``nodes`` nodes of the job's allocation
KINDS = ("none", "local", "torchrun", "slurm")
#: kinds whose ranks all run on this machine
ONE_MACHINE = ("local", "torchrun")
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
    for key in ("world_size", "threads_per_rank", "nodes"):
        value = node.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"distributed.{key} must be a positive integer, got {value!r}")
    nodes = node.get("nodes", 1)
    if kind == "none":
        if world != 1:
            raise ConfigError(f"distributed.world_size={world} needs a launcher: "
                              f"distributed=local (P processes on this machine), torchrun "
                              f"or slurm")
        return
    if kind in ONE_MACHINE and nodes != 1:
        raise ConfigError(f"distributed={kind} runs its ranks on this machine, got "
                          f"distributed.nodes={nodes}; for several nodes use "
                          f"distributed=slurm")
    if kind == "slurm":
        if world % nodes:
            raise ConfigError(f"distributed.world_size={world} is not a multiple of "
                              f"distributed.nodes={nodes} (the same ranks on every node)")
        if shutil.which("srun") is None:
            raise ConfigError("distributed=slurm starts its ranks with srun, which is not on "
                              "PATH here (run it on a SLURM cluster, e.g. with "
                              "hydra/launcher=slurm; docs/distributed.md)")
    if kind in ONE_MACHINE and world > MAX_LOCAL_RANKS:
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
    share when distributed) with its ranks. Distributed: the P / nodes ranks of one
    machine together must fit its budget (``rank_memory_bytes`` each). One process over its
    budget: the reason names the P that would bring each rank under it (ranks on machines of
    this memory)."""
    budget = plan["memory_budget_bytes"]
    if active(cfg):
        world = world_size(cfg)
        here = world // int(cfg["distributed"].get("nodes", 1) or 1)  # ranks on one machine
        each = plan["estimated_memory_bytes"]
        plan["rank_memory_bytes"] = each
        plan["estimated_memory_bytes"] = here * each
        if plan["reason"] is None and here * each > budget:
            plan["reason"] = (f"{here} ranks of about {format_bytes(each)} each need "
                              f"{format_bytes(here * each)} on one machine, above the memory "
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


def idle_task(cfg) -> bool:
    """A task other than the first of a SLURM job that spans the nodes of a
    ``distributed=slurm`` cell (submitit calls the cell in every task): it runs nothing, and
    the first task's srun starts the ranks on every node (``--overlap``)."""
    return (active(cfg) and cfg["distributed"]["kind"] == "slurm"
            and os.environ.get("SLURM_PROCID", "0") != "0")


def cell_threads(cfg) -> int:
    """The torch threads of all the cell's ranks together."""
    return world_size(cfg) * int(cfg["distributed"]["threads_per_rank"])


def facts(cfg, hosts: str) -> dict[str, Any]:
    """What run.json and every row of a sharded cell record of its ranks (``hosts``: every
    rank's host, ``rank.hosts``)."""
    node = cfg["distributed"]
    return {"distributed": str(node["kind"]), "world_size": int(node["world_size"]),
            "backend": str(node["backend"]), "threads_per_rank": int(node["threads_per_rank"]),
            "hosts": hosts}


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


def rank_command(kind: str, world: int, nodes: int, threads: int, work: Path) -> list[str]:
    """The command that starts all the ranks of a cell under a launcher (torchrun, srun);
    each rank reads its number from the launcher's environment (``harness.execution.rank``)."""
    entry = ["-m", "harness.execution.rank", str(work)]
    if kind == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={world}", "--max-restarts=0", *entry]
    if kind == "slurm":
        return ["srun", f"--nodes={nodes}", f"--ntasks={world}",
                f"--ntasks-per-node={world // nodes}", f"--cpus-per-task={threads}",
                "--kill-on-bad-exit=1", "--overlap", "--export=ALL", sys.executable, *entry]
    raise ValueError(f"no launcher command for distributed={kind}")


def run_ranks(container: dict[str, Any], launch: dict[str, Any]
              ) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    """Run the cell ``container`` (a resolved config) on its P ranks. Returns (status,
    reason, rank 0's rows, info for run.json); a rank that dies or fails makes the cell
    ``failed`` with that rank's reason, and no rank outlives this call. Rank 0's log lines
    (its progress) are passed on to the cell's log once it has ended.

    ``local`` starts each rank itself; ``torchrun`` and ``slurm`` start one launcher that
    starts them. The ranks meet through a file in a working directory that every rank can
    read: a temporary one here, or (slurm: ranks on other nodes) one under the store, which
    a cluster keeps on a shared file system."""
    node = container["distributed"]
    kind, world = str(node["kind"]), int(node["world_size"])
    shared = None
    if kind == "slurm":
        shared = Path(container["store"]).resolve() / ".ranks"
        shared.mkdir(parents=True, exist_ok=True)
    try:
        return _run_ranks_in(container, launch, kind, world, node, shared)
    finally:
        if shared is not None:
            try:
                shared.rmdir()  # only when no other cell's ranks meet there
            except OSError:
                pass


def _run_ranks_in(container, launch, kind: str, world: int, node, shared: Path | None):
    with tempfile.TemporaryDirectory(prefix="nlt-ranks-", dir=shared) as tmp:
        work = Path(tmp)
        spec = {"config": container, "launch": launch, "world_size": world,
                "init_file": str(work / "rendezvous"), "timeout_s": COLLECTIVE_TIMEOUT_S}
        (work / "spec.json").write_text(json.dumps(spec, default=str))
        if kind == "local":
            commands = [[sys.executable, "-m", "harness.execution.rank", str(work), str(r)]
                        for r in range(world)]
        else:
            commands = [rank_command(kind, world, int(node.get("nodes", 1)),
                                     int(node["threads_per_rank"]), work)]
        procs = []
        for i, command in enumerate(commands):
            log_name = f"rank{i}.err" if kind == "local" else "launcher.err"
            err = open(work / log_name, "wb")
            # a launcher dies with the cell process too (its ranks die with it)
            procs.append(subprocess.Popen(command, stdout=err, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL,
                                          start_new_session=kind != "local",
                                          preexec_fn=None if kind == "local"
                                          else _die_with_parent))
            err.close()
        try:
            return _watch(procs, work, world, launcher=None if kind == "local" else kind)
        finally:
            _stop(procs, launcher=kind != "local")
            _relay(work / ("rank0.err" if kind == "local" else "launcher.err"))


def _stop(procs, launcher: bool) -> None:
    """No rank survives its cell. A launcher gets SIGTERM first (srun then ends the job step
    on every node; torchrun its workers), then SIGKILL with its process group."""
    for proc in procs:
        if proc.poll() is None and launcher:
            proc.terminate()
            try:
                proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if launcher:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything of its group still there
            except (ProcessLookupError, PermissionError):
                pass


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


#: torchrun's summary of a failed worker: "rank : 1 (local_rank: 1)" then "exitcode : -9"
_TORCHRUN_RANK = re.compile(r"rank\s*:\s*(\d+)")
_TORCHRUN_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")


def _launcher_death(kind: str, code: int, work: Path, world: int) -> str:
    """Why a launcher ended before rank 0 did: the rank and signal torchrun names, else the
    launcher's exit and its last line."""
    try:
        text = (work / "launcher.err").read_text(errors="replace")
    except OSError:
        text = ""
    ranks, codes = _TORCHRUN_RANK.findall(text), _TORCHRUN_CODE.findall(text)
    if kind == "torchrun" and ranks and codes:
        return f"rank {ranks[0]} of {world} {_death(int(codes[0]))} (torchrun {_death(code)})"
    why = _last_line(work / "launcher.err")
    return f"{kind} {_death(code)} before rank 0 ended" + (f": {why}" if why else "")


def _watch(procs, work: Path, world: int, launcher: str | None = None):
    """Poll the ranks until the cell has its outcome: rank 0's, once it ended (the others
    get ``GRACE_S`` to end too); or the first rank that died or failed before it. Under a
    launcher (``procs`` its one process) a rank is known by its outcome file, and a rank
    that died by the launcher's end."""
    started = time.perf_counter()
    rank0_done: float | None = None
    first_failure: float | None = None
    while True:
        if launcher is None:
            codes = [p.poll() for p in procs]
        else:  # every rank ends with its launcher
            codes = [procs[0].poll()] * world
        outs = [read_outcome(work / f"rank{r}.out") if launcher or c is not None else None
                for r, c in enumerate(codes)]
        if rank0_done is None:
            failed = [(_echo(o["reason"]), o["time"], r) for r, o in enumerate(outs)
                      if o is not None and o["status"] == "failed"]
            if launcher is not None:
                # the launcher ended with no outcome of rank 0, or only echoes of a lost
                # peer: a rank died, and the launcher's own output says which
                if codes[0] not in (None, 0) and (outs[0] is None or all(
                        f[0] for f in failed)):
                    return ("failed", _launcher_death(launcher, codes[0], work, world), [], {})
                if codes[0] == 0 and outs[0] is None:
                    return ("failed", f"{launcher} ended without an outcome of rank 0: "
                            f"{_last_line(work / 'launcher.err')}", [], {})
                dead = []
            else:
                dead = [r for r, c in enumerate(codes)
                        if c is not None and (c != 0 or outs[r] is None)]
            if dead:  # a rank died: the cell fails with the first one's reason
                rank = dead[0]
                why = _last_line(work / f"rank{rank}.err")
                return ("failed", f"rank {rank} of {world} {_death(codes[rank])} after "
                        f"{time.perf_counter() - started:.1f}s" + (f": {why}" if why else ""),
                        [], {})
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
            # rank 0 ended well (a failure waits above for the cause)
            if not failed and (codes[0] is not None if launcher is None
                               else outs[0] is not None):
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
