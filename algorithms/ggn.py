r"""Mini-batch Gram–Gauss–Newton (CGH+19).

At every outer iteration a batch B of b rows is drawn without replacement (a fresh
permutation every epoch, from the algorithm's own random stream, as in ``sgd``); with the
batch's residual r_B, Jacobian J_B ∈ R^{b×md} and Gram G_B = J_B J_Bᵀ (Hadamard identity),

    g = (G_B + μI)⁻¹ r_B,    W ← W − η J_Bᵀ g.

With η = 1, μ = 0 the step is the minimum-norm change of W that fits the batch exactly in the
linearised model (randomised block Kaczmarz on the linearisation, convergent for 0 < η < 2);
b ≥ n is full-batch GGN, identical to ``gn_gram``. CGH+19 prove a linear rate for the
mini-batch version and a quadratic one for full batch, both for wide enough nets.

μ defaults to 0: G_B is a principal submatrix of G, so by interlacing
λ_min(G_B) ≥ λ_min(G) and the batch system is never worse conditioned than the full one.
Cost per step: O(b·m·d) for the batch forward pass, 2b²(m + d) for G_B, b³/3 for the solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import (
    Algorithm,
    EpochBatches,
    Shape,
    StepInfo,
    base_memory,
    check_positive_int,
    register,
)
from algorithms.solvers import check_step, damped_gram_seconds, damped_gram_step
from harness.common.flops import Term, batch_size


@dataclass
class GGNParams:
    batch_size: int = 64  # b; b >= n is full-batch GGN (= gn_gram)
    step_size: float = 1.0  # η
    damping: float = 0.0  # μ in (G_B + μI)⁻¹ r_B

    def __post_init__(self) -> None:
        check_positive_int("batch_size", self.batch_size)
        check_step(self.step_size, self.damping)


@register
class GGN(Algorithm):
    """Mini-batch Gram–Gauss–Newton: g = (G_B + μI)⁻¹ r_B, W ← W − η J_Bᵀ g (CGH+19)."""

    name = "ggn"
    Params = GGNParams
    family = "gauss_newton"
    references = ("Cai, Gao, Hou, Chen, Wang, He, Zhang, Wang. Gram-Gauss-Newton method: "
                  "learning overparameterized neural networks for regression problems. "
                  "arXiv 1905.11675",)
    cost_text = "2b²m + b³/3 + 4bmd"
    ladder_runs = ({"step_size": 0.05},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        b, eb = batch_size(params, n)
        return [Term("b²m", 2 * b * b * m, {"n": 2 * eb, "m": 1, "d": 0}),
                Term("b³", b**3 / 3, {"n": 3 * eb, "m": 0, "d": 0}),
                Term("bmd", 4 * b * m * d, {"n": eb, "m": 1, "d": 1}, linearize=0.5)]

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        return damped_gram_seconds(c, min(int(p["batch_size"]), n), m, d)

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        b = min(max(int(params.batch_size), 1), shape.n)
        # the full forward pass for the loss is the runner's (base_memory); the batch adds
        # its b×m pattern, G_B, X_B X_Bᵀ and the Cholesky factor
        return base_memory(shape) + shape.bytes(b * shape.m + 3 * b**2)

    def setup(self, phase) -> None:
        self.b = min(self.params.batch_size, self.problem.n)
        self.batches = EpochBatches(self.problem.n, self.b, self.generator, self.problem.device)

    def _next_batch(self) -> torch.Tensor | None:
        if self.b >= self.problem.n:
            return None  # full batch: all rows, in order
        return self.batches.next()

    def step(self, phase) -> StepInfo:
        p = self.params
        with phase("forward"):
            lin = self.problem.linearize(rows=self._next_batch())
        damped_gram_step(self.problem, lin, p.step_size, p.damping, phase)
        return StepInfo(extras={"batch_size": self.b})
