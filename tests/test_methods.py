"""adam, gn_exact, ngd, kfac, ggn, gn_cg: one step against float64 references, then whole runs."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from algorithms.base import ALGORITHMS, Shape
from harness.common.timing import NullClock
from harness.model import make_problem
from tests.helpers import nlt_run, run_in_process

STEP_RTOL = 1e-8
RUN = ("data.n=64", "model.m=1024", "dtype=float64", "max_iters=15")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture
def problem():
    """n=24, m=64, d=5, float64."""
    return make_problem("synthetic", n=24, d=5, m=64, seed=3, dtype=torch.float64)


def one_step(problem, name: str, **params) -> torch.Tensor:
    """W after one step of ``name`` from the problem's current W, on a copy of the problem."""
    p = copy.deepcopy(problem)
    cls = ALGORITHMS.get(name)
    alg = cls(p, cls.Params(**params), torch.Generator().manual_seed(0))
    alg.setup(NullClock())
    alg.step(NullClock())
    return p.W


@pytest.fixture
def gn_step(problem):
    return one_step(problem, "gn_gram")


@pytest.mark.parametrize("name, params", [
    ("ngd", dict(step_size=1.0, damping=0.0)),
    ("ggn", dict(batch_size=24)),
    ("ggn", dict(batch_size=1000)),  # b > n is capped at n
    ("gn_cg", dict(tol=1e-12)),
    ("gn_exact", dict(jacobian="autograd")),
    ("gn_exact", dict(jacobian="closed_form")),
])
def test_same_step_as_gn_gram(problem, gn_step, name, params):
    W = one_step(problem, name, **params)
    assert rel(W, gn_step) <= STEP_RTOL
    assert rel(W, problem.W) > 1e-3  # a real step was taken


def test_ngd_damping_and_step_size_change_the_step(problem, gn_step):
    W0 = problem.W
    half = one_step(problem, "ngd", step_size=0.5, damping=0.0)
    assert rel(half - W0, 0.5 * (gn_step - W0)) <= STEP_RTOL
    damped = one_step(problem, "ngd", step_size=1.0, damping=1.0)
    lin = problem.linearize()
    G = lin.jacobian.gram() + torch.eye(problem.n, dtype=torch.float64)
    ref = W0 - lin.jacobian.rmatvec(torch.linalg.solve(G, lin.residual))
    assert rel(damped, ref) <= STEP_RTOL


def test_ggn_minibatch_fits_its_batch_in_the_linear_model(problem):
    """A b < n step solves J_B ΔW = r_B exactly (η = 1, μ = 0) and touches only J_Bᵀ's range."""
    p = copy.deepcopy(problem)
    cls = ALGORITHMS.get("ggn")
    alg = cls(p, cls.Params(batch_size=8), torch.Generator().manual_seed(0))
    alg.setup(NullClock())
    gen = torch.Generator().manual_seed(0)
    rows = torch.randperm(p.n, generator=gen)[:8]  # the batch the algorithm will draw
    lin = p.linearize(rows=rows)
    W0 = p.W.clone()
    alg.step(NullClock())
    delta = W0 - p.W
    assert rel(lin.jacobian.matvec(delta), lin.residual) <= STEP_RTOL
    g = torch.linalg.lstsq(lin.jacobian.dense().T, delta.reshape(-1, 1)).solution[:, 0]
    assert rel(lin.jacobian.rmatvec(g), delta) <= STEP_RTOL


@pytest.mark.parametrize("damping", [0.0, 1e-4])
def test_kfac_equals_dense_kronecker_reference(problem, damping):
    """ΔW = vec⁻¹((S + √μI)⁻¹ ⊗ (A + √μI)⁻¹ vec ∇L̄), built densely with torch.kron."""
    n, m, d = problem.n, problem.m, problem.d
    step = 0.3
    W = one_step(problem, "kfac", step_size=step, damping=damping)
    lin = problem.linearize()
    U = lin.jacobian.D * problem.a  # U = D diag(a)
    A = problem.X.T @ problem.X / n
    S = U.T @ U / (n * m)
    c = math.sqrt(damping)
    # S is m×m of rank n < m: the undamped reference uses the pseudo-inverse
    S_inv = torch.linalg.pinv(S, hermitian=True) if c == 0 else torch.linalg.inv(
        S + c * torch.eye(m, dtype=S.dtype))
    A_inv = torch.linalg.inv(A + c * torch.eye(d, dtype=A.dtype))
    F_inv = torch.kron(S_inv.contiguous(), A_inv.contiguous())
    grad = lin.jacobian.rmatvec(lin.residual) / n  # ∇L̄, row-major vec matches kron(S, A)
    ref = problem.W - step * (F_inv @ grad.reshape(-1)).reshape(m, d)
    assert rel(W - problem.W, ref - problem.W) <= 1e-7


