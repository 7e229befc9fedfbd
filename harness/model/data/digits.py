"""``digits`` (spec §6): scikit-learn's bundled handwritten digits (1797 × 64), no download."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.common.errors import ConfigError, unknown
from harness.model.data import Dataset, check_int, normalize_rows, one_of, register_dataset

DIGITS_N, DIGITS_D = 1797, 64
DIGITS_TARGETS = ("pm1", "one_vs_rest")


@dataclass
class DigitsData:
    name: str = "digits"
    n: int = 1797
    d: int = DIGITS_D
    target: str = "pm1"  # pm1: +1 for digits >= 5, else -1 | one_vs_rest: +1 for `digit`
    digit: int = 0


@register_dataset
class Digits(Dataset):
    name = "digits"
    Params = DigitsData
    description = "scikit-learn's handwritten digits (1797 × 64), rows normalised, ±1 target"
    references = ("Alpaydin & Kaynak, UCI optical recognition of handwritten digits",)

    @classmethod
    def load(cls, n, d, gen, target="pm1", digit=0, **_):
        """The bundled 8×8 digits; a random subset of n rows."""
        cls.validate(n, d, target=target, digit=digit)
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
            raise unknown("digits target", target, DIGITS_TARGETS)
        return normalize_rows(X), y

    @classmethod
    def validate(cls, n, d, target: Any = "pm1", digit: Any = 0, **_) -> None:
        if d != DIGITS_D:
            raise ConfigError(f"digits has d={DIGITS_D} features, got data.d={d}. "
                              f"Allowed: [{DIGITS_D}]")
        if n > DIGITS_N:
            raise ConfigError(f"digits has {DIGITS_N} samples, got data.n={n}. Allowed: n <= "
                              f"{DIGITS_N}")
        one_of("data.target", target, DIGITS_TARGETS)
        check_int("data.digit", digit, 0, 9)

    @classmethod
    def memory_bytes(cls, n, d, **_) -> int:
        # the bundled table (float64 twice: sklearn's and torch's copy) and the selected rows
        return 8 * (2 * DIGITS_N * DIGITS_D + 3 * n * d + 2 * n)
