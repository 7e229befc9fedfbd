r"""The two-layer ReLU problem of BPSW21 and its matrix-free curvature operators.

Model (spec §1): inputs X ∈ R^{n×d} with unit rows, targets y ∈ R^n, trained first layer
W ∈ R^{m×d}, fixed output signs a ∈ {±1}^m,

    f(W) = relu(X Wᵀ) a / √m,    r = f − y,    L(W) = ½‖r‖².

Structure (spec §2): with D = 1[X Wᵀ ≥ 0] ∈ {0,1}^{n×m}, row i of the Jacobian J ∈ R^{n×md}
(row-major vec(W)) is J_i = (a ⊙ D_i) ⊗ x_i / √m. Hence

    (J V)_i   = x_i · (D (a ⊙ V))_i / √m             one n×m · m×d product
    Jᵀ g      = a ⊙ (Dᵀ (g ⊙ X)) / √m                one m×n · n×d product
    G = J Jᵀ  = (X Xᵀ) ⊙ (D Dᵀ) / m                  2n²(m + d) flops
    G p       = rowsum(X ⊙ D (Dᵀ (p ⊙ X))) / m        a² = 1 cancels: two products with D

No n×m temporary other than D exists: the forward pass turns its pre-activation buffer into
D in place (relu, then sign), so a linearisation costs one n×m buffer.

Example
-------
>>> import torch
>>> from harness.problem import make_problem
>>> p = make_problem("synthetic", n=8, d=4, m=32, seed=0, dtype=torch.float64)
>>> lin = p.linearize()
>>> G = lin.jacobian.gram()
>>> bool(torch.allclose(G, lin.jacobian.dense() @ lin.jacobian.dense().T))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness import kernels
from harness.data import DATASETS
from harness.errors import ConfigError

STREAMS = ("data", "init", "algorithm")


def stream_seed(seed: int, stream: str) -> int:
    """Independent seed of one random stream (data, init, algorithm) from the master seed."""
    return int(np.random.SeedSequence([int(seed), STREAMS.index(stream)]).generate_state(1)[0])


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


class JacobianOperator:
    r"""J ∈ R^{n×md} of f at W, held as (X, D, a): ``J @ V``, ``J.T @ g``, ``gram()``, ``dense()``.

    ``V`` is an m×d tensor (or a flat md vector), ``g`` a length-n vector. Every product with
    the pattern D goes through ``harness.kernels``, which picks its route (float or int8 GEMM)
    by measuring both on this machine.
    """

    def __init__(self, X: torch.Tensor, D: torch.Tensor, a: torch.Tensor):
        self.X, self.D, self.a = X, D, a
        self.pattern = kernels.Pattern(D)
        self.n, self.d = X.shape
        self.m = a.shape[0]
        self.scale = 1.0 / math.sqrt(self.m)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.m * self.d)

    def matvec(self, V: torch.Tensor) -> torch.Tensor:
        """(J v)_i = x_i · (D (a ⊙ V))_i / √m."""
        V = V.reshape(self.m, self.d)
        DV = kernels.pattern_mm(self.pattern, self.a[:, None] * V)
        return torch.einsum("nd,nd->n", DV, self.X) * self.scale

    def rmatvec(self, g: torch.Tensor) -> torch.Tensor:
        """Jᵀ g = a ⊙ (Dᵀ (g ⊙ X)) / √m, returned as an m×d matrix (∇_W L for g = r)."""
        return kernels.pattern_rmm(self.pattern, g[:, None] * self.X) \
            * (self.a * self.scale)[:, None]

    def pattern_sandwich(self, Y: torch.Tensor) -> torch.Tensor:
        """D (Dᵀ Y) for Y of shape (n, k): the two passes through D of a Gram product."""
        return kernels.pattern_mm(self.pattern, kernels.pattern_rmm(self.pattern, Y))

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        return self.matvec(V)

    @property
    def T(self) -> _Adjoint:
        return _Adjoint(self)

    def gram(self, damping: float = 0.0) -> torch.Tensor:
        """G + μI with G = (X Xᵀ) ⊙ (D Dᵀ) / m (Hadamard identity; no explicit J).

        D Dᵀ counts co-active units, integers ≤ m: every route of ``kernels.pattern_gram``
        forms it exactly.
        """
        G = kernels.pattern_gram(self.pattern).mul_(self.X @ self.X.T).div_(self.m)
        if damping:
            G.diagonal().add_(damping)
        return G

    def dense(self) -> torch.Tensor:
        """The explicit n×md Jacobian, J[i, r·d + k] = a_r D_ir x_ik / √m (small sizes only)."""
        U = self.D * (self.a * self.scale)
        return (U[:, :, None] * self.X[:, None, :]).reshape(self.n, self.m * self.d)


class _Adjoint:
    def __init__(self, op: JacobianOperator):
        self.op = op

    @property
    def shape(self) -> tuple[int, int]:
        return self.op.shape[::-1]

    def __matmul__(self, g: torch.Tensor) -> torch.Tensor:
        return self.op.rmatvec(g)


class GramOperator:
    r"""Matrix-free G + μI: ``(G + μI) p = rowsum(X ⊙ D (Dᵀ (p ⊙ X))) / m + μ p``.

    Two products with D per application, no md-sized intermediate beyond m×d. ``p`` may be a
    vector (n,) or a block (n, k); the block form runs k products in one pass through D.
    """

    def __init__(self, jac: JacobianOperator, damping: float = 0.0):
        self.jac = jac
        self.damping = float(damping)
        self.n = jac.n

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def __matmul__(self, p: torch.Tensor) -> torch.Tensor:
        X = self.jac.X
        if p.ndim == 1:
            Z = self.jac.pattern_sandwich(p[:, None] * X)
            out = torch.einsum("nd,nd->n", Z, X) / self.jac.m
        else:  # block of k vectors: (n, k)
            k = p.shape[1]
            Y = (p.T[:, :, None] * X[None]).permute(1, 0, 2).reshape(self.n, k * self.jac.d)
            Z = self.jac.pattern_sandwich(Y).reshape(self.n, k, self.jac.d)
            out = torch.einsum("nkd,nd->nk", Z, X) / self.jac.m
        return out + self.damping * p if self.damping else out

    def diagonal(self) -> torch.Tensor:
        """diag(G)_i = ‖x_i‖² · (number of active units of i) / m, plus μ."""
        return self.jac.X.pow(2).sum(1) * self.jac.D.sum(1) / self.jac.m + self.damping

    def dense(self) -> torch.Tensor:
        return self.jac.gram(self.damping)


@dataclass
class Linearization:
    """Everything one forward pass at W gives: outputs f, residual r = f − y, loss, and J."""

    outputs: torch.Tensor
    residual: torch.Tensor
    jacobian: JacobianOperator

    @property
    def loss(self) -> float:
        return 0.5 * float(self.residual.pow(2).sum())

    def gram_operator(self, damping: float = 0.0) -> GramOperator:
        return GramOperator(self.jacobian, damping)


class TwoLayerReLU:
    """Data, fixed output signs and the current first-layer weights ``W`` (updated in place).

    Algorithms read and write ``problem.W``; the problem owns the math, the algorithms own
    their state (torch.optim's split).
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, a: torch.Tensor,
                 info: dict[str, Any] | None = None):
        self.X, self.y, self.W, self.a = X, y, W, a
        self.n, self.d = X.shape
        self.m = W.shape[0]
        self.W0 = W.clone()
        self.info = dict(info or {})

    @property
    def device(self) -> torch.device:
        return self.X.device

    @property
    def dtype(self) -> torch.dtype:
        return self.X.dtype

    def forward(self, W: torch.Tensor | None = None, rows: torch.Tensor | None = None):
        """f = relu(X Wᵀ) a / √m on all rows or on the index set ``rows``."""
        W = self.W if W is None else W
        X = self.X if rows is None else self.X[rows]
        return torch.relu(X @ W.T) @ self.a / math.sqrt(self.m)

    def loss(self, W: torch.Tensor | None = None) -> float:
        return 0.5 * float((self.forward(W) - self.y).pow(2).sum())

    def linearize(self, W: torch.Tensor | None = None,
                  rows: torch.Tensor | None = None) -> Linearization:
        """One forward pass: f, r and the Jacobian operator at W (optionally on a row subset).

        The n×m pre-activation buffer becomes D in place: relu, then sign (relu(z) ≥ 0, so
        sign gives 1 where z > 0 and 0 elsewhere; z = 0 exactly has probability zero and
        matches autograd's relu'(0) = 0).
        """
        W = self.W if W is None else W
        X = self.X if rows is None else self.X[rows]
        y = self.y if rows is None else self.y[rows]
        buf = torch.relu_(X @ W.T)
        f = buf @ self.a / math.sqrt(self.m)
        D = buf.sign_()
        return Linearization(f, f - y, JacobianOperator(X, D, self.a))

    def gradient(self, W: torch.Tensor | None = None) -> torch.Tensor:
        """∇_W L = Jᵀ r."""
        lin = self.linearize(W)
        return lin.jacobian.rmatvec(lin.residual)


