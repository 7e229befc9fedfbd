r"""Gauss–Newton with CG preconditioned by a randomized Nyström approximation of G (beyond).

Frangella, Tropp and Udell's Nyström PCG, applied to the Gauss–Newton system
(G + μI) g = r, W ← W − η Jᵀ g. With a Gaussian test matrix Ω ∈ R^{n×ℓ} (orthonormalised):

    Y = G Ω                      ℓ matrix-free products, in blocks (GramOperator's block form)
    ν = eps · ‖Y‖_F,  Y_ν = Y + νΩ,  C = chol(Ωᵀ Y_ν),  F = Y_ν C⁻ᵀ
    F = U Σ Vᵀ (thin SVD),  Λ̂ = max(Σ² − ν, 0)       G ≈ Ĝ = U Λ̂ Uᵀ (rank ℓ)
    P⁻¹ = (λ̂_ℓ + μ) U (Λ̂ + μI)⁻¹ Uᵀ + (I − U Uᵀ)

P⁻¹ is applied in O(nℓ). The preconditioned system has κ ≲ (λ̂_ℓ + μ + ‖G − Ĝ‖)/(λ_min + μ):
it helps when the spectrum of G decays fast beyond the ℓ-th eigenvalue. Building Ĝ costs ℓ
Gram products, about 2ℓ forward passes; ℓ = ``rank`` (clamped to n). The preconditioner is
rebuilt by the same policy as gn_sketch (``refresh=always`` every step; ``adaptive`` when CG
with the old one has not converged within ``refresh_factor`` × the count after the last
rebuild, in which case CG continues with the new one from where it stopped).

Phases: forward, nystrom (building Ĝ), solve, update. Extras: ``refreshed``, ``refreshes``,
``cg_rel_residual``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from algorithms.base import Algorithm, Shape, StepInfo, base_memory, check_positive_int, register
from algorithms.solvers import RefreshingSolver, cg_terms, check_refresh, check_solver
from harness.common.flops import Term

#: CG iterations per step when none are measured: the mean of the committed CPU sweep's
#: cells (17.6, reports/cpu/cells.csv).
DEFAULT_NYSTROM_INNER = 17.6


@dataclass
class GNNystromParams:
    rank: int = 64  # ℓ, clamped to n
    tol: float = 0.1  # relative residual of the inner CG
    max_inner: int = 200
    refresh: str = "always"  # always | adaptive
    refresh_factor: float = 2.0
    damping: float = 0.0  # μ
    step_size: float = 1.0  # η

    def __post_init__(self) -> None:
        check_positive_int("rank", self.rank)
        check_refresh(self.refresh, self.refresh_factor)
        check_solver(self.tol, self.max_inner, self.step_size, self.damping)


def block_columns(n: int, m: int, num_params: int) -> int:
    """Columns of Ω per block product G Ω_b: keeps its k×P intermediate (two layers: m×(k·d))
    near n×m."""
    return max(1, n * m // num_params)


class NystromPreconditioner:
    """P⁻¹ v = (λ̂_ℓ + μ) U (Λ̂ + μ)⁻¹ Uᵀv + v − U Uᵀv for a rank-ℓ Nyström Ĝ = U Λ̂ Uᵀ."""

    def __init__(self, G, rank: int, damping: float, generator: torch.Generator, *,
                 block: int | None = None):
        n, dtype = G.shape[0], G.dtype
        Omega = torch.randn(n, rank, generator=generator, dtype=dtype, device=generator.device)
        Omega = torch.linalg.qr(Omega.to(G.device)).Q
        k = block or rank  # columns of Ω per product G Ω_b
        Y = torch.cat([G @ Omega[:, j:j + k] for j in range(0, rank, k)], dim=1)
        nu = torch.finfo(dtype).eps * float(torch.linalg.matrix_norm(Y))
        Y.add_(Omega, alpha=nu)  # shift keeps Ωᵀ Y_ν positive definite in floating point
        C = torch.linalg.cholesky(Omega.T @ Y)
        F = torch.linalg.solve_triangular(C, Y.T, upper=False).T  # Y_ν C⁻ᵀ
        U, sigma, _ = torch.linalg.svd(F, full_matrices=False)
        self.U = U
        self.lam = (sigma.pow(2) - nu).clamp_min(0.0)
        self.damping = damping
        self._weights = (self.lam[-1] + damping) / (self.lam + damping)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        c = self.U.T @ v
        return v + self.U @ ((self._weights - 1.0) * c)


@register
class GNNystrom(Algorithm):
    """Gauss–Newton, CG preconditioned by a randomized rank-ℓ Nyström approximation of G."""

    name = "gn_nystrom"
    Params = GNNystromParams
    family = "gauss_newton"
    references = ("Frangella, Tropp, Udell. Randomized Nyström preconditioning. SIAM J. Matrix "
                  "Anal. Appl. 44(2), 2023, arXiv 2110.02820",)
    reports_inner_iters = True
    cost_text = "(4k + 4)·nmd + 4k·nℓ + f·(4ℓ·nmd + 4nℓ²)"
    refresh_phases = ("nystrom",)
    ladder_runs = ({"step_size": 0.05, "refresh": "always"},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        if inner is None:
            return None
        ell = min(float(params["rank"]), n)
        return [*cg_terms(inner, n, m, d),
                Term("k·nℓ (preconditioner)", 4 * inner * n * ell, {"n": 1, "m": 0, "d": 0}),
                Term("ℓnmd (build)", refresh * 4 * ell * n * m * d, {"n": 1, "m": 1, "d": 1}),
                Term("nℓ² (build)", refresh * 4 * n * ell * ell, {"n": 1, "m": 0, "d": 0})]

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        ell = min(int(p["rank"]), n)
        kb = min(block_columns(n, m, int(c.params(m, d))), ell)
        build = c.ew(n * ell) + c.qr(n, ell)  # Ω, orthonormalised
        build += math.ceil(ell / kb) * c.gram_apply(n, m, d, kb) + 2 * c.ew(n * ell)  # Y, shift
        build += c.gemm(ell, ell, n) + c.cholesky(ell) + c.gemm(n, ell, ell)  # C, F = Y C⁻ᵀ
        build += 3 * c.qr(n, ell)  # thin SVD of F (n×ℓ), priced as three QRs of its shape
        return {"forward": c.forward(n, m, d), "nystrom": build,
                "solve": c.cg(n, m, d, inner,
                              precondition=lambda: 2 * c.gemm(n, 1, ell, "xw") + 3 * c.ew(n)),
                "update": c.rmatvec(n, m, d)}

    @classmethod
    def default_inner_iters(cls, n, params):
        return min(float(params["max_inner"]), DEFAULT_NYSTROM_INNER)

    @classmethod
    def memory_bytes(cls, params: GNNystromParams, shape: Shape) -> int:
        n, m, d = shape.n, shape.m, shape.d
        ell = min(params.rank, n)
        k = block_columns(n, m, shape.num_params)
        block = (2 * n * d + shape.num_params) * min(k, ell)  # one block product G Ω_b
        return base_memory(shape) + shape.bytes(5 * n * ell + 2 * ell * ell + block + 6 * n)

    def setup(self, phase) -> None:
        self.solver = RefreshingSolver(self.params.refresh, self.params.refresh_factor)

    def build(self, phase, lin) -> NystromPreconditioner:
        problem = self.problem
        with phase("nystrom"):
            return NystromPreconditioner(
                lin.gram_operator(), min(self.params.rank, lin.jacobian.n), self.params.damping,
                self.generator, block=block_columns(problem.n, problem.m, problem.num_params))

    def step(self, phase) -> StepInfo:
        p, problem = self.params, self.problem
        with phase("forward"):
            lin = problem.linearize()
        cg, inner, refreshed = self.solver.solve(phase, lin, p, lambda: self.build(phase, lin))
        with phase("update"):
            problem.update(lin.jacobian.rmatvec(cg.x), p.step_size)
        return StepInfo(inner_iters=inner,
                        extras={"refreshed": int(refreshed), "refreshes": self.solver.count,
                                "cg_rel_residual": cg.relative_residual})
