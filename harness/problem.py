r"""The model seam (``Problem``/``Jacobian`` protocols, the model registry) and the two-layer
ReLU problem of BPSW21 with its matrix-free curvature operators.

Every method talks to a problem through the ``Problem`` protocol below — J·v, Jᵀ·g, the Gram
matrix or its operator, and ``problem.update(direction, step)`` — never through a model's
weights, so a method written for the two-layer model runs on any registered model
(``model=two_layer`` by default, ``model=mlp`` in ``harness/mlp.py``). A method that needs a
model's structure declares it (``Algorithm.requires``: K-FAC needs ``TWO_LAYER``;
``Sketch.requires``: the tensor sketches need ``LAYERED``) and is skipped with the reason on a
model without it.

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
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from harness import kernels
from harness.data import DATASETS
from harness.errors import ConfigError
from harness.registry import Registry

STREAMS = ("data", "init", "algorithm")

#: structure tag of the two-layer model: one trained layer with the pattern D and signs a
#: (K-FAC's factors, the sketches' and autograd Jacobian's direct two-layer paths)
TWO_LAYER = "two_layer"
#: structure tag of a model whose Jacobian rows are, layer by layer, Kronecker products
#: δᵢ⁽ˡ⁾ ⊗ hᵢ⁽ˡ⁻¹⁾ given by ``jacobian.layers()`` (the tensor sketches, one per layer)
LAYERED = "layered"


@runtime_checkable
class Jacobian(Protocol):
    """J ∈ R^{n×P} of the outputs at the current parameters, matrix-free.

    ``matvec(v)`` takes a flat P-vector or a parameter-shaped tensor and returns (n,);
    ``rmatvec(g)`` returns a parameter-shaped tensor (∇L for g = r); ``gram(μ)`` the dense
    n×n G + μI; ``gram_operator(μ)`` its matrix-free form (``@`` on (n,) or (n, k),
    ``diagonal()``, ``dense()``, ``dtype``, ``device``); ``rows(i0, i1)`` the dense block of
    rows (sketches build S Jᵀ from it a block at a time); ``dense()`` all of J (small sizes
    only).
    """

    n: int
    num_params: int

    @property
    def shape(self) -> tuple[int, int]: ...
    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...
    def rmatvec(self, g: torch.Tensor) -> torch.Tensor: ...
    def gram(self, damping: float = 0.0) -> torch.Tensor: ...
    def gram_operator(self, damping: float = 0.0) -> Any: ...
    def rows(self, i0: int, i1: int) -> torch.Tensor: ...
    def dense(self) -> torch.Tensor: ...


@runtime_checkable
class Problem(Protocol):
    """What a method may use of a model: data, one parameter tensor updated in place, outputs,
    the linearisation (residual and ``Jacobian``) and the update.

    ``params`` is one leaf tensor (the two-layer model's W; the MLP's flat vector with the
    layer matrices as views), so torch.optim optimisers take ``[problem.params]``;
    ``features`` names the structure a method may rely on (``TWO_LAYER``).
    """

    model: str
    features: frozenset[str]
    X: torch.Tensor
    y: torch.Tensor
    n: int
    d: int
    m: int
    depth: int
    params: torch.Tensor
    params0: torch.Tensor
    num_params: int

    def forward(self, params: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor: ...
    def loss(self, params: torch.Tensor | None = None) -> float: ...
    def linearize(self, params: torch.Tensor | None = None,
                  rows: torch.Tensor | None = None) -> Linearization: ...
    def update(self, direction: torch.Tensor, step: float) -> None: ...


def check_operand(what: str, value: torch.Tensor, expected: tuple[int, ...] | int, *,
                  block: bool = False) -> None:
    """A ValueError naming the expected and the received shape (curvlinops' style) unless
    ``value`` is a tensor of the expected shape. An int expects that many elements in any
    shape; ``block`` also accepts a block of k such vectors, (size, k) for ``expected``
    (size,)."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor, got {type(value).__name__}")
    got = tuple(value.shape)
    if isinstance(expected, int):
        if value.numel() == expected:
            return
        want = f"{expected} elements"
    else:
        expected = tuple(expected)
        if got == expected or (block and value.ndim == 2 and got[:1] == expected):
            return
        want = str(expected) + (f" or ({expected[0]}, k)" if block else "")
    raise ValueError(f"{what}: expected shape {want}, got {got}")


def as_block(what: str, x: torch.Tensor, size: int) -> tuple[torch.Tensor, bool]:
    """``x`` of shape (size,) or (size, k) as a (size, k) block, and whether it was a vector
    (a wrong shape is ``check_operand``'s ValueError)."""
    check_operand(what, x, (size,), block=True)
    return (x[:, None], True) if x.ndim == 1 else (x, False)


def stream_seed(seed: int, stream: str) -> int:
    """Independent seed of one random stream (data, init, algorithm) from the master seed."""
    return int(np.random.SeedSequence([int(seed), STREAMS.index(stream)]).generate_state(1)[0])


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


class OnInputs:
    """``device`` and ``dtype``: those of the inputs X the object holds."""

    @property
    def device(self) -> torch.device:
        return self.X.device

    @property
    def dtype(self) -> torch.dtype:
        return self.X.dtype


