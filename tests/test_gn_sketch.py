"""gn_sketch (BPSW21) and gn_nystrom against exact Gauss–Newton, plain CG and the runner."""

from __future__ import annotations

import pytest
import torch

from algorithms.base import Shape
from algorithms.gn_gram import GNGram, GNGramParams
from algorithms.gn_nystrom import GNNystrom, GNNystromParams, NystromPreconditioner
from algorithms.gn_sketch import (
    GNSketch,
    GNSketchParams,
    TriangularPreconditioner,
    triangular_factor,
)
from algorithms.solvers import RefreshingSolver
from harness.common.errors import ConfigError
from harness.common.timing import NullClock
from harness.linalg.krylov import conjugate_gradient
from harness.model import make_problem
from harness.sketches import make_sketch
from tests.helpers import nlt_run, run_in_process


def one_step(cls, params, problem_seed=1, dataset="synthetic", n=32, m=256, d=8):
    p = make_problem(dataset, n=n, d=d, m=m, seed=problem_seed, dtype=torch.float64)
    alg = cls(p, params, torch.Generator().manual_seed(5))
    alg.setup(NullClock())
    info = alg.step(NullClock())
    return p.W, info


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("factor", ["qr", "cholesky_qr"])
@pytest.mark.parametrize("damping", [0.0, 1e-3])
def test_tight_tol_gn_sketch_step_equals_gn_gram(factor, damping):
    W_ref, _ = one_step(GNGram, GNGramParams(damping=damping))
    W, info = one_step(GNSketch, GNSketchParams(sketch="tensor_srht", factor=factor, tol=1e-12,
                                                max_inner=500, damping=damping))
    assert rel(W, W_ref) <= 1e-8
    assert info.inner_iters > 0 and info.extras["refreshed"] == 1


@pytest.mark.parametrize("sketch", ["gaussian", "srht", "countsketch", "tensorsketch"])
def test_every_sketch_gives_the_exact_step_at_tight_tol(sketch):
    W_ref, _ = one_step(GNGram, GNGramParams())
    W, _ = one_step(GNSketch, GNSketchParams(sketch=sketch, tol=1e-12, max_inner=500))
    assert rel(W, W_ref) <= 1e-8


def test_tight_tol_gn_nystrom_step_equals_gn_gram():
    W_ref, _ = one_step(GNGram, GNGramParams(damping=1e-4))
    W, info = one_step(GNNystrom, GNNystromParams(rank=16, tol=1e-12, max_inner=500,
                                                  damping=1e-4))
    assert rel(W, W_ref) <= 1e-8
    assert info.inner_iters > 0


