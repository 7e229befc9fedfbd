"""``synthetic`` (spec §6): x ~ N(0, I_d) normalised; y from a random teacher or noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.model.data import (
    Dataset,
    make_targets,
    normalize_rows,
    register_dataset,
    teacher_bytes,
    validate_targets,
)


@dataclass
class SyntheticData:
    name: str = "synthetic"
    n: int = 256
    d: int = 16
    target: str = "teacher"  # teacher | noise
    teacher_width: int = 64


@register_dataset
class Synthetic(Dataset):
    name = "synthetic"
    Params = SyntheticData
    description = "x ~ N(0, I_d) normalised; y from a random teacher network or Gaussian noise"

    @classmethod
    def load(cls, n, d, gen, target="teacher", teacher_width=64, **_):
        X = normalize_rows(torch.randn(n, d, generator=gen, dtype=torch.float64))
        return X, make_targets(X, target, teacher_width, gen)

    @classmethod
    def validate(cls, n, d, target: Any = "teacher", teacher_width: Any = 64, **_) -> None:
        validate_targets(target, teacher_width)

    @classmethod
    def memory_bytes(cls, n, d, target="teacher", teacher_width=64, **_) -> int:
        # randn X, its row norms and the normalised copy, then the targets
        return 8 * (2 * n * d + n) + teacher_bytes(n, d, target, teacher_width)
