r"""The model seam: what every method may use of a model, and what every model declares.

A method talks to a problem through the ``Problem`` protocol — J·v, Jᵀ·g, the Gram matrix or
its operator, and ``problem.update(direction, step)`` — never through a model's weights, so a
method written for the two-layer model runs on any registered model. A method that needs a
model's structure declares it (``Algorithm.requires``: K-FAC needs ``TWO_LAYER``;
``Sketch.requires``: the tensor sketches need ``LAYERED``) and is skipped with the reason on a
model without it.

A model is one class registered with ``@register_model`` (``MODELS``; third-party models
through the entry-point group ``nlt.models``) deriving from ``Model``: it builds the problem
(``build``), says which sizes it allows (``check_sizes``) and declares the facts the harness
plans and prices with — its parameter count, its memory plan (``memory_bytes``), the shapes
of its Kronecker layers (``layer_dims``), how the two-layer flop counts of a method map to it
(``flop_terms``) and the seconds of its operators on a cost-model profile (``op_costs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from harness.common.flops import Term
from harness.common.registry import Registry

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


@dataclass
class Linearization:
    """Everything one forward pass at W gives: outputs f, residual r = f − y, loss, and J."""

    outputs: torch.Tensor
    residual: torch.Tensor
    jacobian: Jacobian

    @property
    def loss(self) -> float:
        return 0.5 * float(self.residual.pow(2).sum())

    def gram_operator(self, damping: float = 0.0):
        """The matrix-free G + μI of this linearisation (the model's own operator)."""
        return self.jacobian.gram_operator(damping)


@dataclass(frozen=True)
class Shape:
    """The sizes a feasibility check or a cost prediction sees before anything is allocated."""

    n: int
    m: int
    d: int
    itemsize: int = 4  # bytes per element of the working dtype
    depth: int = 1  # trained hidden layers (1: the two-layer model)
    model: str = "two_layer"
    features: frozenset[str] = frozenset({TWO_LAYER, LAYERED})  # the model's structure tags

    def bytes(self, elements: float) -> int:
        return int(elements * self.itemsize)

    @property
    def model_class(self) -> type[Model]:
        return MODELS.get(self.model)

    @property
    def num_params(self) -> int:
        """P, as the model counts it (two-layer: m·d)."""
        return int(self.model_class.count_params(self.m, self.d, self.depth))

    @classmethod
    def of(cls, model: str, n: int, m: int, d: int, itemsize: int = 4,
           depth: int = 1) -> Shape:
        """The shape of ``model`` (a registered name) at these sizes, with its features."""
        return cls(n, m, d, itemsize, depth, model, MODELS.get(model).features)


class Model:
    """What every registered model class declares (the ``Problem`` it builds is an instance).

    ``name`` is the registry key (``model=<name>``); ``features`` the structure tags methods
    and sketches may rely on. The cost facts are class methods, so the harness plans a cell
    and prices it before anything is allocated; a model that leaves one out has no plan or
    no cost model, and the caller says so (never a guess).
    """

    name: ClassVar[str]
    features: ClassVar[frozenset[str]] = frozenset()
    #: ``op_costs(costs, depth)``: the seconds of this model's operators on a cost-model
    #: profile (``harness.costmodel.Costs`` calls it); None: the model has no cost model
    op_costs: ClassVar[Any] = None
    #: The depth the calibration's step ladder runs this model at (its curves serve every
    #: depth of the model); None: no ladder.
    ladder_depth: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            cls.model = cls.name  # instances answer ``problem.model`` (the Problem protocol)

    @classmethod
    def build(cls, X, y, *, m, depth, init_gen, device, dtype, info) -> Problem:
        raise NotImplementedError

    @classmethod
    def check_sizes(cls, m: int, depth: int) -> str | None:
        """A sentence when width ``m`` and ``depth`` are not allowed, else None."""
        return None

    @classmethod
    def count_params(cls, m: int, d: int, depth: int) -> int:
        """P: the number of trained parameters."""
        raise NotImplementedError(f"model {cls.name!r} does not declare count_params")

    @classmethod
    def memory_bytes(cls, shape: Shape) -> int:
        """Planned bytes of the data, the parameters and one linearisation (what every method
        holds; a method adds its own on top)."""
        raise NotImplementedError(f"model {cls.name!r} declares no memory plan")

    @classmethod
    def layer_dims(cls, m: int, d: int, depth: int) -> list[tuple[int, int]]:
        """(rows, cols) of each layer's Kronecker factors u ⊗ x of a Jacobian row; a model
        without that structure: one flat layer (P, 1)."""
        return [(cls.count_params(m, d, depth), 1)]

    @classmethod
    def flop_terms(cls, terms: Sequence[Term], m: float, d: float,
                   depth: int) -> list[Term] | None:
        """A method's two-layer flop ``terms`` on this model (None: no flop model here)."""
        return list(terms) if depth == 1 else None


MODELS: Registry[type[Model]] = Registry("model", "harness.model", "nlt.models")


def register_model(cls: type[Model]) -> type[Model]:
    """Class decorator: a model under ``cls.name`` (``model=<name>`` on the command line)."""
    return MODELS.register(cls)
