r"""A toy dataset from outside the harness: points on a circle lifted to d dimensions by a
random rotation, with a smooth target y = sin(k·θ)."""

import math
from dataclasses import dataclass

import torch

from harness.model.data import Dataset, check_int, normalize_rows, register_dataset


@dataclass
class CircleParams:
    name: str = "toy_circle"
    n: int = 128
    d: int = 8
    frequency: int = 3  # k in y = sin(k θ)


@register_dataset
class Circle(Dataset):
    """Points on a circle in a random 2-plane of R^d, y = sin(k θ) (a plugin)."""

    name = "toy_circle"
    Params = CircleParams
    description = "points on a circle in a random 2-plane of R^d, y = sin(kθ) (a plugin)"

    @classmethod
    def load(cls, n, d, gen, frequency=3, **_):
        theta = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
        plane = torch.linalg.qr(torch.randn(d, 2, generator=gen, dtype=torch.float64))[0]
        ring = torch.stack([theta.cos(), theta.sin()], 1) @ plane.T
        X = normalize_rows(ring + 0.1 * torch.randn(n, d, generator=gen, dtype=torch.float64))
        return X, torch.sin(frequency * theta)

    @classmethod
    def validate(cls, n, d, frequency=3, **_):
        check_int("data.d", d, 2)
        check_int("data.frequency", frequency, 1)

    @classmethod
    def memory_bytes(cls, n, d, **_):
        return 8 * (4 * n * d + 4 * n)
