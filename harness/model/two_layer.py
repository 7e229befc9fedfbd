r"""BPSW21's two-layer ReLU problem (``model=two_layer``, the default) and its matrix-free
curvature operators.

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
>>> from harness.model import make_problem
>>> p = make_problem("synthetic", n=8, d=4, m=32, seed=0, dtype=torch.float64)
>>> lin = p.linearize()
>>> G = lin.jacobian.gram()
>>> bool(torch.allclose(G, lin.jacobian.dense() @ lin.jacobian.dense().T))
True
"""

from __future__ import annotations

import math
from typing import Any

import torch

from harness.linalg import kernels
from harness.model.protocols import (
    LAYERED,
    TWO_LAYER,
    GramBase,
    JacobianBase,
    Linearization,
    Model,
    OnInputs,
    Shape,
    check_operand,
    register_model,
)


def gram_from_counts(counts: torch.Tensor, X: torch.Tensor, m: int,
                     damping: float = 0.0) -> torch.Tensor:
    """G + μI from the co-activation counts D Dᵀ of all m units (in place): counts ⊙ X Xᵀ / m.
    Shared by the one-process and the sharded Jacobian (whose counts are summed over ranks)."""
    G = counts.mul_(X @ X.T).div_(m)
    if damping:
        G.diagonal().add_(damping)
    return G


class JacobianOperator(OnInputs, JacobianBase):
    r"""J ∈ R^{n×md} of f at W, held as (X, D, a): ``J @ V``, ``J.T @ g``, ``gram()``, ``dense()``.

    ``V`` is an m×d tensor (or a flat md vector), ``g`` a length-n vector. Every product with
    the pattern D goes through ``harness.linalg.kernels``, which picks its route (float or int8
    GEMM)
    by measuring both on this machine.
    """

    def __init__(self, X: torch.Tensor, D: torch.Tensor, a: torch.Tensor):
        self.X, self.D, self.a = X, D, a
        self.pattern = kernels.Pattern(D)
        self.n, self.d = X.shape
        self.m = a.shape[0]
        self.num_params = self.m * self.d
        self.scale = 1.0 / math.sqrt(self.m)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.m * self.d)

    def matvec(self, V: torch.Tensor) -> torch.Tensor:
        """(J v)_i = x_i · (D (a ⊙ V))_i / √m."""
        check_operand("J @ v", V, self.num_params)
        V = V.reshape(self.m, self.d)
        DV = kernels.pattern_mm(self.pattern, self.a[:, None] * V)
        return torch.einsum("nd,nd->n", DV, self.X) * self.scale

    def rmatvec(self, g: torch.Tensor) -> torch.Tensor:
        """Jᵀ g = a ⊙ (Dᵀ (g ⊙ X)) / √m, returned as an m×d matrix (∇_W L for g = r)."""
        check_operand("J.T @ g", g, (self.n,))
        return kernels.pattern_rmm(self.pattern, g[:, None] * self.X) \
            * (self.a * self.scale)[:, None]

    def pattern_sandwich(self, Y: torch.Tensor) -> torch.Tensor:
        """D (Dᵀ Y) for Y of shape (n, k): the two passes through D of a Gram product."""
        return kernels.pattern_mm(self.pattern, kernels.pattern_rmm(self.pattern, Y))

    def gram(self, damping: float = 0.0) -> torch.Tensor:
        """G + μI with G = (X Xᵀ) ⊙ (D Dᵀ) / m (Hadamard identity; no explicit J).

        D Dᵀ counts co-active units, integers ≤ m: every route of ``kernels.pattern_gram``
        forms it exactly.
        """
        return gram_from_counts(kernels.pattern_gram(self.pattern), self.X, self.m, damping)

    def gram_operator(self, damping: float = 0.0) -> GramOperator:
        return GramOperator(self, damping)

    def layers(self):
        """The one layer's Kronecker factors (U, X), U = D diag(a)/√m: J_i = vec(u_i ⊗ x_i)
        (an n×m copy; the two-layer paths use D, a and X directly instead)."""
        yield self.D * (self.a * self.scale), self.X

    def rows(self, i0: int, i1: int) -> torch.Tensor:
        """Rows i0..i1−1 of J: (u_i ⊗ x_i) with u_i = a ⊙ D_i / √m, shape (i1−i0) × md."""
        return self.columns(0, self.m, i0, i1)

    def columns(self, r0: int, r1: int, i0: int = 0, i1: int | None = None) -> torch.Tensor:
        """The block of J with the columns of units r0..r1−1, rows i0..i1−1."""
        i1 = self.n if i1 is None else i1
        U = self.D[i0:i1, r0:r1] * (self.a[r0:r1] * self.scale)
        return (U[:, :, None] * self.X[i0:i1, None, :]).reshape(i1 - i0, -1)


class GramOperator(GramBase):
    r"""Matrix-free G + μI: ``(G + μI) p = rowsum(X ⊙ D (Dᵀ (p ⊙ X))) / m + μ p``.

    Two products with D per application, no md-sized intermediate beyond m×d. ``p`` may be a
    vector (n,) or a block (n, k); the block form runs k products in one pass through D.
    """

    def __matmul__(self, p: torch.Tensor) -> torch.Tensor:
        X = self.jac.X
        check_operand("G @ p", p, (self.n,), block=True)
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