def test_kfac_auto_step_is_safe_in_the_linear_model(problem):
    """η K ≼ I for K = J F_kfac⁻¹ Jᵀ / n with the auto step: the linearised loss cannot rise."""
    p = copy.deepcopy(problem)
    cls = ALGORITHMS.get("kfac")
    alg = cls(p, cls.Params(), torch.Generator())
    alg.setup(NullClock())
    lin = p.linearize()
    J = lin.jacobian.dense()
    U = lin.jacobian.D * p.a
    S = U.T @ U / (p.n * p.m) + alg.root_damping * torch.eye(p.m, dtype=U.dtype)
    K = J @ torch.kron(torch.linalg.inv(S), alg.A_inv) @ J.T / p.n
    assert float(torch.linalg.eigvalsh(alg.step_size * K)[-1]) <= 1 + 1e-6


def test_adam_gradient_is_the_mean_loss_gradient(problem):
    """One Adam step from zero state moves every weight by lr·sign(∇L̄) (up to ε)."""
    lr = 1e-3
    W = one_step(problem, "adam", lr=lr, eps=1e-30)
    grad = problem.gradient() / problem.n
    assert rel(problem.W - W, lr * grad.sign()) <= 1e-10


def test_gn_cg_reports_inner_iterations(problem):
    p = copy.deepcopy(problem)
    cls = ALGORITHMS.get("gn_cg")
    alg = cls(p, cls.Params(tol=1e-8), torch.Generator())
    alg.setup(NullClock())
    info = alg.step(NullClock())
    assert 1 <= info.inner_iters <= p.n + 5
    assert info.extras["inner_converged"] and info.extras["inner_rel_residual"] <= 1e-8


# --- whole runs through the runner -------------------------------------------------------------


@pytest.mark.parametrize("name, extra", [
    ("gn_exact", ()), ("gn_exact", ("algorithm.jacobian=closed_form",)), ("ngd", ()),
    ("ggn", ("algorithm.batch_size=64",)), ("gn_cg", ()),
])
def test_gauss_newton_family_converges_in_15_iterations(store, name, extra):
    outcome, run, rows = run_in_process(store, f"algorithm={name}", *RUN, *extra)
    assert outcome.status == "converged", outcome.reason
    assert run["iterations"] <= 15 and rows["rel_loss"].iloc[-1] <= 1e-6
    if name == "gn_cg":
        assert rows["inner_iters"].iloc[1:].min() >= 1
    if name == "gn_exact":
        assert {"t_forward", "t_jacobian", "t_gram", "t_solve", "t_update"} <= set(rows.columns)


@pytest.mark.parametrize("name, extra, below", [
    ("kfac", ("max_iters=15",), 1e-2), ("adam", ("max_iters=100",), 0.5),
    ("ggn", ("max_iters=15", "algorithm.batch_size=16"), 0.5),
])
def test_other_methods_lower_the_loss(store, name, extra, below):
    outcome, run, rows = run_in_process(store, f"algorithm={name}", "data.n=64", "model.m=1024",
                                        "dtype=float64", *extra)
    assert outcome.status in ("converged", "max_iters"), outcome.reason
    assert rows["rel_loss"].iloc[-1] <= below
    assert (rows["rel_loss"].diff().iloc[1:] <= 1e-12).mean() >= 0.9  # mostly monotone


def test_gn_exact_refuses_a_jacobian_above_the_budget(tmp_path):
    shape = Shape(8192, 65536, 16, 4)
    cls = ALGORITHMS.get("gn_exact")
    for jacobian in ("autograd", "closed_form"):
        assert cls.memory_bytes(cls.Params(jacobian=jacobian), shape) > 8192 * 65536 * 16 * 4
    proc = nlt_run(tmp_path, "algorithm=gn_exact", "data.n=8192", "model.m=65536",
                   "device=cpu", "memory_budget_gb=1", f"store={tmp_path / 'results'}",
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    need = cls.memory_bytes(cls.Params(), shape)
    assert "skipped: gn_exact needs about" in proc.stdout and f"({need} bytes)" in proc.stdout
    (run_json,) = (tmp_path / "results").rglob("run.json")
    run = json.loads(run_json.read_text())
    assert run["status"] == "skipped" and str(need) in run["reason"]


def test_bad_parameters_name_the_value(problem):
    from harness.common.errors import ConfigError

    for name, params, word in [("gn_exact", dict(jacobian="jvp"), "closed_form"),
                               ("ggn", dict(batch_size=0), "batch_size"),
                               ("gn_cg", dict(tol=2.0), "tol"),
                               ("kfac", dict(step_size="big"), "step_size"),
                               ("adam", dict(beta1=1.0), "beta1"),
                               ("ngd", dict(damping=-1.0), "damping")]:
        cls = ALGORITHMS.get(name)
        with pytest.raises(ConfigError, match=word):
            cls(copy.deepcopy(problem), cls.Params(**params), torch.Generator()).setup(
                NullClock())
