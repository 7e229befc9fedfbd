"""Iterative linear algebra on operators that support ``A @ x`` (spec §2–3).

Shared by every method that solves with G matrix-free; each returns what the runner reports
(iterations, relative residual) beside the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch


class LinearOperator(Protocol):
    def __matmul__(self, x: torch.Tensor) -> torch.Tensor: ...


def power_iteration(A: LinearOperator, n: int, *, iters: int = 50, tol: float = 1e-4,
                    generator: torch.Generator | None = None, dtype=torch.float32,
                    device="cpu") -> float:
    """λ_max of a symmetric positive semi-definite operator by the power method.

    Stops when the Rayleigh quotient changes by less than ``tol`` relative.
    """
    v = torch.randn(n, generator=generator, dtype=dtype, device=generator.device
                    if generator is not None else device).to(device)
    v /= v.norm()
    lam = 0.0
    for _ in range(iters):
        w = A @ v
        new = float(v @ w)
        v = w / w.norm().clamp_min(torch.finfo(dtype).tiny)
        if abs(new - lam) <= tol * abs(new):
            return new
        lam = new
    return lam


@dataclass
class CGResult:
    x: torch.Tensor
    iterations: int
    relative_residual: float
    converged: bool


def conjugate_gradient(A: LinearOperator, b: torch.Tensor, *, tol: float = 1e-6,
                       max_iter: int = 1000,
                       precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       x0: torch.Tensor | None = None) -> CGResult:
    """(Preconditioned) conjugate gradient for A x = b, A symmetric positive definite.

    Stops at ‖b − A x‖ ≤ tol ‖b‖. ``precondition(r)`` applies M⁻¹ ≈ A⁻¹ (for BPSW21,
    (RᵀR)⁻¹ by two triangular solves).
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - A @ x if x0 is not None else b.clone()
    b_norm = float(b.norm())
    if b_norm == 0.0:
        return CGResult(x, 0, 0.0, True)
    z = precondition(r) if precondition else r
    p = z.clone()
    rz = float(r @ z)
    res = float(r.norm()) / b_norm
    it = 0
    while res > tol and it < max_iter:
        Ap = A @ p
        curvature = float(p @ Ap)
        if not curvature > 0.0:  # breakdown: A is singular or indefinite along p (rounding)
            break
        alpha = rz / curvature
        x.add_(p, alpha=alpha)
        r.sub_(Ap, alpha=alpha)
        it += 1
        res = float(r.norm()) / b_norm
        if res <= tol:
            break
        z = precondition(r) if precondition else r
        rz_new = float(r @ z)
        p.mul_(rz_new / rz).add_(z)
        rz = rz_new
    return CGResult(x, it, res, res <= tol)