def make_problem(dataset: str, n: int, d: int, m: int, seed: int = 0, *,
                 data_seed: int | None = None, init_seed: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 **data_params) -> TwoLayerReLU:
    """Build the problem from its own random streams: data and init never share a generator.

    Data and initialisation are drawn in float64 on the CPU and then cast, so a seed means the
    same problem on every device and dtype.
    """
    for key, value in (("data.n", n), ("data.d", d), ("model.m", m)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    spec = DATASETS.get(dataset)
    data_gen = make_generator(stream_seed(seed, "data") if data_seed is None else data_seed)
    X, y = spec.load(n, d, data_gen, **data_params)
    init_gen = make_generator(stream_seed(seed, "init") if init_seed is None else init_seed)
    W = torch.randn(m, d, generator=init_gen, dtype=torch.float64)
    a = torch.randint(0, 2, (m,), generator=init_gen).to(torch.float64) * 2 - 1
    cast = dict(device=device, dtype=dtype)
    return TwoLayerReLU(X.to(**cast), y.to(**cast), W.to(**cast), a.to(**cast),
                        info={"dataset": dataset, **data_params})


# --- the NTK limit ------------------------------------------------------------------------------


def ntk_matrix(X: torch.Tensor) -> torch.Tensor:
    """H∞_ij = x_i·x_j (π − arccos(x_i·x_j)) / (2π), the m → ∞ limit of G at initialisation."""
    C = (X @ X.T).clamp_(-1.0, 1.0)
    return C * (math.pi - torch.arccos(C)) / (2 * math.pi)


def ntk_lambda(X: torch.Tensor) -> float:
    """λ = λ_min(H∞), computed in float64: the constant in every convergence theorem."""
    return float(torch.linalg.eigvalsh(ntk_matrix(X.double()))[0])
