"""``synthetic_hard`` (spec §6): small λ = λ_min(H∞) from clustered or low-dimensional inputs,
so κ(G) ~ n/λ is large and preconditioning matters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.common.errors import ConfigError, unknown
from harness.model.data import (
    Dataset,
    check_int,
    check_positive,
    make_targets,
    normalize_rows,
    one_of,
    register_dataset,
    teacher_bytes,
    validate_targets,
)

KINDS = ("clusters", "lowdim")


@dataclass
class SyntheticHardData:
    name: str = "synthetic_hard"
    n: int = 256
    d: int = 16
    kind: str = "clusters"  # clusters | lowdim
    clusters: int = 8  # kind=clusters: number of tight clusters
    spread: float = 0.05  # kind=clusters: within-cluster standard deviation (smaller: smaller λ)
    intrinsic_dim: int = 3  # kind=lowdim: inputs lie near an r-dimensional subspace
    target: str = "teacher"
    teacher_width: int = 64


@register_dataset
class SyntheticHard(Dataset):
    name = "synthetic_hard"
    Params = SyntheticHardData
    description = "small-λ inputs: tight clusters or a low-dimensional subspace, so κ(G) is large"

    @classmethod
    def load(cls, n, d, gen, kind="clusters", clusters=8, spread=0.05, intrinsic_dim=3,
             target="teacher", teacher_width=64, **_):
        """Small λ = λ_min(H∞): near-parallel inputs make G ill-conditioned (κ(G) ~ n/λ)."""
        if kind == "clusters":
            if clusters < 1 or spread <= 0:
                raise ConfigError(f"synthetic_hard needs clusters >= 1 and spread > 0, got "
                                  f"clusters={clusters}, spread={spread}")
            centres = normalize_rows(torch.randn(clusters, d, generator=gen,
                                                 dtype=torch.float64))
            labels = torch.randint(0, clusters, (n,), generator=gen)
            X = centres[labels] + spread / d**0.5 * torch.randn(n, d, generator=gen,
                                                                dtype=torch.float64)
        elif kind == "lowdim":
            if not 1 <= intrinsic_dim <= d:
                raise ConfigError(f"intrinsic_dim must be in [1, d={d}], got {intrinsic_dim}")
            basis = torch.linalg.qr(torch.randn(d, intrinsic_dim, generator=gen,
                                                dtype=torch.float64))[0]
            Z = torch.randn(n, intrinsic_dim, generator=gen, dtype=torch.float64)
            X = Z @ basis.T + 1e-2 / d**0.5 * torch.randn(n, d, generator=gen,
                                                          dtype=torch.float64)
        else:
            raise unknown("synthetic_hard kind", kind, KINDS)
        X = normalize_rows(X)
        return X, make_targets(X, target, teacher_width, gen)

    @classmethod
    def validate(cls, n, d, kind: Any = "clusters", clusters: Any = 8, spread: Any = 0.05,
                 intrinsic_dim: Any = 3, target: Any = "teacher", teacher_width: Any = 64,
                 **_) -> None:
        one_of("data.kind", kind, KINDS)
        check_int("data.clusters", clusters, 1)
        check_positive("data.spread", spread)
        if kind == "lowdim":
            check_int("data.intrinsic_dim", intrinsic_dim, 1, d)
        else:
            check_int("data.intrinsic_dim", intrinsic_dim, 1)
        validate_targets(target, teacher_width)

    @classmethod
    def memory_bytes(cls, n, d, kind="clusters", clusters=8, intrinsic_dim=3,
                     target="teacher", teacher_width=64, **_) -> int:
        # centres[labels] + noise + their sum (clusters), or Z, Z Bᵀ, noise and the sum
        # (lowdim), then the normalised copy
        core = 8 * (4 * n * d + clusters * d + 2 * n) if kind == "clusters" \
            else 8 * (n * intrinsic_dim + 4 * n * d + d * intrinsic_dim)
        return core + teacher_bytes(n, d, target, teacher_width)
