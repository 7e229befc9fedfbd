"""One cell sharded over the width m (harness.model.sharded, distributed=local): every shardable
method follows the unsharded float64 trajectory on P = 2 and P = 4 gloo ranks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from algorithms.base import ALGORITHMS
from harness.common.errors import ConfigError
from harness.costmodel import Profile, predict
from harness.costmodel.comm import (
    CLUSTER_LINKS,
    Link,
    cluster_link,
    fit_link,
)
from harness.execution.config import resolve
from harness.execution.distributed import Case, rank_trajectory, run_case
from harness.execution.runner import run_cell
from harness.execution.sharded_cell import rank_shape_of
from harness.model import Shape, make_problem
from harness.model.sharded import Comm, ShardedTwoLayer, shard_bounds
from harness.perf.comm import (
    frontier_by_ranks,
    frontier_text,
    measure_link,
    predicted_vs_measured,
)
from tests.helpers import compose_cfg, nlt_run, run_in_process

TIGHT = {"tol": 1e-13, "max_inner": 200}
#: every shardable method, tiny sizes; a sketched or Nyström-preconditioned CG converges to
#: the same step whatever its preconditioner, so it is solved tightly
CASES = [
    Case("gd", {}),
    Case("gn_gram", {}),
    Case("ngd", {}),
    Case("ggn", {"batch_size": 8}),
    Case("gn_exact", {"jacobian": "closed_form"}),
    Case("gn_cg", {}),
    Case("gn_cg", {"damping": 1e-3}, m=62),  # blocks of unequal size
    Case("gn_nystrom", {"rank": 8}),
    Case("gn_sketch", TIGHT),
    Case("gn_sketch", {**TIGHT, "sketch": "gaussian"}, m=62),
    Case("gn_sketch", {**TIGHT, "sketch": "srht", "factor": "qr", "damping": 1e-6}),
    Case("gn_sketch", {**TIGHT, "sketch": "countsketch"}),
    Case("adam", {"lr": 1e-2}),
    Case("sgd", {"batch_size": 8}),
]


def _spawn(world: int, cases: list[Case], tmp_path) -> list[dict]:
    out = tmp_path / f"ranks{world}.pt"
    mp.spawn(rank_trajectory, args=(world, str(tmp_path / f"init{world}"), cases, str(out)),
             nprocs=world, join=True)
    return torch.load(out)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("world", [2, 4])
def test_every_shardable_method_follows_the_unsharded_trajectory(world, tmp_path):
    sharded = _spawn(world, CASES, tmp_path)
    for case, got in zip(CASES, sharded):
        want = run_case(case, None)
        losses, ref = torch.tensor(got["losses"]), torch.tensor(want["losses"])
        assert ref[-1] < ref[0], case  # the run moves
        assert _rel(losses, ref) < 1e-9, (case, losses, ref)
        assert _rel(got["W"], want["W"]) < 1e-9, case


def test_one_rank_is_the_unsharded_problem():
    """Without a process group the shard is the whole problem: the same operators."""
    p = make_problem("synthetic", 12, 3, 40, 0, dtype=torch.float64)
    s = ShardedTwoLayer.of(p, Comm())
    lin, slin = p.linearize(), s.linearize()
    assert torch.equal(lin.outputs, slin.outputs)
    J, SJ = lin.jacobian, slin.jacobian
    assert torch.equal(J.gram(0.5), SJ.gram(0.5))
    v = torch.randn(12, 2, dtype=torch.float64)
    assert torch.allclose(J.gram_operator(0.1) @ v, SJ.gram_operator(0.1) @ v)
    assert torch.allclose(J.gram_operator().diagonal(), SJ.gram_operator().diagonal())
    assert torch.allclose(J.dense(), SJ.dense())
    V = torch.randn(40, 3, dtype=torch.float64)
    assert torch.allclose(J @ V, SJ @ V)


def test_blocks_cover_every_neuron_once():
    for m, world in [(64, 4), (62, 4), (5, 2), (7, 7)]:
        b = shard_bounds(m, world)
        assert b[0] == 0 and b[-1] == m and len(b) == world + 1
        assert max(y - x for x, y in zip(b, b[1:])) - min(y - x for x, y in zip(b, b[1:])) <= 1


# --- one cell through the runner: distributed=local -----------------------------------------

TINY = ("data.n=16", "data.d=4", "model.m=64", "dtype=float64", "target_rel_loss=1e-30")


def _rank_processes() -> list[int]:
    """Rank processes (harness.execution.rank) that are children of this process."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"harness.execution.rank" in cmd:
            out.append(int(stat.parent.name))
    return out


