r"""A toy method from outside the harness: damped gradient descent, W ← W − η/(1 + μ)·Jᵀr.

Everything the harness needs of a method is in this file: its parameters, its flops
(``cost_terms``) and its seconds on a cost-model profile (``step_seconds``).
"""

from dataclasses import dataclass

from algorithms.base import Algorithm, StepInfo, register, require
from algorithms.solvers import gradient_seconds
from harness.common.flops import monomial


@dataclass
class ToyParams:
    lr: float = 0.5  # η
    damping: float = 1.0  # μ

    def __post_init__(self):
        require(self.lr > 0, "lr", "positive", self.lr)
        require(self.damping >= 0, "damping", ">= 0", self.damping)


@register
class DampedGD(Algorithm):
    """Damped gradient descent, W ← W − η/(1 + μ) Jᵀr (a plugin)."""

    name = "toy_damped_gd"
    Params = ToyParams
    references = ("A toy for the plugin tests",)
    cost_text = "4nmd"
    ladder_runs = ({"lr": 1e-6},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return [monomial("nmd", 4, n, m, d, 1, 1, 1, linearize=0.5)]

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        out = gradient_seconds(c, n, m, d)
        return {"forward": out["forward"], "update": out["gradient"] + out["update"]}

    def step(self, phase):
        with phase("forward"):
            lin = self.problem.linearize()
        with phase("update"):
            self.problem.update(lin.jacobian.rmatvec(lin.residual),
                                self.params.lr / (1 + self.params.damping))
        return StepInfo()
