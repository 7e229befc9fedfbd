"""Datasets: each returns inputs X ∈ R^{n×d} with unit-norm rows and targets y ∈ R^n.

Every loader draws only from the generator it is given (the *data* stream), in float64 on the
CPU, so the same seed gives the same data on every device and dtype. The registry maps a name
to a hyperparameter dataclass (also the Hydra schema of ``harness/conf/data/<name>.yaml``)
and a loader.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    #: ``validate(n, d, **params)`` raises ConfigError for a bad option before anything runs
    validate: Callable[..., None] | None = None
    #: ``memory_bytes(n, d, **params)``: host bytes the loader allocates at its peak
    memory_bytes: Callable[..., int] | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset", "harness.data", "nlt.datasets")


TARGETS = ("teacher", "noise")


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"Unknown {key} {value!r}. Available: {sorted(allowed)}")


def _check_int(key: str, value: Any, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        rule = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _check_positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{key} must be a finite number > 0, got {value!r}")


def validate_dataset(name: str, n: int, d: int, params: dict[str, Any]) -> None:
    """Every option of dataset ``name`` at size (n, d); a ConfigError names the bad one."""
    spec = DATASETS.get(name)
    if spec.validate is not None:
        spec.validate(n, d, **params)


#: bytes of float64 scratch a loader without its own estimate is assumed to need per element
_GENERIC_COPIES = 4


def dataset_memory_bytes(name: str, n: int, d: int, params: dict[str, Any]) -> int:
    """Peak host memory of building the data (float64, on the CPU, before the move to the
    run's device and dtype): X, its normalised copy and the targets' intermediates."""
    spec = DATASETS.get(name)
    if spec.memory_bytes is not None:
        return int(spec.memory_bytes(n, d, **params))
    return 8 * _GENERIC_COPIES * n * (d + 1)


def _teacher_bytes(n: int, d: int, target: str, teacher_width: int) -> int:
    # X W*ᵀ and its relu are n × width, alive together; W* is width × d
    return 8 * (2 * n * teacher_width + teacher_width * d + 4 * n) if target == "teacher" \
        else 8 * n


def _validate_targets(target: Any, teacher_width: Any) -> None:
    _one_of("data.target", target, TARGETS)
    _check_int("data.teacher_width", teacher_width, 1)


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


def validate_synthetic(n: int, d: int, target: Any = "teacher", teacher_width: Any = 64,
                       **_) -> None:
    _validate_targets(target, teacher_width)


def synthetic_bytes(n: int, d: int, target: str = "teacher", teacher_width: int = 64,
                    **_) -> int:
    # randn X, its row norms and the normalised copy, then the targets
    return 8 * (2 * n * d + n) + _teacher_bytes(n, d, target, teacher_width)


DATASETS.register("synthetic")(
    DatasetSpec("synthetic", SyntheticData, load_synthetic,
                "x ~ N(0, I_d) normalised; y from a random teacher network or Gaussian noise",
                validate=validate_synthetic, memory_bytes=synthetic_bytes)
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


KINDS = ("clusters", "lowdim")


def validate_synthetic_hard(n: int, d: int, kind: Any = "clusters", clusters: Any = 8,
                            spread: Any = 0.05, intrinsic_dim: Any = 3, target: Any = "teacher",
                            teacher_width: Any = 64, **_) -> None:
    _one_of("data.kind", kind, KINDS)
    _check_int("data.clusters", clusters, 1)
    _check_positive("data.spread", spread)
    if kind == "lowdim":
        _check_int("data.intrinsic_dim", intrinsic_dim, 1, d)
    else:
        _check_int("data.intrinsic_dim", intrinsic_dim, 1)
    _validate_targets(target, teacher_width)


def synthetic_hard_bytes(n: int, d: int, kind: str = "clusters", clusters: int = 8,
                         intrinsic_dim: int = 3, target: str = "teacher",
                         teacher_width: int = 64, **_) -> int:
    # centres[labels] + noise + their sum (clusters), or Z, Z Bᵀ, noise and the sum (lowdim),
    # then the normalised copy
    core = 8 * (4 * n * d + clusters * d + 2 * n) if kind == "clusters" \
        else 8 * (n * intrinsic_dim + 4 * n * d + d * intrinsic_dim)
    return core + _teacher_bytes(n, d, target, teacher_width)


DATASETS.register("synthetic_hard")(
    DatasetSpec("synthetic_hard", SyntheticHardData, load_synthetic_hard,
                "small-λ inputs: tight clusters or a low-dimensional subspace, so κ(G) is large",
                validate=validate_synthetic_hard, memory_bytes=synthetic_hard_bytes)
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


DIGITS_TARGETS = ("pm1", "one_vs_rest")


def validate_digits(n: int, d: int, target: Any = "pm1", digit: Any = 0, **_) -> None:
    if d != DIGITS_D:
        raise ConfigError(f"digits has d={DIGITS_D} features, got data.d={d}. Allowed: [64]")
    if n > DIGITS_N:
        raise ConfigError(f"digits has {DIGITS_N} samples, got data.n={n}. Allowed: n <= "
                          f"{DIGITS_N}")
    _one_of("data.target", target, DIGITS_TARGETS)
    _check_int("data.digit", digit, 0, 9)


def digits_bytes(n: int, d: int, **_) -> int:
    # the bundled table (as float64 twice: sklearn's and torch's copy) and the selected rows
    return 8 * (2 * DIGITS_N * DIGITS_D + 3 * n * d + 2 * n)


DATASETS.register("digits")(
    DatasetSpec("digits", DigitsData, load_digits,
                "scikit-learn's handwritten digits (1797 × 64), rows normalised, ±1 target",
                reference="Alpaydin & Kaynak, UCI optical recognition of handwritten digits",
                validate=validate_digits, memory_bytes=digits_bytes)
)
