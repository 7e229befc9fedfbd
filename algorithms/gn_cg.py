r"""Gauss–Newton with an unpreconditioned, matrix-free conjugate-gradient solve (ablation).

    solve (G + μI) g = r by CG to ‖r − (G + μI) g‖ ≤ tol·‖r‖,    W ← W − η Jᵀ g,

with every product G p = J (Jᵀ p) = rowsum(X ⊙ D (Dᵀ (p ⊙ X))) / m applied matrix-free (two
products with the n×m pattern D, about two forward passes). Nothing n×n is formed. CG needs
about √κ(G + μI) iterations per decade of residual, and κ(G) grows like n/λ (spec §2): this
is the ablation that shows why BPSW21 precondition, and the baseline for ``gn_sketch``, whose
``tol`` default it shares (0.1: a Gauss–Newton step needs only constant relative accuracy).
The inner iteration count is reported per outer iteration.

Cost per step: one forward pass plus k Gram products, k·4nmd flops; memory O(nm).
"""

from __future__ import annotations

from dataclasses import dataclass

from algorithms.base import (
    Algorithm,
    Shape,
    StepInfo,
    base_memory,
    register,
)
from algorithms.solvers import cg_terms, check_solver
from harness.linalg.krylov import conjugate_gradient

#: CG iterations at tol 0.1 when none are measured: they grow like n^0.41 from 6 at n = 64
#: (the committed CPU sweep, claim C3's fit).
CG_INNER_AT_64, CG_INNER_SLOPE = 6.0, 0.41


@dataclass
class GNCGParams:
    tol: float = 0.1  # relative residual at which CG stops (as gn_sketch's default)
    max_inner: int = 1000  # CG iteration cap per outer iteration
    damping: float = 0.0  # μ in (G + μI) g = r
    step_size: float = 1.0  # η

    def __post_init__(self) -> None:
        check_solver(self.tol, self.max_inner, self.step_size, self.damping)


@register
class GNCG(Algorithm):
    """Gauss–Newton, (G + μI) g = r by matrix-free CG without a preconditioner (ablation)."""

    name = "gn_cg"
    Params = GNCGParams
    family = "gauss_newton"
    references = ("Hestenes, Stiefel. Methods of conjugate gradients for solving linear "
                  "systems. J. Res. NBS 49, 1952",
                  "van den Brand, Peng, Song, Weinstein. Training (overparametrized) neural "
                  "networks in near-linear time. ITCS 2021, arXiv 2006.11648 (the "
                  "unpreconditioned solve their sketch improves on)")
    reports_inner_iters = True
    cost_text = "(4k + 4)·nmd"
    ladder_runs = ({"step_size": 0.05},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return None if inner is None else cg_terms(inner, n, m, d)

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        return {"forward": c.forward(n, m, d), "solve": c.cg(n, m, d, inner),
                "update": c.rmatvec(n, m, d)}

    @classmethod
    def default_inner_iters(cls, n, params):
        return min(float(params["max_inner"]),
                   CG_INNER_AT_64 * (max(n, 1) / 64) ** CG_INNER_SLOPE)

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        # CG's vectors (x, r, p, Ap) are n-sized; a Gram product holds a P-sized and an n×d
        return base_memory(shape) + shape.bytes(shape.num_params + 2 * shape.n * shape.d
                                                + 4 * shape.n)

    def step(self, phase) -> StepInfo:
        p = self.params
        with phase("forward"):
            lin = self.problem.linearize()
        with phase("solve"):
            cg = conjugate_gradient(lin.gram_operator(p.damping), lin.residual, tol=p.tol,
                                    max_iter=p.max_inner)
        with phase("update"):
            self.problem.update(lin.jacobian.rmatvec(cg.x), p.step_size)
        return StepInfo(inner_iters=cg.iterations,
                        extras={"inner_rel_residual": cg.relative_residual,
                                "inner_converged": cg.converged})