def test_factor_r_satisfies_rtr_equals_btb_plus_mu():
    B = torch.randn(40, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = B.T @ B + 0.5 * torch.eye(10, dtype=torch.float64)
    for method in ("qr", "cholesky_qr"):
        R = triangular_factor(B, 0.5, method)
        assert torch.allclose(R, R.triu()) and rel(R.T @ R, target) <= 1e-12
    Minv = TriangularPreconditioner(triangular_factor(B, 0.5, "qr"))
    v = torch.ones(10, dtype=torch.float64)
    assert rel(Minv(v), torch.linalg.solve(target, v)) <= 1e-10


def test_cholesky_factor_shifts_a_rank_deficient_sketch():
    """B of rank 5 < n = 10: BᵀB is singular, plain Cholesky fails; the shifted factor is
    upper triangular, finite, and close to BᵀB on its range (a preconditioner, not a solve)."""
    gen = torch.Generator().manual_seed(1)
    B = torch.randn(40, 5, generator=gen) @ torch.randn(5, 10, generator=gen)
    assert int(torch.linalg.cholesky_ex(B.T @ B).info) != 0
    R = triangular_factor(B, 0.0, "cholesky_qr")
    assert torch.allclose(R, R.triu()) and torch.isfinite(R).all()
    assert rel(R.T @ R, B.T @ B) <= 1e-3
    with pytest.raises(FloatingPointError, match="factor=qr"):
        triangular_factor(torch.full((4, 3), float("nan")), 0.0, "cholesky_qr")


@pytest.fixture(scope="module")
def hard():
    p = make_problem("synthetic_hard", n=128, d=8, m=256, seed=0, dtype=torch.float64)
    return p.linearize()


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_sketch_needs_a_third_of_plain_cg_iterations(hard, tol):
    """BPSW21's point: preconditioned CG's count does not grow with κ(G) (here ~1e6).

    (At tol = 0.1 on the first step both need 3 iterations: r0 lies mostly along the top
    eigenvectors of G, which plain CG resolves first.)
    """
    jac, r = hard.jacobian, hard.residual
    G = hard.gram_operator()
    plain = conjugate_gradient(G, r, tol=tol, max_iter=5000)
    B = make_sketch("tensor_srht", jac.m, jac.d, 4 * jac.n, torch.Generator().manual_seed(0),
                    dtype=torch.float64).sketch_jacobian(jac)
    pcg = conjugate_gradient(G, r, tol=tol, max_iter=5000,
                             precondition=TriangularPreconditioner(triangular_factor(B, 0, "qr")))
    assert plain.converged and pcg.converged
    assert 3 * pcg.iterations <= plain.iterations, (pcg.iterations, plain.iterations)


def test_nystrom_preconditioner_is_exact_at_full_rank(hard):
    """ℓ = n: Ĝ = G up to the shift, so P⁻¹(G + μI) = (λ̂_n + μ)·I."""
    G = hard.gram_operator()
    P = NystromPreconditioner(G, hard.jacobian.n, 1e-2, torch.Generator().manual_seed(0))
    Gd = G.dense() + 1e-2 * torch.eye(G.n, dtype=torch.float64)
    M = torch.stack([P(c) for c in Gd.T], dim=1)
    assert rel(M, float(P.lam[-1] + 1e-2) * torch.eye(G.n, dtype=torch.float64)) <= 1e-6


def test_adaptive_refresh_reuses_then_rebuilds_within_budget(hard):
    """adaptive: a good old preconditioner is kept; a bad one gets ⌈factor·k₀⌉ iterations,
    then is rebuilt at once and CG goes on from the partial solution."""
    jac = hard.jacobian
    params = GNSketchParams(tol=1e-6, max_inner=2000)
    builds = []

    def build():
        B = make_sketch("tensor_srht", jac.m, jac.d, 4 * jac.n,
                        torch.Generator().manual_seed(len(builds)),
                        dtype=torch.float64).sketch_jacobian(jac)
        builds.append(1)
        return TriangularPreconditioner(triangular_factor(B, 0.0, "qr"))

    solver = RefreshingSolver("adaptive", 2.0)
    cg, inner, refreshed = solver.solve(NullClock(), hard, params, build)
    assert refreshed and cg.converged and inner == cg.iterations and solver.count == 1
    k0 = inner
    cg, inner, refreshed = solver.solve(NullClock(), hard, params, build)
    assert not refreshed and cg.converged and inner <= 2 * k0 and len(builds) == 1
    solver.preconditioner = lambda v: v  # now stale and useless (plain CG)
    cg, inner, refreshed = solver.solve(NullClock(), hard, params, build)
    assert refreshed and cg.converged and solver.count == 2 == len(builds)
    assert 2 * k0 < inner <= 2 * k0 + 3 * k0  # the budget spent, then a short fresh solve
    always = RefreshingSolver("always", 2.0)
    for _ in range(2):
        assert always.solve(NullClock(), hard, params, build)[2]
    assert always.count == 2


def test_params_are_validated_with_allowed_values():
    with pytest.raises(ConfigError, match=r"Unknown sketch 'foo'. Available: \['countsketch'"):
        GNSketchParams(sketch="foo")
    with pytest.raises(ConfigError, match="factor"):
        GNSketchParams(factor="lu")
    with pytest.raises(ConfigError, match="refresh"):
        GNSketchParams(refresh="sometimes")
    with pytest.raises(ConfigError, match="tol"):
        GNNystromParams(tol=0.0)
    with pytest.raises(ConfigError, match="rank"):
        GNNystromParams(rank=0)


def test_memory_estimate_and_skip_reasons():
    shape = Shape(n=1024, m=16384, d=16)
    need = GNSketch.memory_bytes(GNSketchParams(), shape)
    assert need > 4 * (1024 * 16384 + 4 * 1024 * 1024)  # D and the s×n sketch at least
    reason = GNSketch.skip(GNSketchParams(), shape, budget_bytes=need - 1)
    assert reason and str(need) in reason
    assert GNSketch.skip(GNSketchParams(), shape, budget_bytes=need) is None
    assert "s <= 4" in GNSketch.skip(GNSketchParams(sketch="srht"), Shape(n=4, m=2, d=2),
                                     budget_bytes=10**12)
    assert GNNystrom.memory_bytes(GNNystromParams(rank=64), shape) < need


@pytest.mark.parametrize("algorithm", ["gn_sketch", "gn_nystrom"])
@pytest.mark.parametrize("refresh", ["always", "adaptive"])
def test_reaches_target_within_15_iterations_through_the_runner(store, algorithm, refresh):
    outcome, run, rows = run_in_process(
        store, f"algorithm={algorithm}", f"algorithm.refresh={refresh}", "data.n=128",
        "model.m=2048", "max_iters=15")
    assert outcome.status == "converged", outcome.reason
    assert run["iterations"] <= 15 and rows["rel_loss"].iloc[-1] <= 1e-6
    steps = rows.iloc[1:]
    assert (steps["inner_iters"] >= 1).all() and steps["refreshed"].iloc[0] == 1
    assert steps["refreshes"].iloc[-1] == steps["refreshed"].sum()
    assert "t_solve" in steps and "t_forward" in steps
    if algorithm == "gn_sketch":
        assert (steps["t_sketch"].iloc[0] > 0) and (steps["t_factor"].iloc[0] > 0)
    if refresh == "always":
        assert (steps["refreshed"] == 1).all()


def test_bad_sketch_exits_2_with_one_line(tmp_path):
    proc = nlt_run(tmp_path, "algorithm=gn_sketch", "algorithm.sketch=foo",
                   f"store={tmp_path / 's'}", timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Unknown sketch 'foo'" in lines[0]
    for name in ("countsketch", "gaussian", "srht", "tensor_srht", "tensorsketch"):
        assert name in lines[0]
    assert not (tmp_path / "s").exists()
