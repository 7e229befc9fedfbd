r"""Exact Gauss–Newton with the Gram matrix from the Hadamard identity (beyond the papers).

    G = (X Xᵀ) ⊙ (D Dᵀ) / m,   g = (G + μI)⁻¹ r  (Cholesky),   W ← W − η Jᵀ g

η = 1, μ = 0 is the pure Gauss–Newton step, which in the overparametrized regime is also the
minimum-norm solution of the linearised least-squares problem. Forming G costs 2n²(m + d)
flops instead of the 2n²md of an explicit Jacobian; the solve costs n³/3. This is the
strongest exact baseline against which BPSW21's sketched solver is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import Algorithm, Shape, StepInfo, base_memory, register
from harness.errors import ConfigError


@dataclass
class GNGramParams:
    step_size: float = 1.0  # η
    damping: float = 0.0  # μ ≥ 0

    def __post_init__(self) -> None:
        check_step(self.step_size, self.damping)


def cholesky_solve(G: torch.Tensor, r: torch.Tensor, damping: float) -> torch.Tensor:
    """(G + μI)⁻¹ r by Cholesky (r of shape (n,) or (n, k)); a clear error if not PD."""
    L, info = torch.linalg.cholesky_ex(G)
    if int(info) != 0:
        raise FloatingPointError(
            f"G + μI is not numerically positive definite (μ={damping}, pivot {int(info)}); "
            f"raise algorithm.damping or use dtype=float64")
    if r.ndim == 2:
        return torch.cholesky_solve(r, L)
    return torch.cholesky_solve(r[:, None], L)[:, 0]


def damped_gram_step(W: torch.Tensor, lin, step_size: float, damping: float, phase) -> None:
    """W ← W − η Jᵀ (G + μI)⁻¹ r for one linearisation (all rows, or a mini-batch's).

    G by the Hadamard identity, Cholesky solve; shared by gn_gram, ngd and ggn.
    """
    with phase("gram"):
        G = lin.jacobian.gram(damping)
    with phase("solve"):
        g = cholesky_solve(G, lin.residual, damping)
    with phase("update"):
        W.sub_(lin.jacobian.rmatvec(g), alpha=step_size)


def check_step(step_size: float, damping: float) -> None:
    if not step_size > 0:
        raise ConfigError(f"algorithm.step_size must be positive, got {step_size}")
    if not damping >= 0:
        raise ConfigError(f"algorithm.damping must be >= 0, got {damping}")


@register
class GNGram(Algorithm):
    """Exact Gauss–Newton: Hadamard-identity Gram, damped Cholesky solve."""

    name = "gn_gram"
    Params = GNGramParams
    family = "gauss_newton"
    references = ("Cai, Gao, Hou, Chen, Wang, He, Zhang, Wang. Gram-Gauss-Newton method: "
                  "learning overparameterized neural networks for regression problems. "
                  "arXiv 1905.11675 (full-batch GGN, Gram formed by the Hadamard identity)",)

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        return base_memory(shape) + shape.bytes(3 * shape.n**2)  # G, X Xᵀ, Cholesky factor

    def step(self, phase) -> StepInfo:
        p = self.params
        with phase("forward"):
            lin = self.problem.linearize()
        damped_gram_step(self.problem.W, lin, p.step_size, p.damping, phase)
        return StepInfo()