def _two_ranks_like_one(tmp_path, kind: str):
    """A gn_gram cell on 2 ranks started by ``kind`` and its one-process twin: the sharded
    cell's (outcome, run.json, rows), its losses checked against the twin's to 1e-9."""
    out, run, rows = run_in_process(tmp_path, "algorithm=gn_gram", "max_iters=3",
                                    f"distributed={kind}", "distributed.world_size=2", *TINY)
    _, _, ref = run_in_process(tmp_path, "algorithm=gn_gram", "max_iters=3", *TINY)
    assert out.status == "max_iters", out.reason
    assert _rel(torch.tensor(rows["loss"].values), torch.tensor(ref["loss"].values)) < 1e-9
    return out, run, rows


def test_a_cell_on_two_ranks_is_the_unsharded_cell_with_its_communication(tmp_path):
    out, run, rows = _two_ranks_like_one(tmp_path, "local")
    assert run["world_size"] == 2 and run["backend"] == "gloo"
    assert run["threads_per_rank"] == 1 and run["hosts"]
    assert len(run["rank_peak_memory_bytes"]) == 2
    assert set(rows["world_size"]) == {2} and set(rows["backend"]) == {"gloo"}
    steps = rows[rows["iter"] > 0]
    # one forward (n) and one Gram (n×n) all-reduce per step, float64
    assert (steps["comm_bytes"] == 8 * (16 + 16 * 16)).all()
    assert (steps["t_comm"] > 0).all() and (steps["comm_bytes:gram"] == 8 * 16 * 16).all()
    phases = steps[[c for c in steps if c.startswith("t_")]].sum(axis=1)
    assert (phases <= steps["step_time_s"] * 1.0001).all()  # comm is not counted twice
    # the cost model's prediction of this P = 2 step, beside the measurement
    table = predicted_vs_measured(tmp_path, Profile.synthetic(flops=1e9, elements=1e9),
                                  Link("t", 1e-5, 1e9, "test"))
    assert list(table["world"]) == [2] and (table["ratio"] > 0).all()
    assert (table["predicted_comm_s"] > 0).all()
    # a sweep's table tells the sharded cell from its one-process twin: a column P
    from harness.execution.summary import format_table, summary_table

    cells = sorted({p.parent for p in tmp_path.rglob("run.json")})
    frame = summary_table(cells)
    assert sorted(frame["P"].tolist()) == [1, 2]
    assert " P " in format_table(frame).splitlines()[0]
    assert " P " not in format_table(frame[frame["P"] == 1]).splitlines()[0]


def test_killing_one_rank_fails_the_cell_cleanly(tmp_path):
    out = run_cell(compose_cfg("device=cpu", f"store={tmp_path}", "algorithm=gn_cg",
                               "max_iters=4", "distributed=local", "distributed.world_size=2",
                               "testing.fail_at_iter=2", "testing.fail_mode=kill", *TINY))
    assert out.status == "failed"
    assert "\n" not in out.reason and "rank 1 of 2 killed by SIGKILL" in out.reason
    run = json.loads((out.cell / "run.json").read_text())
    assert run["status"] == "failed" and run["reason"] == out.reason
    assert not _rank_processes()  # no surviving rank
    assert sorted(p.name for p in out.cell.iterdir() if not p.name.startswith(".")) == \
        ["result.parquet", "run.json"]


