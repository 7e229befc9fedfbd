r"""What several methods share, in one place (torch.optim's ``optimizer.py``): the numerical
cores of their steps, the checks of the parameters those cores take, and the flop counts of
the shared parts. A method file imports from here and from ``algorithms.base``, never from a
sibling method.

* ``cholesky_solve``, ``damped_gram_step``: g = (G + μI)⁻¹ r by Cholesky, and the whole
  θ ← θ − η Jᵀ g with G from the model (the Hadamard identity for two layers)
  (gn_gram, ngd, ggn; gn_exact, kfac solve);
* ``RefreshingSolver``: CG on (G + μI) g = r with a preconditioner rebuilt by policy
  (gn_sketch, gn_nystrom);
* ``resolve_lr``: a given step size, or 1/λ_max(G_0) by power iteration (gd, sgd);
* ``check_step``, ``check_solver``, ``check_refresh``: called from a Params ``__post_init__``;
* ``gradient_terms``, ``damped_gram_terms``, ``cg_terms``: flops of those shared parts;
* ``gradient_seconds``, ``damped_gram_seconds``: their seconds on a cost-model profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from algorithms.base import check_positive_int, require
from harness.common.errors import unknown
from harness.common.flops import Term, monomial
from harness.linalg.krylov import CGResult, conjugate_gradient, power_iteration

#: The public API of a method plugin (docs/extending.md, "The plugin API").
__all__ = ["REFRESH", "RefreshingSolver", "cg_terms", "check_refresh", "check_solver",
           "check_step", "cholesky_solve", "damped_gram_seconds", "damped_gram_step",
           "damped_gram_terms", "gradient_seconds", "gradient_terms", "resolve_lr"]

#: Preconditioner refresh policies of ``RefreshingSolver``.
REFRESH = ("always", "adaptive")


# --- parameter checks ---------------------------------------------------------------------------


def check_step(step_size: float, damping: float) -> None:
    """η > 0 and μ ≥ 0 of a damped Gauss–Newton step."""
    require(step_size > 0, "step_size", "positive", step_size)
    require(damping >= 0, "damping", ">= 0", damping)


def check_solver(tol: float, max_inner: int, step_size: float, damping: float) -> None:
    """An inner CG solve to relative residual ``tol`` in at most ``max_inner`` iterations,
    inside a damped Gauss–Newton step."""
    require(0 < tol < 1, "tol", "in (0, 1)", tol)
    check_positive_int("max_inner", max_inner)
    check_step(step_size, damping)


def check_refresh(refresh: str, refresh_factor: float) -> None:
    """A refresh policy of ``REFRESH`` and a factor ≥ 1 (``RefreshingSolver``)."""
    if refresh not in REFRESH:
        raise unknown("refresh policy", refresh, REFRESH)
    require(refresh_factor >= 1, "refresh_factor", ">= 1", refresh_factor)


# --- direct solves ------------------------------------------------------------------------------


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


def damped_gram_step(problem, lin, step_size: float, damping: float, phase) -> None:
    """θ ← θ − η Jᵀ (G + μI)⁻¹ r for one linearisation (all rows, or a mini-batch's).

    G by the Hadamard identity, Cholesky solve; shared by gn_gram, ngd and ggn.
    """
    with phase("gram"):
        G = lin.jacobian.gram(damping)
    with phase("solve"):
        g = cholesky_solve(G, lin.residual, damping)
    with phase("update"):
        problem.update(lin.jacobian.rmatvec(g), step_size)


# --- step sizes ---------------------------------------------------------------------------------


def resolve_lr(lr, problem, generator, power_iters: int) -> float:
    """The given step (checked by the Params), or 1/λ_max(G_0) for ``auto``."""
    if lr != "auto":
        return float(lr)
    G = problem.linearize().gram_operator()
    lam = power_iteration(G, problem.n, iters=power_iters, generator=generator,
                          dtype=problem.dtype, device=problem.device)
    return 1.0 / lam


# --- preconditioned CG --------------------------------------------------------------------------


class RefreshingSolver:
    """CG on (G + μI) g = r with a preconditioner rebuilt by policy (gn_sketch, gn_nystrom).

    ``always``: ``build()`` a new preconditioner every step. ``adaptive``: keep the last one;
    a step that reuses it may take at most ⌈``factor`` · k₀⌉ CG iterations (k₀: the count of
    the solve right after the last build). If that is not enough, the preconditioner is
    rebuilt at once and CG continues from the partial solution, so a stale preconditioner
    costs at most factor · k₀ wasted iterations. ``solve`` returns (CG result of the last
    solve, total inner iterations, whether it rebuilt).
    """

    def __init__(self, policy: str, factor: float):
        self.policy, self.factor = policy, factor
        self.count = 0  # rebuilds so far
        self.preconditioner: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._k0 = 1

    def budget(self, max_inner: int) -> int:
        """CG iterations a reused preconditioner may spend before it is replaced."""
        return min(max_inner, max(1, math.ceil(self.factor * self._k0)))

    def solve(self, phase, lin, params, build: Callable[[], Callable]) -> tuple[CGResult, int,
                                                                                 bool]:
        A = lin.gram_operator(params.damping)

        def run(max_iter: int, x0: torch.Tensor | None = None) -> CGResult:
            with phase("solve"):
                return conjugate_gradient(A, lin.residual, tol=params.tol, max_iter=max_iter,
                                          precondition=self.preconditioner, x0=x0)

        stale = None
        if self.policy == "adaptive" and self.preconditioner is not None:
            stale = run(self.budget(params.max_inner))
            if stale.converged:
                return stale, stale.iterations, False
        self.preconditioner = None  # free the old one before building the new
        self.preconditioner = build()
        self.count += 1
        cg = run(params.max_inner, None if stale is None else stale.x)
        self._k0 = max(1, cg.iterations)
        return cg, cg.iterations + (0 if stale is None else stale.iterations), True


# --- flops of the shared parts (spec §3; conventions in harness.common.flops) ---------------------


def gradient_terms(n: float, m: float, d: float) -> list[Term]:
    """A forward pass and Jᵀr: 4nmd (half of it the linearisation's forward pass)."""
    return [monomial("nmd", 4, n, m, d, 1, 1, 1, linearize=0.5)]


def damped_gram_terms(n: float, m: float, d: float) -> list[Term]:
    """``damped_gram_step`` on all n rows after a forward pass: 2n²(m+d) + n³/3 + 4nmd."""
    return [monomial("n²m", 2, n, m, d, 2, 1, 0), monomial("n²d", 2, n, m, d, 2, 0, 1),
            monomial("n³", 1 / 3, n, m, d, 3, 0, 0), *gradient_terms(n, m, d)]


def cg_terms(k: float, n: float, m: float, d: float) -> list[Term]:
    """k matrix-free CG products with G (4nmd each) after a forward pass, and Jᵀg."""
    return [monomial("k·nmd", 4 * k, n, m, d, 1, 1, 1), *gradient_terms(n, m, d)]


# --- seconds of the shared parts on a cost-model profile (``Algorithm.step_seconds``) ---------


def gradient_seconds(c, b: float, m: float, d: float) -> dict[str, float]:
    """A forward pass on b rows, Jᵀr with its scaling, and an update of the P parameters."""
    P = c.params(m, d)
    return {"forward": c.forward(b, m, d), "gradient": c.jt(b, m, d) + 2 * c.ew(P),
            "update": c.ew(P)}


def damped_gram_seconds(c, b: float, m: float, d: float) -> dict[str, float]:
    """``damped_gram_step`` on b rows after their forward pass."""
    return {"forward": c.forward(b, m, d), "gram": c.gram(b, m, d),
            "solve": c.cholesky_solve(b), "update": c.rmatvec(b, m, d)}

