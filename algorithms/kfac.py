r"""K-FAC for the two-layer net, as analysed by ZMG19 (§ on K-FAC).

Convention: the mean loss L̄ = L/n, its gradient ∇L̄ = Jᵀr/n (an m×d matrix) and its Fisher
F = JᵀJ/n = (1/n) Σ_i (u_i u_iᵀ/m) ⊗ (x_i x_iᵀ), u_i = a ⊙ D_i (row i of U = D diag(a)).
K-FAC replaces the mean of Kronecker products by the Kronecker product of the means,

    F ≈ S ⊗ A,    A = XᵀX / n  (d×d),    S = UᵀU / (nm)  (m×m),

and damps each factor by √μ:

    ΔW = (S + √μI)⁻¹ ∇L̄ (A + √μI)⁻¹,    W ← W − η ΔW.

S has rank n < m, so it is never formed or inverted. Because ∇L̄ = Uᵀ B with
B = (r ⊙ X)/(n√m) ∈ R^{n×d} (the gradient lies in the row space of U), the push-through
(Woodbury) identity (UᵀU/(nm) + cI_m)⁻¹ Uᵀ = Uᵀ (UUᵀ/(nm) + cI_n)⁻¹ gives

    ΔW = Uᵀ (UUᵀ/(nm) + √μ I_n)⁻¹ B (A + √μI)⁻¹,    UUᵀ = D Dᵀ  (a² = 1):

one n×n Cholesky factorisation per step, no cancellation and no m×m matrix. A is constant
(X does not change), so (A + √μI)⁻¹ is computed once in ``setup``.

Step size. In the linearised model the residual moves by r ← (I − ηK) r with
K = J (S + √μI)⁻¹ ⊗ (A + √μI)⁻¹ Jᵀ / n = (X(A + √μI)⁻¹Xᵀ) ⊙ (UUᵀ(UUᵀ + nm√μ I)⁻¹),
and by the Schur product theorem K ≼ diag(h) with h_i = x_iᵀ (A + √μI)⁻¹ x_i (for μ → 0,
K → diag(h): n times the leverage scores of X). ``step_size: auto`` takes η = 1/max_i h_i,
the largest step with ηK ≼ I, so the linearised loss never increases; the predicted loss
ratio per step is then max_i (1 − η h_i)² = (1 − min h / max h)² for small μ. With unit rows
1/λ_max(A) ≤ h_i ≤ 1/λ_min(A), so this is at most (1 − 1/κ(XᵀX))²: the rate depends on the
conditioning of the inputs, not on λ, which is the dependence ZMG19 state for K-FAC (the
exact constants of their theorem were not checked here). K-FAC is therefore linear, not
Gauss–Newton-fast: it reaches 1e-6 only after many steps unless XᵀX is well conditioned.

Cost per step: forward pass, D Dᵀ (n²m), Cholesky (n³/3), Dᵀ(·) (nmd); memory O(nm + n²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from algorithms.base import (
    Algorithm,
    Shape,
    StepInfo,
    base_memory,
    check_number_or_auto,
    register,
    require,
)
from algorithms.solvers import cholesky_solve
from harness.common.flops import monomial
from harness.linalg import kernels
from harness.model import TWO_LAYER


@dataclass
class KFACParams:
    step_size: Any = "auto"  # η, or "auto" = 1/max_i x_iᵀ(A + √μI)⁻¹x_i (ηK ≼ I)
    damping: float = 1.0e-12  # μ; each factor gets √μ (S's eigenvalues are ~ 1/n or more)

    def __post_init__(self) -> None:
        check_number_or_auto("step_size", self.step_size)
        require(self.damping >= 0, "damping", ">= 0", self.damping)


@register
class KFAC(Algorithm):
    """K-FAC with the Kronecker factors A = XᵀX/n, S = UᵀU/(nm), S inverted by Woodbury."""

    requires = frozenset({TWO_LAYER})  # its factors are those of the one trained layer
    unshardable = "its factors are formed from the whole pattern D, not through the operators"

    name = "kfac"
    Params = KFACParams
    # an approximate natural gradient (Fisher ≈ S ⊗ A): a linear rate depending on κ(XᵀX), not
    # Gauss–Newton's, so not in the gauss_newton family that C1 is about
    family = "approximate_natural_gradient"
    references = ("Zhang, Martens, Grosse. Fast convergence of natural gradient descent for "
                  "overparameterized neural networks. NeurIPS 2019, arXiv 1905.10961 (K-FAC)",
                  "Martens, Grosse. Optimizing neural networks with Kronecker-factored "
                  "approximate curvature. ICML 2015, arXiv 1503.05671")
    cost_text = "2n²m + n³/3 + d³ + 4nmd"
    ladder_runs = ({"step_size": 0.05},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return [monomial("n²m", 2, n, m, d, 2, 1, 0), monomial("n³", 1 / 3, n, m, d, 3, 0, 0),
                monomial("d³", 1, n, m, d, 0, 0, 3), monomial("nmd", 4, n, m, d, 1, 1, 1)]

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        return {"forward": c.forward(n, m, d),
                "gram": c.pattern("pattern_gram", n, m) + 2 * c.ew(n * n),
                "solve": 2 * c.ew(n * d) + c.cholesky_solve(n, rhs=d) + c.gemm(n, d, d, "xw"),
                "update": c.pattern("pattern_rmm", n, m, d) + 2 * c.ew(m * d)}

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        n, m, d = shape.n, shape.m, shape.d
        # D Dᵀ/(nm) + √μI and its Cholesky factor; B and its solve (n×d); ΔW; A and its inverse
        return base_memory(shape) + shape.bytes(2 * n**2 + 2 * n * d + m * d + 2 * d**2)

    def setup(self, phase) -> None:
        p, X = self.params, self.problem.X
        self.root_damping = math.sqrt(p.damping)
        with phase("factor_A"):
            A = X.T @ X / self.problem.n
            A.diagonal().add_(self.root_damping)
            self.A_inv = torch.linalg.inv(A)  # d×d, fixed for the whole run
        if p.step_size == "auto":
            h = torch.einsum("nd,de,ne->n", X, self.A_inv, X)  # x_iᵀ(A + √μI)⁻¹x_i
            self.step_size = 1.0 / float(h.max())
        else:
            self.step_size = float(p.step_size)

    def step(self, phase) -> StepInfo:
        problem = self.problem
        n, m = problem.n, problem.m
        with phase("forward"):
            lin = problem.linearize()
            jac = lin.jacobian
        with phase("gram"):
            K = kernels.pattern_gram(jac.pattern).div_(n * m)  # U Uᵀ/(nm), a² = 1
            K.diagonal().add_(self.root_damping)
        with phase("solve"):
            B = lin.residual[:, None] * jac.X / (n * math.sqrt(m))  # ∇L̄ = Uᵀ B
            C = cholesky_solve(K, B, self.params.damping) @ self.A_inv
        with phase("update"):
            # Uᵀ C = (S + √μI)⁻¹ ∇L̄ (A + √μI)⁻¹
            delta = kernels.pattern_rmm(jac.pattern, C).mul_(jac.a[:, None])
            problem.update(delta, self.step_size)
        return StepInfo(extras={"step_size": self.step_size})
