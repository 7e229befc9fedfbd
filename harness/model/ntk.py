"""The NTK limit of the two-layer model (spec §2, claim C5): H∞ and λ = λ_min(H∞)."""

from __future__ import annotations

import math

import torch


def ntk_matrix(X: torch.Tensor) -> torch.Tensor:
    """H∞_ij = x_i·x_j (π − arccos(x_i·x_j)) / (2π), the m → ∞ limit of G at initialisation."""
    C = (X @ X.T).clamp_(-1.0, 1.0)
    return C * (math.pi - torch.arccos(C)) / (2 * math.pi)


def ntk_lambda(X: torch.Tensor) -> float:
    """λ = λ_min(H∞), computed in float64: the constant in every convergence theorem."""
    return float(torch.linalg.eigvalsh(ntk_matrix(X.double()))[0])
