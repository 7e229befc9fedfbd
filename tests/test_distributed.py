"""One cell sharded over the width m (harness.model.sharded, distributed=local): every shardable
method follows the unsharded float64 trajectory on P = 2 and P = 4 gloo ranks."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from harness.execution.distributed import Case, rank_trajectory, run_case
from harness.model import make_problem
from harness.model.sharded import Comm, ShardedTwoLayer, shard_bounds

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
