r"""Full-batch gradient descent (DZPS19).

    W ← W − η Jᵀ r = W − η ∇_W L

Stable for η < 2/λ_max(G); DZPS19's theory takes η = O(λ/n²). ``lr: auto`` sets
η = 1/λ_max(G_0), the largest safe step, with λ_max from power iteration on the matrix-free
Gram operator at initialisation. Cost per iteration: one forward pass (n·m·d) and one Jᵀr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from algorithms.base import Algorithm, StepInfo, check_number_or_auto, check_positive_int, register
from algorithms.solvers import gradient_seconds, gradient_terms, resolve_lr


@dataclass
class GDParams:
    lr: Any = "auto"  # step size η, or "auto" = 1/λ_max(G_0)
    power_iters: int = 100  # power-iteration cap for lr=auto

    def __post_init__(self) -> None:
        check_number_or_auto("lr", self.lr)
        check_positive_int("power_iters", self.power_iters)


@register
class GD(Algorithm):
    """Full-batch gradient descent, W ← W − η Jᵀr."""

    name = "gd"
    Params = GDParams
    references = ("Du, Zhai, Poczos, Singh. Gradient descent provably optimizes "
                  "over-parameterized neural networks. ICLR 2019, arXiv 1810.02054",)
    cost_text = "4nmd"
    ladder_runs = ({"lr": 1e-6},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return gradient_terms(n, m, d)

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        return gradient_seconds(c, n, m, d)

    def setup(self, phase) -> None:
        with phase("step_size"):
            self.lr = resolve_lr(self.params.lr, self.problem, self.generator,
                                 self.params.power_iters)

    def step(self, phase) -> StepInfo:
        with phase("forward"):
            lin = self.problem.linearize()
        with phase("gradient"):
            grad = lin.jacobian.rmatvec(lin.residual)
        with phase("update"):
            self.problem.update(grad, self.lr)
        return StepInfo(extras={"lr": self.lr})
