"""J·v, Jᵀ·g, the Gram matrix and the CG product G·p of ``harness.model.two_layer`` (spec §2)."""

from __future__ import annotations

import torch

from .common import SIZES, problem


class Operators:
    """One product of each curvature operator at W_0; the pattern D is formed once in setup."""

    params = [SIZES]
    param_names = ["n_m"]
    timeout = 300

    def setup(self, size):
        self.problem = problem(size)
        self.lin = self.problem.linearize()
        self.jac = self.lin.jacobian
        self.gram_op = self.lin.gram_operator()
        gen = torch.Generator().manual_seed(1)
        self.V = torch.randn(self.jac.m, self.jac.d, generator=gen)
        self.g = torch.randn(self.jac.n, generator=gen)
        self.P = torch.randn(self.jac.n, 8, generator=gen)

    def time_preactivations(self, size):
        """X Wᵀ: the cost unit of nlt-bench's per-iteration table."""
        self.problem.X @ self.problem.W.T

    def time_linearize(self, size):
        """Forward pass: f, r and the pattern D."""
        self.problem.linearize()

    def time_jacobian_matvec(self, size):
        self.jac @ self.V

    def time_jacobian_rmatvec(self, size):
        self.jac.T @ self.g

    def time_gram(self, size):
        """G = (X Xᵀ) ⊙ (D Dᵀ) / m, dense n×n."""
        self.jac.gram()

    def time_gram_matvec(self, size):
        """G·p = J(Jᵀp): the CG product."""
        self.gram_op @ self.g

    def time_gram_block_matvec(self, size):
        """G·P for a block of 8 vectors (one pass through D)."""
        self.gram_op @ self.P
