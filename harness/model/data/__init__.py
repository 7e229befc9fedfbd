"""Datasets: each returns inputs X ∈ R^{n×d} with unit-norm rows and targets y ∈ R^n.

A dataset is one class in one file of this folder, registered with ``@register_dataset``
(``DATASETS``; third-party datasets through the entry-point group ``nlt.datasets``): a
``name``, a ``Params`` dataclass (its options with defaults, also the Hydra schema of
``harness/conf/data/<name>.yaml``; the fields ``name``, ``n`` and ``d`` come first), a
``description``, ``load(n, d, gen, **options)``, and optionally ``validate`` (a ConfigError
for a bad option before anything runs) and ``memory_bytes`` (the loader's peak host bytes).
Every loader draws only from the generator it is given (the *data* stream), in float64 on the
CPU, so the same seed gives the same data on every device and dtype.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from typing import Any, ClassVar

import torch

from harness.common.errors import ConfigError, unknown
from harness.common.registry import Registry


class Dataset:
    """What a registered dataset declares (class methods: no instance is made)."""

    name: ClassVar[str]
    Params: ClassVar[type]
    description: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls, n: int, d: int, gen: torch.Generator,
             **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def validate(cls, n: int, d: int, **options: Any) -> None:
        """Raise a ConfigError naming a bad option (default: every option is fine)."""

    @classmethod
    def memory_bytes(cls, n: int, d: int, **options: Any) -> int:
        """Peak host bytes of ``load`` (float64 on the CPU). Default: a few float64 copies of
        X and y, for a loader that gives no estimate of its own."""
        return 8 * GENERIC_COPIES * n * (d + 1)


#: float64 copies of (X, y) a loader without its own estimate is assumed to need
GENERIC_COPIES = 4

DATASETS: Registry[type[Dataset]] = Registry("dataset", "harness.model.data")


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    """Class decorator: a dataset under ``cls.name`` (``data=<name>``)."""
    return DATASETS.register(cls)


def validate_dataset(name: str, n: int, d: int, params: dict[str, Any]) -> None:
    """Every option of dataset ``name`` at size (n, d); a ConfigError names the bad one."""
    DATASETS.get(name).validate(n, d, **params)


def dataset_memory_bytes(name: str, n: int, d: int, params: dict[str, Any]) -> int:
    """Peak host memory of building the data (float64, on the CPU, before the move to the
    run's device and dtype): X, its normalised copy and the targets' intermediates."""
    return int(DATASETS.get(name).memory_bytes(n, d, **params))


# --- what several datasets share ----------------------------------------------------------------

TARGETS = ("teacher", "noise")


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"Unknown {key} {value!r}. Available: {sorted(allowed)}")


def check_int(key: str, value: Any, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        rule = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def check_positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{key} must be a finite number > 0, got {value!r}")


def teacher_bytes(n: int, d: int, target: str, teacher_width: int) -> int:
    # X W*ᵀ and its relu are n × width, alive together; W* is width × d
    return 8 * (2 * n * teacher_width + teacher_width * d + 4 * n) if target == "teacher" \
        else 8 * n


def validate_targets(target: Any, teacher_width: Any) -> None:
    one_of("data.target", target, TARGETS)
    check_int("data.teacher_width", teacher_width, 1)


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


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
