"""The sketch base class, the registry and what every sketch shares (spec §4).

See ``harness.sketches`` for the table of sketches; each lives in its own file beside this
one.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from harness.common.errors import ConfigError
from harness.common.flops import Term
from harness.common.registry import Registry
from harness.model import LAYERED, TWO_LAYER
from harness.model.two_layer import JacobianOperator

BLOCK_ELEMENTS = 1 << 22

SKETCHES: Registry[type[Sketch]] = Registry("sketch", "harness.sketches")


def register_sketch(cls: type[Sketch]) -> type[Sketch]:
    """Class decorator: a sketch under ``cls.name`` (``algorithm.sketch=<name>``)."""
    return SKETCHES.register(cls)


def signs(size: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.randint(0, 2, (size,), generator=gen, device=gen.device).to(dtype) * 2 - 1


#: Up to this N, ``_sample_rows`` permutes all of [N] (its cost grows with N, not s)
PERMUTATION_LIMIT = 1 << 24


def draw_work(N: int, s: int) -> float:
    """Values drawn to sample s of N indices as ``sample_rows`` does: a permutation of all N
    up to its limit, s draws beyond it (at a deep layer m'd' = m'²)."""
    return float(N if N <= PERMUTATION_LIMIT else s)


def sample_rows(N: int, s: int, gen: torch.Generator) -> torch.Tensor:
    """s distinct indices of [N] (uniform without replacement; with replacement for huge N)."""
    if N <= PERMUTATION_LIMIT:
        return torch.randperm(N, generator=gen, device=gen.device)[:s]
    return torch.randint(0, N, (s,), generator=gen, device=gen.device)


def unit_columns(jac: JacobianOperator, r0: int, r1: int) -> torch.Tensor:
    """u_i restricted to units r0..r1−1 for every i: D[:, r0:r1] ⊙ a / √m (n × (r1−r0))."""
    return jac.D[:, r0:r1] * (jac.a[r0:r1] * jac.scale)


def sketch_dims(model) -> tuple[int, int]:
    """(m, d) one sketch of the Jacobian of ``model`` (a problem, or an ``algorithms.Shape``)
    is drawn for: the two-layer factors, or (P, 1) — the flat parameter dimension."""
    if TWO_LAYER in model.features:
        return model.m, model.d
    return model.num_params, 1


def per_layer(cls: type[Sketch], features: frozenset[str]) -> bool:
    """Whether sketch ``cls`` is drawn once per layer on this model: it needs Kronecker rows
    and the model is not the two-layer one (whose own factors it sketches directly)."""
    return TWO_LAYER not in features and LAYERED in cls.requires


class _KroneckerLayer:
    """One layer of a layered Jacobian, J_i|_l = vec(kᵢ ⊗ bᵢ), seen through the names the
    two-layer paths read (D, a, scale, X): u_i = k_i, x_i = b_i."""

    def __init__(self, K: torch.Tensor, B: torch.Tensor):
        self.D, self.X = K, B
        self.n, self.m = K.shape
        self.d = B.shape[1]
        self.a = K.new_ones(self.m)
        self.scale = 1.0


class LayeredSketch:
    """S = [S₁ ⋯ S_L] for a layered model: an independent sketch per layer, each on that
    layer's Kronecker rows, so S Jᵀ = Σₗ Sₗ Jₗᵀ. Each Sₗ is isometric in expectation and has
    mean zero, hence so is S: E‖S z‖² = Σₗ ‖zₗ‖² = ‖z‖² (BPSW21's preconditioner per layer)."""

    def __init__(self, cls: type[Sketch], blocks, s: int, generator: torch.Generator,
                 dtype: torch.dtype):
        self.s = s
        self.parts = [cls(blk.rows, blk.cols, s, generator, dtype=dtype) for blk in blocks]

    def sketch_jacobian(self, jac) -> torch.Tensor:
        out = None
        for part, (K, B) in zip(self.parts, jac.layers()):
            Bl = part.sketch_jacobian(_KroneckerLayer(K, B))
            out = Bl if out is None else out.add_(Bl)
        return out


def two_layer(jac) -> bool:
    """True when ``jac`` is the two-layer operator, whose Kronecker columns u_i ⊗ x_i the
    structured paths below use; any other Jacobian goes through ``jac.rows``."""
    return isinstance(jac, JacobianOperator)


class Sketch:
    """A random S ∈ R^{s×md}, drawn once at construction from the given generator.

    ``apply(V)`` returns (S Vᵀ)ᵀ for k md-vectors stacked as the rows of V (k × md → k × s);
    ``sketch_jacobian(jac)`` returns B = S Jᵀ (s × n) by the cheapest route the sketch has.
    ``work_elements`` is the working memory of ``sketch_jacobian`` beyond B, for the
    feasibility check of the method that uses it.
    """

    name: ClassVar[str]
    references: ClassVar[tuple[str, ...]] = ()
    #: True when the sketch acts on md-long columns of Jᵀ (cost Ω(n·md)), not on u and x.
    explicit: ClassVar[bool] = True
    #: Model structure the sketch needs (the tensor sketches: Kronecker rows, ``LAYERED``).
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Kinds of work of the sketch's own cost-model kernel ``sketch_<name>`` (the draw and
    #: B = S Jᵀ timed whole by ``nlt-bench --calibrate``, fitted on ``work``): ``elements``
    #: passed over, transform ``flops``, the n·s ``rows`` of B, values of the ``draw``.
    #: Empty: no kernel of its own (the cost model prices it by ``seconds``).
    kernel_kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, m: int, d: int, s: int, generator: torch.Generator, *,
                 dtype: torch.dtype = torch.float32):
        reason = self.check_size(m, d, s)
        if reason:
            raise ConfigError(reason)
        self.m, self.d, self.s = m, d, s
        self.dtype = dtype
        self.device = generator.device
        self._draw(generator)

    @classmethod
    def check_size(cls, m: int, d: int, s: int) -> str | None:
        """A sentence when s cannot be drawn for these sizes (None: fine)."""
        if s < 1:
            return f"sketch size s must be >= 1, got {s}"
        return None

    @classmethod
    def work_elements(cls, n: int, m: int, d: int, s: int) -> int:
        """Working memory (elements) of ``sketch_jacobian`` beyond B, for the feasibility
        check of the method that draws it."""
        raise NotImplementedError(f"sketch {cls.name!r} declares no work_elements")

    # --- cost facts (harness.costmodel), for n rows u ⊗ x with u ∈ R^m, x ∈ R^d ------------

    @classmethod
    def work(cls, n: float, m: float, d: float, s: float) -> dict[str, float]:
        """The work of forming B = S Jᵀ (s×n), in ``kernel_kinds``."""
        raise NotImplementedError(f"sketch {cls.name!r} declares no kernel work")

    @classmethod
    def seconds(cls, c, n: int, m: int, d: int, s: int) -> float | None:
        """B = S Jᵀ priced pass by pass from the profile's kernels (``c``: a
        ``harness.costmodel.Costs``), for a profile without this sketch's own kernel.
        None: no such formula."""
        return None

    @classmethod
    def flop_terms(cls, n: float, m: float, d: float, s: float) -> list[Term] | None:
        """Flops of forming S Jᵀ as terms (``harness.common.flops``); None: no flop model."""
        return None

    def _draw(self, gen: torch.Generator) -> None:
        raise NotImplementedError

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sketch_jacobian(self, jac: JacobianOperator) -> torch.Tensor:
        """B = S Jᵀ by sketching blocks of rows of J (``jac.rows``), never all of J at once."""
        out = None
        rows = max(1, BLOCK_ELEMENTS // jac.num_params)
        for i0 in range(0, jac.n, rows):
            i1 = min(jac.n, i0 + rows)
            block = jac.rows(i0, i1)
            if out is None:
                out = block.new_empty(self.s, jac.n)
            out[:, i0:i1] = self.apply(block).T
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(m={self.m}, d={self.d}, s={self.s})"
