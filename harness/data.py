"""Datasets: each returns inputs X ∈ R^{n×d} with unit-norm rows and targets y ∈ R^n.

Every loader draws only from the generator it is given (the *data* stream), in float64 on the
CPU, so the same seed gives the same data on every device and dtype. The registry maps a name
to a hyperparameter dataclass (also the Hydra schema of ``conf/data/<name>.yaml``) and a loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.errors import ConfigError, unknown
from harness.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    params: type  # the dataclass of hyperparameters (shared fields: name, n, d)
    load: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    description: str
    reference: str = ""


DATASETS: Registry[DatasetSpec] = Registry("dataset", "harness.data", "nlt.datasets")


def normalize_rows(X: torch.Tensor) -> torch.Tensor:
    """‖x_i‖₂ = 1 for every row, as the spec requires of every dataset."""
    norms = X.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ConfigError("dataset has an all-zero input row, which cannot be normalised")
    return X / norms


def teacher_targets(X: torch.Tensor, width: int, gen: torch.Generator) -> torch.Tensor:
    """y = relu(X W*ᵀ) a* / √width for a random teacher network, centred and scaled to unit RMS."""
    d = X.shape[1]
    W = torch.randn(width, d, generator=gen, dtype=X.dtype)
    a = torch.randint(0, 2, (width,), generator=gen).to(X.dtype) * 2 - 1
    y = torch.relu(X @ W.T) @ a / width**0.5
    y = y - y.mean()
    return y / y.pow(2).mean().sqrt().clamp_min(1e-12)


def make_targets(X: torch.Tensor, target: str, teacher_width: int, gen: torch.Generator):
    if target == "teacher":
        return teacher_targets(X, teacher_width, gen)
    if target == "noise":
        return torch.randn(X.shape[0], generator=gen, dtype=X.dtype)
    raise unknown("target", target, ["teacher", "noise"])


# --- synthetic --------------------------------------------------------------------------------


@dataclass
class SyntheticData:
    name: str = "synthetic"
    n: int = 256
    d: int = 16
    target: str = "teacher"  # teacher | noise
    teacher_width: int = 64


def load_synthetic(n: int, d: int, gen: torch.Generator, target: str = "teacher",
                   teacher_width: int = 64, **_):
    X = normalize_rows(torch.randn(n, d, generator=gen, dtype=torch.float64))
    return X, make_targets(X, target, teacher_width, gen)


DATASETS.register("synthetic")(
    DatasetSpec("synthetic", SyntheticData, load_synthetic,
                "x ~ N(0, I_d) normalised; y from a random teacher network or Gaussian noise")
)


# --- synthetic_hard ---------------------------------------------------------------------------


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


def load_synthetic_hard(n: int, d: int, gen: torch.Generator, kind: str = "clusters",
                        clusters: int = 8, spread: float = 0.05, intrinsic_dim: int = 3,
                        target: str = "teacher", teacher_width: int = 64, **_):
    """Small λ = λ_min(H∞): near-parallel inputs make G ill-conditioned (κ(G) ~ n/λ)."""
    if kind == "clusters":
        if clusters < 1 or spread <= 0:
            raise ConfigError(f"synthetic_hard needs clusters >= 1 and spread > 0, got "
                              f"clusters={clusters}, spread={spread}")
        centres = normalize_rows(torch.randn(clusters, d, generator=gen, dtype=torch.float64))
        labels = torch.randint(0, clusters, (n,), generator=gen)
        X = centres[labels] + spread / d**0.5 * torch.randn(n, d, generator=gen,
                                                            dtype=torch.float64)
    elif kind == "lowdim":
        if not 1 <= intrinsic_dim <= d:
            raise ConfigError(f"intrinsic_dim must be in [1, d={d}], got {intrinsic_dim}")
        basis = torch.linalg.qr(torch.randn(d, intrinsic_dim, generator=gen,
                                            dtype=torch.float64))[0]
        Z = torch.randn(n, intrinsic_dim, generator=gen, dtype=torch.float64)
        X = Z @ basis.T + 1e-2 / d**0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    else:
        raise unknown("synthetic_hard kind", kind, ["clusters", "lowdim"])
    X = normalize_rows(X)
    return X, make_targets(X, target, teacher_width, gen)


DATASETS.register("synthetic_hard")(
    DatasetSpec("synthetic_hard", SyntheticHardData, load_synthetic_hard,
                "small-λ inputs: tight clusters or a low-dimensional subspace, so κ(G) is large")
)


# --- digits -----------------------------------------------------------------------------------

DIGITS_N, DIGITS_D = 1797, 64


@dataclass
class DigitsData:
    name: str = "digits"
    n: int = 1797
    d: int = DIGITS_D
    target: str = "pm1"  # pm1: +1 for digits >= 5, else -1 | one_vs_rest: +1 for `digit`
    digit: int = 0


def load_digits(n: int, d: int, gen: torch.Generator, target: str = "pm1", digit: int = 0,
                **_):
    """scikit-learn's bundled 8×8 digits (no download); a random subset of n rows."""
    if d != DIGITS_D:
        raise ConfigError(f"digits has d={DIGITS_D} features, got data.d={d}. Allowed: [64]")
    if n > DIGITS_N:
        raise ConfigError(f"digits has {DIGITS_N} samples, got data.n={n}. Allowed: n <= "
                          f"{DIGITS_N}")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    rows = torch.randperm(DIGITS_N, generator=gen)[:n]
    X = torch.as_tensor(bunch.data, dtype=torch.float64)[rows]
    labels = torch.as_tensor(bunch.target)[rows]
    if target == "pm1":
        y = torch.where(labels >= 5, 1.0, -1.0).to(torch.float64)
    elif target == "one_vs_rest":
        y = torch.where(labels == digit, 1.0, -1.0).to(torch.float64)
    else:
        raise unknown("digits target", target, ["pm1", "one_vs_rest"])
    return normalize_rows(X), y


DATASETS.register("digits")(
    DatasetSpec("digits", DigitsData, load_digits,
                "scikit-learn's handwritten digits (1797 × 64), rows normalised, ±1 target",
                reference="Alpaydin & Kaynak, UCI optical recognition of handwritten digits")
)
