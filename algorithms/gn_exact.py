r"""Gauss–Newton with the explicit Jacobian: what one does today for a generic network (CGH+19).

    J ∈ R^{n×md} explicitly,   G = J Jᵀ,   g = (G + μI)⁻¹ r  (Cholesky),   W ← W − η Jᵀ g

J comes either from automatic differentiation (``jacobian: autograd``: per-example
Jacobians by ``torch.func.vmap(torch.func.jacrev(f_i))``, the standard functorch recipe
for per-sample gradients of any network) or from the closed form
J[i, (r,k)] = a_r D_ir x_ik / √m (``jacobian: closed_form``). Either way the n·m·d entries
are stored and G costs the 2n²md flops of a dense product: the structure of spec §2, which
``gn_gram`` exploits to form G in 2n²(m + d), is deliberately not used. Both are the same
Gauss–Newton step as ``gn_gram`` to rounding error; what differs is time and memory.

The feasibility check refuses sizes whose Jacobian does not fit the memory budget, e.g.
n = 8192, m = 65536, d = 16 needs 34 GB for J alone in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import jacrev, vmap

from algorithms.base import Algorithm, Shape, StepInfo, base_memory, register
from algorithms.solvers import check_step, cholesky_solve
from harness.common.errors import unknown
from harness.common.flops import monomial
from harness.model import TWO_LAYER

JACOBIANS = ("autograd", "closed_form")
#: Elementwise passes over the n·P entries of J to form it (closed form: the product U ⊙ X
#: and its reshape; autograd: vmap/jacrev's batched intermediates): the cost model's count.
JACOBIAN_PASSES = {"closed_form": 2.0, "autograd": 6.0}


@dataclass
class GNExactParams:
    jacobian: str = "autograd"  # autograd (torch.func per-example jacrev) | closed_form
    step_size: float = 1.0  # η
    damping: float = 0.0  # μ in (G + μI)⁻¹ r

    def __post_init__(self) -> None:
        if self.jacobian not in JACOBIANS:
            raise unknown("algorithm.jacobian", self.jacobian, JACOBIANS)
        check_step(self.step_size, self.damping)


def autograd_jacobian(W: torch.Tensor, X: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """J ∈ R^{n×md} by torch.func: vmap over examples of jacrev of f_i(W) = relu(W x_i)·a/√m."""
    scale = 1.0 / math.sqrt(a.shape[0])

    def output(W_: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # the model on one input
        return torch.relu(W_ @ x) @ a * scale

    return vmap(jacrev(output), in_dims=(None, 0))(W, X).reshape(X.shape[0], -1)


@register
class GNExact(Algorithm):
    """Gauss–Newton with the explicit n×md Jacobian (autograd or closed form), G = J Jᵀ."""

    name = "gn_exact"
    Params = GNExactParams
    family = "gauss_newton"
    references = ("Cai, Gao, Hou, Chen, Wang, He, Zhang, Wang. Gram-Gauss-Newton method: "
                  "learning overparameterized neural networks for regression problems. "
                  "arXiv 1905.11675 (GGN with the Jacobian formed explicitly)",)
    cost_text = "2n²md + n³/3 + 5nmd"
    ladder_runs = ({"step_size": 0.05}, {"step_size": 0.05, "jacobian": "closed_form"})

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return [monomial("n²md", 2, n, m, d, 2, 1, 1), monomial("n³", 1 / 3, n, m, d, 3, 0, 0),
                monomial("nmd", 5, n, m, d, 1, 1, 1, linearize=0.4)]  # forward, J, Jᵀg

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        P = c.params(m, d)
        nP = n * P
        jacobian = JACOBIAN_PASSES[p["jacobian"]] * c.ew(nP)
        if p["jacobian"] == "closed_form":
            jacobian += c.ew(n * m)
        elif c.depth > 1:  # jacrev: the backward pass of n cotangents at once, per layer
            jacobian += (c.depth - 1) * c.gemm(n * n, m, m)
        return {"forward": c.forward(n, m, d), "jacobian": jacobian, "gram": c.gemm(n, n, P),
                "solve": c.cholesky_solve(n), "update": c.ew(nP) + c.ew(P)}  # Jᵀg reads J

    @classmethod
    def phase_key(cls, params, phase):
        return f"jacobian:{params.get('jacobian')}" if phase == "jacobian" else phase

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        n, m, d = shape.n, shape.m, shape.d
        # J itself; G, its Cholesky factor; Jᵀg. The closed form adds U = D diag(a)/√m
        # (n×m). Autograd's vmap builds its result through one more n×m×d temporary and
        # keeps batched pre-activations, masks and cotangents: measured peak on the CPU at
        # n=256, m=16384, d=16 (float32): 2.4 × |J| = 2|J| + 6.4 n·m elements.
        P = shape.num_params
        extra = n * m * d + 7 * n * m if params.jacobian == "autograd" else n * m
        if params.jacobian == "autograd" and TWO_LAYER not in shape.features:
            # jacrev of the whole forward pass (any model): n batched backward passes, each
            # holding every layer's n×m activations and cotangents, and J's vmapped copy
            extra = 2 * n * P + 2 * n * n * m * shape.depth
        return base_memory(shape) + shape.bytes(n * P + extra + 2 * n**2 + P)

    def setup(self, phase) -> None:
        """Warm torch.func up on two rows: its first call in a process pays a one-off
        start-up (measured 0.8 s on the CPU) that would otherwise land in step 1's time."""
        if self.params.jacobian == "autograd":
            with phase("warmup"):
                p = self.problem
                if TWO_LAYER in p.features:
                    autograd_jacobian(p.W, p.X[:2], p.a)
                else:
                    jacrev(lambda th: p.forward(th, rows=torch.arange(2)))(p.params)

    def _jacobian(self, lin) -> torch.Tensor:
        if self.params.jacobian == "autograd":
            p = self.problem
            if TWO_LAYER in p.features:
                return autograd_jacobian(p.W, p.X, p.a)
            return jacrev(p.forward)(p.params).reshape(p.n, -1)  # any model: f(θ) by torch.func
        return lin.jacobian.dense()

    def step(self, phase) -> StepInfo:
        p = self.params
        with phase("forward"):
            lin = self.problem.linearize()
        with phase("jacobian"):
            J = self._jacobian(lin)
        r = lin.residual
        del lin  # the pattern D is not needed any more: free n×m before G
        with phase("gram"):
            G = J @ J.T
            if p.damping:
                G.diagonal().add_(p.damping)
        with phase("solve"):
            g = cholesky_solve(G, r, p.damping)
        with phase("update"):
            self.problem.update(J.T @ g, p.step_size)
        return StepInfo()
