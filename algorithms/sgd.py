r"""Mini-batch stochastic gradient descent, optional heavy-ball momentum.

On a batch B of size b drawn without replacement (a fresh permutation every epoch, from the
algorithm's own random stream), the unbiased gradient estimate is

    ĝ = (n / b) J_Bᵀ r_B,    W ← W − η ĝ   (momentum: torch.optim.SGD's buffer).

``lr: auto`` takes η = (b / n) / λ_max(G_0): the full-batch safe step for the batch *sum*.
One outer iteration is one mini-batch step, costing O(b·m·d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from algorithms.base import (
    Algorithm,
    EpochBatches,
    Shape,
    StepInfo,
    base_memory,
    check_number_or_auto,
    check_positive_int,
    register,
    require,
)
from algorithms.solvers import gradient_seconds, resolve_lr
from harness.common.flops import Term, batch_size


@dataclass
class SGDParams:
    lr: Any = "auto"  # step size η, or "auto" = (b/n)/λ_max(G_0)
    batch_size: int = 32  # b; capped at n
    momentum: float = 0.0  # heavy-ball momentum in [0, 1)
    power_iters: int = 100

    def __post_init__(self) -> None:
        check_number_or_auto("lr", self.lr)
        check_positive_int("batch_size", self.batch_size)
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        check_positive_int("power_iters", self.power_iters)


@register
class SGD(Algorithm):
    """Mini-batch SGD with optional momentum (torch.optim.SGD on a closed-form gradient)."""

    name = "sgd"
    Params = SGDParams
    references = ("Robbins, Monro. A stochastic approximation method. 1951",)
    cost_text = "4bmd"
    ladder_runs = ({"lr": 1e-6},)

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        b, eb = batch_size(params, n)
        return [Term("bmd", 4 * b * m * d, {"n": eb, "m": 1, "d": 1}, linearize=0.5)]

    @classmethod
    def memory_bytes(cls, params, shape: Shape) -> int:
        b = min(max(int(params.batch_size), 1), shape.n)
        # the batch's rows of X and their int64 indices; torch's update temporary (P)
        return base_memory(shape) + shape.bytes(b * shape.d + shape.num_params) + 8 * b

    @classmethod
    def step_seconds(cls, c, p, n, m, d, inner):
        out = gradient_seconds(c, min(int(p["batch_size"]), n), m, d)
        P = c.params(m, d)
        out["update"] = 2 * c.ew(P) if p.get("momentum") else c.ew(P)
        return out

    def setup(self, phase) -> None:
        p, n = self.params, self.problem.n
        self.b = min(p.batch_size, n)
        with phase("step_size"):
            lr = resolve_lr(p.lr, self.problem, self.generator, p.power_iters)
        self.lr = lr * self.b / n if p.lr == "auto" else lr
        self.theta = self.problem.params
        self.optimizer = torch.optim.SGD([self.theta], lr=self.lr, momentum=p.momentum)
        self.batches = EpochBatches(n, self.b, self.generator, self.problem.device)

    @torch.no_grad()
    def step(self, phase) -> StepInfo:
        with phase("forward"):
            lin = self.problem.linearize(rows=self.batches.next())
        with phase("gradient"):
            self.theta.grad = lin.jacobian.rmatvec(lin.residual).mul_(self.problem.n / self.b)
        with phase("update"):
            self.optimizer.step()
        return StepInfo(extras={"lr": self.lr})