@register_model
class TwoLayerReLU(Model, OnInputs):
    """BPSW21's two-layer ReLU network f(W) = relu(X Wᵀ) a/√m, trained first layer W (m×d).

    Data, fixed output signs and the current first-layer weights ``W`` (updated in place).

    Implements ``Problem``: ``params`` is W itself, ``update`` moves it; the problem owns the
    math, the algorithms own their state (torch.optim's split).
    """

    name = "two_layer"
    features = frozenset({TWO_LAYER, LAYERED})
    depth = 1
    ladder_depth = 1

    def __init__(self, X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, a: torch.Tensor,
                 info: dict[str, Any] | None = None):
        self.X, self.y, self.W, self.a = X, y, W, a
        self.n, self.d = X.shape
        self.m = W.shape[0]
        self.num_params = self.m * self.d
        self.W0 = W.clone()
        self.info = dict(info or {})

    @property
    def params(self) -> torch.Tensor:
        return self.W

    @property
    def params0(self) -> torch.Tensor:
        return self.W0

    @classmethod
    def build(cls, X, y, *, m, depth, init_gen, device, dtype, info) -> TwoLayerReLU:
        """The model on data (X, y): W and a drawn by ``first_layer_init``, then cast."""
        W, a = first_layer_init(m, X.shape[1], init_gen)
        cast = dict(device=device, dtype=dtype)
        return cls(X.to(**cast), y.to(**cast), W.to(**cast), a.to(**cast), info=info)

    @classmethod
    def check_sizes(cls, m: int, depth: int) -> str | None:
        if depth != 1:
            return (f"model.depth={depth} does not apply to model=two_layer (one trained "
                    f"layer); use model=mlp for depth > 1")
        return None

    # --- what the harness plans and prices with (``Model``) ---------------------------------

    @classmethod
    def count_params(cls, m: int, d: int, depth: int = 1) -> int:
        return m * d

    @classmethod
    def memory_bytes(cls, shape: Shape) -> int:
        """X, y, W, W0, a, plus one linearisation (the n×m pattern D, its one-byte mask and
        the mask's int8 copy for the integer products of ``harness.linalg.kernels``) and an
        m×d gradient with the n×d product it is reduced from (tests/test_contract.py measures
        the lot)."""
        n, m, d, P = shape.n, shape.m, shape.d, shape.m * shape.d
        return shape.bytes(n * d + n + 3 * P + m + n * m + 2 * n + n * d) + 2 * n * m

    @classmethod
    def layer_dims(cls, m: int, d: int, depth: int = 1) -> list[tuple[int, int]]:
        return [(m, d)]

    @classmethod
    def op_costs(cls, c, depth: int = 1) -> TwoLayerCosts:
        return TwoLayerCosts(c)

    def update(self, direction: torch.Tensor, step: float) -> None:
        """W ← W − step · direction (an m×d tensor or a flat md vector)."""
        check_operand("update direction", direction, self.num_params)
        self.W.sub_(direction.reshape(self.W.shape), alpha=step)


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


def first_layer_init(m: int, d: int, init_gen: torch.Generator,
                     out_width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """W ~ N(0, 1)^{m×d}, then a ∈ {±1}^{out_width (default m)}, in float64 from the init
    stream: every model draws its first layer and output signs first, in this order, so a
    deeper model at depth 1 is this model bit for bit."""
    W = torch.randn(m, d, generator=init_gen, dtype=torch.float64)
    a = torch.randint(0, 2, (out_width or m,), generator=init_gen).to(torch.float64) * 2 - 1
    return W, a


class TwoLayerCosts:
    """Seconds of this model's operators on a cost-model profile: ``c`` is a
    ``harness.costmodel.Costs`` (its kernels: ``gemm``, ``ew``, ``fresh`` and the pattern
    products on their ``harness.linalg.kernels`` route), each composite priced as the
    methods above run it."""

    def __init__(self, c):
        self.c = c

    def params(self, m: float, d: float) -> float:
        return m * d

    def forward(self, n: float, m: float, d: float) -> float:
        """linearize(): X Wᵀ into a new n×m buffer, relu_, (·) a, sign_ (the buffer becomes D
        in place)."""
        c = self.c
        c.new_pattern()  # a new D: no int8 copy yet
        return c.gemm(n, m, d, "xw") + c.fresh(n * m) + 3 * c.ew(n * m) + 2 * c.ew(n)

    def jt(self, n: float, m: float, d: float) -> float:
        """Jᵀ g before its scaling: Dᵀ (g ⊙ X)."""
        return self.c.ew(n * d) + self.c.pattern("pattern_rmm", n, m, d)

    def rmatvec(self, n: float, m: float, d: float) -> float:
        """Jᵀ g = a ⊙ (Dᵀ (g ⊙ X)) / √m, then W −= η·(it)."""
        return self.jt(n, m, d) + 3 * self.c.ew(m * d)

    def gram_apply(self, n: float, m: float, d: float, k: float = 1) -> float:
        """(G + μI) P for a block of k vectors: rowsum(X ⊙ D (Dᵀ (P ⊙ X))) / m."""
        c, kd = self.c, k * d
        return (2 * c.ew(n * kd) + c.pattern("pattern_rmm", n, m, kd)
                + c.pattern("pattern_mm", n, m, kd) + c.ew(n * k))

    def gram(self, n: float, m: float, d: float) -> float:
        """G = (D Dᵀ) ⊙ (X Xᵀ) / m (+ μI)."""
        c = self.c
        return c.pattern("pattern_gram", n, m) + c.gemm(n, n, d, "xw") + 2 * c.ew(n * n)
