r"""Adam on the mean loss: what practitioners reach for (Kingma & Ba).

On the mean loss L̄ = L/n = (1/n)·½‖r‖², with the gradient in closed form (no autograd),

    g_t = ∇L̄ = Jᵀ r / n,
    m_t = β₁ m_{t−1} + (1 − β₁) g_t,        v_t = β₂ v_{t−1} + (1 − β₂) g_t²,
    W ← W − α · (m_t / (1 − β₁ᵗ)) / (√(v_t / (1 − β₂ᵗ)) + ε)

(elementwise; torch.optim.Adam holds m, v and the bias corrections). Full batch, one
forward pass and one Jᵀr per step.

Default lr. Adam's first steps move every weight by about α, coherently across the m
units, so the outputs move by O(α·√m); α must shrink like 1/√m for the first steps not to
overshoot. α = 1e-3 (torch's default) lowers the loss monotonically on the default problem
(n = 256, m = 1024, d = 16) and at m = 16384; at larger widths lower it. Adam does not fit
the data to 1e-6 in a few hundred steps: it is the first-order reference point, not a
competitor on iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import Algorithm, Shape, StepInfo, base_memory, register, require
from algorithms.solvers import gradient_seconds, gradient_terms

#: torch.optim.Adam's update: about this many elementwise passes over the parameters.
ADAM_PASSES = 8


@dataclass
class AdamParams:
    lr: float = 1.0e-3  # α; the function moves by O(α√m) per step, so shrink α as m grows
    beta1: float = 0.9  # β₁, first-moment decay
    beta2: float = 0.999  # β₂, second-moment decay
    eps: float = 1.0e-8  # ε in the denominator

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", "positive", self.lr)
        for key in ("beta1", "beta2"):
            require(0 <= getattr(self, key) < 1, key, "in [0, 1)", getattr(self, key))
        require(self.eps > 0, "eps", "positive", self.eps)


@register
class Adam(Algorithm):
    """Adam (torch.optim.Adam) on the mean loss, gradient Jᵀr/n in closed form."""

    name = "adam"
    Params = AdamParams
    references = ("Kingma, Ba. Adam: a method for stochastic optimization. ICLR 2015, "
                  "arXiv 1412.6980",)
    cost_text = "4nmd"
    ladder_runs = ({"lr": 1e-6},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return gradient_terms(n, m, d)  # the elementwise moment updates are O(md)

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        # Adam's m and v, and two parameter-sized temporaries of its update (√v, √v̂ + ε)
        return base_memory(shape) + shape.bytes(4 * shape.num_params)

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        out = gradient_seconds(c, n, m, d)
        P = c.params(m, d)
        out["gradient"] += c.ew(P)  # / n
        out["update"] = ADAM_PASSES * c.ew(P)
        return out

    def setup(self, phase) -> None:
        p = self.params
        self.theta = self.problem.params
        self.optimizer = torch.optim.Adam([self.theta], lr=p.lr, betas=(p.beta1, p.beta2),
                                          eps=p.eps)

    @torch.no_grad()
    def step(self, phase) -> StepInfo:
        with phase("forward"):
            lin = self.problem.linearize()
        with phase("gradient"):
            self.theta.grad = lin.jacobian.rmatvec(lin.residual).div_(self.problem.n)
        with phase("update"):
            self.optimizer.step()
        return StepInfo()