def test_a_rank_that_raises_fails_the_cell_with_its_reason(tmp_path):
    out = run_cell(compose_cfg("device=cpu", f"store={tmp_path}", "algorithm=gd",
                               "max_iters=4", "distributed=local", "distributed.world_size=2",
                               "testing.fail_at_iter=3", *TINY))
    assert out.status == "failed"
    assert out.reason.startswith("rank 1 of 2: InjectedFault"), out.reason
    assert not _rank_processes()


@pytest.mark.parametrize("algorithm,why", [("lbfgs", "inner products of the whole"),
                                           ("kfac", "whole pattern D")])
def test_a_method_that_cannot_shard_is_skipped_with_the_reason(tmp_path, algorithm, why):
    out, run, _ = run_in_process(tmp_path, f"algorithm={algorithm}", "distributed=local",
                                 "distributed.world_size=2", *TINY)
    assert out.status == "skipped" and why in out.reason
    assert "cannot run sharded" in out.reason


@pytest.mark.parametrize("overrides,message", [
    (("distributed=local", "distributed.world_size=0"), "distributed.world_size must be"),
    (("distributed.world_size=2",), "needs a launcher"),
    (("distributed=local", "distributed.kind=mpi"), "distributed.kind"),
    (("distributed=local", "distributed.backend=nccl"), "distributed.backend"),
    (("distributed=local", "distributed.world_size=100000"), "ranks on one machine"),
    (("distributed=local", "model=mlp", "model.depth=2"), "model=mlp has no sharded form"),
    (("distributed=local", "distributed.nodes=2"), "use distributed=slurm"),
    (("distributed=torchrun", "distributed.nodes=2"), "use distributed=slurm"),
    (("distributed=local", "distributed.nodes=0"), "distributed.nodes must be"),
])
def test_the_preflight_refuses_a_bad_world_or_launcher(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(compose_cfg("device=cpu", *overrides))


# --- the launchers: torchrun on this machine, srun over nodes (a stand-in srun here) ---------

#: a stand-in for srun: starts --ntasks copies of the command with SLURM_PROCID and
#: SLURM_NTASKS set, as srun does on the nodes of an allocation, and exits non-zero if one did
FAKE_SRUN = """#!/usr/bin/env bash
echo "$@" > "$(dirname "$0")/srun.args"
n=1
while [[ $# -gt 0 ]]; do
  case $1 in --ntasks=*) n=${1#*=}; shift;; --*) shift;; *) break;; esac
done
pids=()
for ((i=0; i<n; i++)); do SLURM_PROCID=$i SLURM_NTASKS=$n "$@" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""


@pytest.fixture
def fake_srun(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(FAKE_SRUN)
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def _any_rank_process() -> list[int]:
    """Rank processes anywhere (a launcher's ranks are its children, not this process's)."""
    out = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"harness.execution.rank" in cmd.read_bytes():
                out.append(int(cmd.parent.name))
        except (OSError, ValueError):
            continue
    return out


def test_a_cell_under_torchrun_is_the_unsharded_cell(tmp_path):
    out, run, rows = _two_ranks_like_one(tmp_path, "torchrun")
    assert run["distributed"] == "torchrun" and run["world_size"] == 2 and run["hosts"]
    assert (rows[rows["iter"] > 0]["t_comm"] > 0).all()
    assert not _any_rank_process()


def test_killing_a_rank_under_torchrun_fails_the_cell_cleanly(tmp_path):
    out = run_cell(compose_cfg("device=cpu", f"store={tmp_path}", "algorithm=gn_cg",
                               "max_iters=4", "distributed=torchrun",
                               "distributed.world_size=2", "testing.fail_at_iter=2",
                               "testing.fail_mode=kill", *TINY))
    assert out.status == "failed"
    assert "\n" not in out.reason and "rank 1 of 2 killed by SIGKILL" in out.reason, out.reason
    assert json.loads((out.cell / "run.json").read_text())["status"] == "failed"
    assert not _any_rank_process()


def test_srun_starts_the_ranks_of_a_slurm_cell_over_its_nodes(tmp_path, fake_srun):
    out, run, rows = run_in_process(tmp_path, "algorithm=gn_sketch", "max_iters=2",
                                    "distributed=slurm", "distributed.nodes=2",
                                    "distributed.world_size=2", *TINY)
    assert out.status == "max_iters", out.reason
    assert run["distributed"] == "slurm" and run["world_size"] == 2
    args = (fake_srun / "srun.args").read_text().split()
    assert {"--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--overlap"} <= set(args)
    # the ranks met under the store (a shared file system on a cluster), then it was cleared
    assert not (tmp_path / ".ranks").exists()
    assert not _any_rank_process()


def test_a_rank_the_launcher_started_in_a_wrong_world_refuses(monkeypatch):
    from harness.execution.rank import launcher_rank

    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "3")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(SystemExit, match="started 3 ranks"):
        launcher_rank(2)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert launcher_rank(2) == 1


def test_only_the_first_task_of_a_slurm_job_runs_the_cell(monkeypatch):
    from harness.execution.sharded_cell import idle_task

    slurm = compose_cfg("device=cpu", "distributed=slurm")
    local = compose_cfg("device=cpu", "distributed=local")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert idle_task(slurm) and not idle_task(local)
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert not idle_task(slurm)


def test_the_default_keeps_every_cell_identity(fake_srun):
    """distributed=none enters no cell's identity (the committed stores keep their hashes)."""
    assert "distributed" not in resolve(compose_cfg("device=cpu")).identity
    run = resolve(compose_cfg("device=cpu", "distributed=local", "distributed.world_size=2"))
    assert run.identity["distributed"]["world_size"] == 2
    # nodes came later: at 1 it leaves a distributed cell's identity as it was
    assert "nodes" not in run.identity["distributed"]
    two = resolve(compose_cfg("device=cpu", "distributed=slurm", "distributed.world_size=4",
                              "distributed.nodes=2"))
    assert two.identity["distributed"]["nodes"] == 2


def test_a_slurm_cell_needs_srun_and_a_world_that_divides_over_its_nodes(tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    with pytest.raises(ConfigError, match="srun, which is not on PATH"):
        resolve(compose_cfg("device=cpu", "distributed=slurm"))
    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    with pytest.raises(ConfigError, match="not a multiple of distributed.nodes=2"):
        resolve(compose_cfg("device=cpu", "distributed=slurm", "distributed.world_size=3"))
    resolve(compose_cfg("device=cpu", "distributed=slurm", "distributed.world_size=4"))


def test_nlt_run_runs_one_cell_on_two_ranks(tmp_path):
    """The representative command: nlt-run, its cell in an isolated process, P = 2 ranks."""
    proc = nlt_run(tmp_path, "algorithm=gn_sketch", "device=cpu", "max_iters=2",
                   "distributed=local", "distributed.world_size=2", f"store={tmp_path}/s",
                   *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_file,) = Path(tmp_path, "s").rglob("run.json")
    run = json.loads(run_file.read_text())
    assert run["status"] == "max_iters" and run["world_size"] == 2
    assert run["config"]["distributed"]["kind"] == "local"


def test_a_cell_too_big_for_one_process_names_the_ranks_it_needs(tmp_path):
    big = ("algorithm=gn_gram", "data.n=64", "data.d=4", "model.m=65536", "dtype=float64",
           "memory_budget_gb=0.02")
    out, run, _ = run_in_process(tmp_path, *big)
    assert out.status == "skipped"
    world = run["ranks_needed"]
    assert f"sharded over P = {world} ranks" in out.reason and world >= 2
    shape = Shape.of("two_layer", 64, 65536, 4, 8)
    alg = ALGORITHMS.get("gn_gram")
    params = alg.Params()
    assert alg.memory_bytes(params, rank_shape_of(shape, world)) < \
        alg.memory_bytes(params, shape) / (world / 2)
    # P ranks on this one machine: together over the budget, refused before any rank starts
    out, run, _ = run_in_process(tmp_path, *big, "distributed=local",
                                 f"distributed.world_size={world}")
    assert out.status == "skipped" and f"{world} ranks of about" in out.reason
    assert run["rank_memory_bytes"] * world == run["estimated_memory_bytes"]


# --- the cost model's communication term ------------------------------------------------------


def test_ring_allreduce_and_its_fit():
    link = Link("t", 2e-5, 1e9, "test")
    assert link.allreduce(1e6, 1) == 0.0
    assert link.allreduce(1e6, 4) == pytest.approx(6 * 2e-5 + 1.5 * 1e6 / 1e9)
    sizes = [8.0 * 4**k for k in range(10)]
    fitted = fit_link(4, sizes, [link.allreduce(b, 4) for b in sizes], "fit", "test")
    assert fitted.latency_s == pytest.approx(2e-5, rel=1e-6)
    assert fitted.bandwidth == pytest.approx(1e9, rel=1e-6)


@pytest.mark.parametrize("method", ["gd", "gn_gram", "gn_cg", "gn_sketch"])
def test_a_sharded_step_is_the_local_step_at_m_over_p_plus_its_allreduces(method):
    prof = Profile.synthetic(flops=1e10, elements=1e9, overhead_s=1e-6)
    link = Link("t", 1e-5, 1e9, "test")
    n, m, d, world = 512, 65536, 16, 4
    assert predict(method, None, n, m, d, prof, world=1) == predict(method, None, n, m, d, prof)
    sharded = predict(method, None, n, m, d, prof, world=world, link=link, dtype="float32")
    local = predict(method, None, n, m // world, d, prof, dtype="float32")
    assert sharded["total"] - sharded["comm"] == pytest.approx(local["total"], rel=1e-12)
    if method == "gn_gram":  # the outputs (n) and the Gram matrix (n²), float32
        assert sharded["comm"] == pytest.approx(link.allreduce(4 * n, world)
                                                + link.allreduce(4 * n * n, world))
    assert sharded["comm"] > 0


def test_measure_link_fits_gloo_over_loopback():
    link, seconds = measure_link(2, sizes=(8, 4096, 262144), repeats=3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert link.latency_s >= 0 and link.bandwidth > 0 and "measured" in link.source


def test_the_predicted_frontier_by_ranks_is_labelled_and_complete():
    prof = Profile.synthetic(flops=1e10, elements=1e9, overhead_s=1e-6)
    table = frontier_by_ranks(prof, cluster_link, [256, 1024], [2**k for k in range(12, 21)],
                              16, memory_bytes=1e12)
    assert list(table["world"].unique()) == [1, 4, 16, 64]
    assert len(table) == 8 and "m_per_iteration" in table
    assert "assumed" in cluster_link(64).name and cluster_link(8) is CLUSTER_LINKS["nvlink_h100"]


def test_the_frontier_text_is_labelled_a_prediction():
    sheet = Path(__file__).resolve().parent.parent / "reports" / "profiles" / \
        "h100_datasheet.json"
    text = frontier_text(sheet, Link("unused", 1.0, 1.0, "test"))
    assert text.startswith("PREDICTION") and "assumed" in text
    assert text.count("\n| ") == 5  # the header and P = 1, 4, 16, 64


def test_the_frontier_figure_draws_every_p_on_both_profiles_as_a_prediction(tmp_path):
    from harness.perf.comm import frontier_figure, main

    sheet = Path(__file__).resolve().parent.parent / "reports" / "profiles" / \
        "h100_datasheet.json"
    mine = Profile.synthetic(flops=2e9, memory_bytes=2**34)
    mine.data.update(device_name="test CPU", source="measured (synthetic for the tests)",
                     link={"name": "test loopback", "latency_s": 5e-5, "bandwidth": 2e9,
                           "source": "test"})
    mine_path = mine.save(tmp_path / "profiles" / "mine.json")
    png = frontier_figure([(mine, Link("test loopback", 5e-5, 2e9, "test")),
                           (Profile.load(sheet), None)], tmp_path / "fig" / "frontier")
    assert png.exists() and png.with_suffix(".pdf").exists() and png.stat().st_size > 5000
    # the command line: the link calibrated with the profile, no --link needed
    (tmp_path / "profiles" / "sheet.json").write_text(sheet.read_text())
    assert main(["--frontier", str(mine_path), "--figure", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli.png").exists()
