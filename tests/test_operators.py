"""The matrix-free operators of harness.model.two_layer against explicit and autograd references."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jacrev

from harness.model import make_problem
from harness.model.ntk import ntk_lambda, ntk_matrix
from harness.model.two_layer import GramOperator

RTOL = 1e-10


def rel(a, b):
    return float((a - b).norm() / b.norm())


def autograd_jacobian(problem):
    """J by torch.func: d f / d vec(W), shape n × md."""
    return jacrev(problem.forward)(problem.W.clone()).reshape(problem.n, -1)


def test_dense_jacobian_matches_autograd(small_problem):
    J = small_problem.linearize().jacobian.dense()
    assert rel(J, autograd_jacobian(small_problem)) <= RTOL


def test_jv_and_jtg_match_explicit_and_autograd(small_problem):
    p = small_problem
    jac = p.linearize().jacobian
    J_auto = autograd_jacobian(p)
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(p.m, p.d, generator=gen, dtype=torch.float64)
    g = torch.randn(p.n, generator=gen, dtype=torch.float64)
    assert rel(jac @ V, J_auto @ V.reshape(-1)) <= RTOL
    assert rel(jac.T @ g, (J_auto.T @ g).reshape(p.m, p.d)) <= RTOL
    assert rel(jac.dense() @ V.reshape(-1), jac @ V) <= RTOL


def test_gradient_is_autograd_gradient(small_problem):
    p = small_problem
    W = p.W.clone().requires_grad_(True)
    loss = 0.5 * (p.forward(W) - p.y).pow(2).sum()
    (grad,) = torch.autograd.grad(loss, W)
    assert rel(p.gradient(), grad) <= RTOL


def test_gram_hadamard_identity_equals_jjt(small_problem):
    jac = small_problem.linearize().jacobian
    J = jac.dense()
    assert rel(jac.gram(), J @ J.T) <= RTOL
    G = jac.gram(damping=0.3)
    assert rel(G, J @ J.T + 0.3 * torch.eye(J.shape[0], dtype=J.dtype)) <= RTOL


def test_gram_operator_matvec_block_and_diagonal(small_problem):
    jac = small_problem.linearize().jacobian
    op = GramOperator(jac, damping=0.1)
    G = op.dense()
    P = torch.randn(small_problem.n, 3, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    assert rel(op @ P[:, 0], G @ P[:, 0]) <= RTOL
    assert rel(op @ P, G @ P) <= RTOL
    assert rel(op.diagonal(), torch.diagonal(G)) <= RTOL


def test_linearize_residual_and_loss(small_problem):
    p = small_problem
    lin = p.linearize()
    assert rel(lin.outputs, p.forward()) <= RTOL
    assert math.isclose(lin.loss, p.loss(), rel_tol=1e-12)
    # The pattern is 0/1 and matches 1[XWᵀ > 0].
    D = lin.jacobian.D
    assert set(torch.unique(D).tolist()) <= {0.0, 1.0}
    assert torch.equal(D, (p.X @ p.W.T > 0).to(D.dtype))


def test_row_subset_linearization(small_problem):
    rows = torch.tensor([0, 5, 7])
    lin = small_problem.linearize(rows=rows)
    full = small_problem.linearize()
    assert rel(lin.residual, full.residual[rows]) <= RTOL


def test_ntk_limit_error_shrinks_like_inverse_sqrt_m():
    """‖G_0 − H∞‖ falls like 1/√m: a 16× wider net has about 4× smaller error."""
    errs = {}
    for m in (256, 4096):
        vals = []
        for seed in range(3):
            p = make_problem("synthetic", n=32, d=8, m=m, seed=seed, dtype=torch.float64)
            G = p.linearize().jacobian.gram()
            vals.append(float(torch.linalg.matrix_norm(G - ntk_matrix(p.X), ord=2)))
        errs[m] = sum(vals) / len(vals)
    ratio = errs[256] / errs[4096]
    assert 2.5 < ratio < 6.5, errs
    assert errs[4096] < 0.05


def test_ntk_closed_form_diagonal_and_lambda():
    p = make_problem("synthetic", n=40, d=10, m=8, seed=0, dtype=torch.float64)
    H = ntk_matrix(p.X)
    assert torch.allclose(torch.diagonal(H), torch.full((40,), 0.5, dtype=torch.float64))
    lam = ntk_lambda(p.X)
    assert 0 < lam < 0.5
    hard = make_problem("synthetic_hard", n=40, d=10, m=8, seed=0, dtype=torch.float64)
    assert ntk_lambda(hard.X) < lam  # clustered inputs have a smaller λ


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_problem_dtype_and_row_norms(dtype):
    p = make_problem("synthetic", n=16, d=4, m=32, seed=0, dtype=dtype)
    assert p.X.dtype == p.W.dtype == p.y.dtype == dtype
    assert torch.allclose(p.X.norm(dim=1), torch.ones(16, dtype=dtype))
    assert set(p.a.tolist()) <= {-1.0, 1.0}


def test_streams_are_separate():
    base = make_problem("synthetic", n=16, d=4, m=32, seed=0)
    other_init = make_problem("synthetic", n=16, d=4, m=32, seed=0, init_seed=99)
    other_data = make_problem("synthetic", n=16, d=4, m=32, seed=0, data_seed=99)
    assert torch.equal(base.X, other_init.X) and not torch.equal(base.W, other_init.W)
    assert torch.equal(base.W, other_data.W) and not torch.equal(base.X, other_data.X)


def test_digits_dataset():
    p = make_problem("digits", n=100, d=64, m=16, seed=0, dtype=torch.float64)
    assert p.X.shape == (100, 64)
    assert set(p.y.tolist()) <= {-1.0, 1.0}