class JacobianBase:
    """What every Jacobian operator derives from its ``matvec``, ``rmatvec`` and ``rows``:
    ``J @ v``, ``J.T @ g`` and the explicit ``dense()`` J (small sizes only)."""

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v)

    @property
    def T(self) -> _Adjoint:
        return _Adjoint(self)

    def dense(self) -> torch.Tensor:
        return self.rows(0, self.n)


class _Adjoint:
    """Jᵀ as an operator: ``J.T @ g`` is ``J.rmatvec(g)``."""

    def __init__(self, op: JacobianBase):
        self.op = op

    @property
    def shape(self) -> tuple[int, int]:
        return self.op.shape[::-1]

    @property
    def T(self) -> JacobianBase:
        return self.op

    def __matmul__(self, g: torch.Tensor) -> torch.Tensor:
        return self.op.rmatvec(g)


class JacobianOperator(OnInputs, JacobianBase):
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
        G = kernels.pattern_gram(self.pattern).mul_(self.X @ self.X.T).div_(self.m)
        if damping:
            G.diagonal().add_(damping)
        return G

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



class GramBase:
    """What every Gram operator (G + μI, matrix-free) shares: its Jacobian, the damping,
    shape, dtype and device, and ``dense()`` from the Jacobian's dense Gram."""

    def __init__(self, jac, damping: float = 0.0):
        self.jac = jac
        self.damping = float(damping)
        self.n = jac.n

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def dtype(self) -> torch.dtype:
        return self.jac.dtype

    @property
    def device(self) -> torch.device:
        return self.jac.device

    def dense(self) -> torch.Tensor:
        return self.jac.gram(self.damping)


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


@dataclass
class Linearization:
    """Everything one forward pass at W gives: outputs f, residual r = f − y, loss, and J."""

    outputs: torch.Tensor
    residual: torch.Tensor
    jacobian: JacobianOperator

    @property
    def loss(self) -> float:
        return 0.5 * float(self.residual.pow(2).sum())

    def gram_operator(self, damping: float = 0.0):
        """The matrix-free G + μI of this linearisation (the model's own operator)."""
        return self.jacobian.gram_operator(damping)


class TwoLayerReLU(OnInputs):
    """BPSW21's two-layer ReLU network f(W) = relu(X Wᵀ) a/√m, trained first layer W (m×d).

    Data, fixed output signs and the current first-layer weights ``W`` (updated in place).

    Implements ``Problem``: ``params`` is W itself, ``update`` moves it; the problem owns the
    math, the algorithms own their state (torch.optim's split).
    """

    model = "two_layer"
    features = frozenset({TWO_LAYER, LAYERED})
    depth = 1

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


MODELS: Registry[type] = Registry("model", "harness.models", "nlt.models")


def register_model(cls: type) -> type:
    """Class decorator: a model under ``cls.model`` (``model=<name>`` on the command line).

    The class provides ``build(X, y, *, m, depth, init_gen, device, dtype, info)`` returning a
    ``Problem``, ``features`` and ``check_sizes(m, depth)`` (a sentence when they are not
    allowed, else None).
    """
    return MODELS.register(cls.model)(cls)


def first_layer_init(m: int, d: int, init_gen: torch.Generator,
                     out_width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """W ~ N(0, 1)^{m×d}, then a ∈ {±1}^{out_width (default m)}, in float64 from the init
    stream: every model draws its first layer and output signs first, in this order, so a
    deeper model at depth 1 is this model bit for bit."""
    W = torch.randn(m, d, generator=init_gen, dtype=torch.float64)
    a = torch.randint(0, 2, (out_width or m,), generator=init_gen).to(torch.float64) * 2 - 1
    return W, a


register_model(TwoLayerReLU)


def make_problem(dataset: str, n: int, d: int, m: int, seed: int = 0, *,
                 data_seed: int | None = None, init_seed: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 model: str = "two_layer", depth: int = 1, **data_params):
    """Build the problem from its own random streams: data and init never share a generator.

    Data and initialisation are drawn in float64 on the CPU and then cast, so a seed means the
    same problem on every device and dtype. ``model`` names a registered model (``MODELS``).
    """
    for key, value in (("data.n", n), ("data.d", d), ("model.m", m), ("model.depth", depth)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    model_cls = MODELS.get(model)
    reason = model_cls.check_sizes(m, depth)
    if reason:
        raise ConfigError(reason)
    spec = DATASETS.get(dataset)
    data_gen = make_generator(stream_seed(seed, "data") if data_seed is None else data_seed)
    X, y = spec.load(n, d, data_gen, **data_params)
    init_gen = make_generator(stream_seed(seed, "init") if init_seed is None else init_seed)
    return model_cls.build(X, y, m=m, depth=depth, init_gen=init_gen, device=device,
                           dtype=dtype, info={"dataset": dataset, **data_params})


# --- the NTK limit ------------------------------------------------------------------------------


def ntk_matrix(X: torch.Tensor) -> torch.Tensor:
    """H∞_ij = x_i·x_j (π − arccos(x_i·x_j)) / (2π), the m → ∞ limit of G at initialisation."""
    C = (X @ X.T).clamp_(-1.0, 1.0)
    return C * (math.pi - torch.arccos(C)) / (2 * math.pi)


def ntk_lambda(X: torch.Tensor) -> float:
    """λ = λ_min(H∞), computed in float64: the constant in every convergence theorem."""
    return float(torch.linalg.eigvalsh(ntk_matrix(X.double()))[0])
