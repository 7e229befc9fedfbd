r"""Exact Gauss–Newton with the Gram matrix from the Hadamard identity (beyond the papers).

    G = (X Xᵀ) ⊙ (D Dᵀ) / m,   g = (G + μI)⁻¹ r  (Cholesky),   W ← W − η Jᵀ g

η = 1, μ = 0 is the pure Gauss–Newton step, which in the overparametrized regime is also the
minimum-norm solution of the linearised least-squares problem. Forming G costs 2n²(m + d)
flops instead of the 2n²md of an explicit Jacobian; the solve costs n³/3. This is the
strongest exact baseline against which BPSW21's sketched solver is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from algorithms.base import Algorithm, Shape, StepInfo, base_memory, register
from algorithms.solvers import (
    check_step,
    damped_gram_seconds,
    damped_gram_step,
    damped_gram_terms,
)


@dataclass
class GNGramParams:
    step_size: float = 1.0  # η
    damping: float = 0.0  # μ ≥ 0

    def __post_init__(self) -> None:
        check_step(self.step_size, self.damping)


@register
class GNGram(Algorithm):
    """Exact Gauss–Newton: Hadamard-identity Gram, damped Cholesky solve."""

    name = "gn_gram"
    Params = GNGramParams
    family = "gauss_newton"
    references = ("Cai, Gao, Hou, Chen, Wang, He, Zhang, Wang. Gram-Gauss-Newton method: "
                  "learning overparameterized neural networks for regression problems. "
                  "arXiv 1905.11675 (full-batch GGN, Gram formed by the Hadamard identity)",)
    cost_text = "2n²(m+d) + n³/3 + 4nmd"
    ladder_runs = ({"step_size": 0.05},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return damped_gram_terms(n, m, d)

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        return damped_gram_seconds(c, n, m, d)

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        return base_memory(shape) + shape.bytes(3 * shape.n**2)  # G, X Xᵀ, Cholesky factor

    def step(self, phase) -> StepInfo:
        p = self.params
        with phase("forward"):
            lin = self.problem.linearize()
        damped_gram_step(self.problem, lin, p.step_size, p.damping, phase)
        return StepInfo()
