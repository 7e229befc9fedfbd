r"""Natural gradient descent for the overparametrized two-layer net (ZMG19).

With the mean loss L̄ = L/n, its gradient ∇L̄ = Jᵀr/n and the (empirical = true, for the
square loss) Fisher F = JᵀJ/n, the damped natural-gradient step is, by the push-through
(Woodbury) identity (JᵀJ/n + λI)⁻¹ Jᵀ/n = Jᵀ (J Jᵀ + nλI)⁻¹,

    W ← W − η (F + λI)⁻¹ ∇L̄ = W − η Jᵀ (G + μI)⁻¹ r,    G = J Jᵀ,   μ = nλ,

so the md×md Fisher is never formed: G comes from the Hadamard identity
G = (X Xᵀ) ⊙ (D Dᵀ) / m and (G + μI)⁻¹ r from a Cholesky solve. With μ = 0, η = 1 this is
exactly the Gauss–Newton step of ``gn_gram``; NGD and GN coincide for the square loss.

ZMG19 analyse the undamped limit (μ → 0, F⁻¹ read as the pseudo-inverse) with a constant
step size η = O(1): for m large enough (polynomial in n/λ), ‖y − u(k)‖² ≤ (1 − η)^k ‖y − u(0)‖²
for η ≤ 1 (their Theorem for two-layer ReLU nets, as we read it; the exact constants of the
width condition were not checked here). The default is the largest step the theorem allows,
η = 1, and a small damping μ = 1e-6 that changes nothing at the default sizes (λ_min(G) is of
order 0.1) but keeps the Cholesky factorisation defined if G is nearly singular in float32.

Cost per step: one forward pass, 2n²(m + d) flops for G, n³/3 for the factorisation.
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
class NGDParams:
    step_size: float = 1.0  # η, ZMG19's constant step (their rate is (1 − η)^k for η ≤ 1)
    damping: float = 1.0e-6  # μ = n·λ (λ: damping of the mean-loss Fisher); ZMG19: μ → 0

    def __post_init__(self) -> None:
        check_step(self.step_size, self.damping)


@register
class NGD(Algorithm):
    """Natural gradient descent, η Jᵀ(G + μI)⁻¹ r by Woodbury and the Hadamard Gram (ZMG19)."""

    name = "ngd"
    Params = NGDParams
    family = "gauss_newton"
    references = ("Zhang, Martens, Grosse. Fast convergence of natural gradient descent for "
                  "overparameterized neural networks. NeurIPS 2019, arXiv 1905.10961",)
    cost_text = "2n²(m+d) + n³/3 + 4nmd"  # gn_gram's: the same step
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
        with phase("forward"):
            lin = self.problem.linearize()
        damped_gram_step(self.problem, lin, self.params.step_size, self.params.damping, phase)
        return StepInfo()
