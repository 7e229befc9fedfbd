r"""Sketches S ∈ R^{s×md} for BPSW21's preconditioner: B = S Jᵀ ∈ R^{s×n} (spec §4).

Only the distribution of S matters: B is used to build R with RᵀR = BᵀB ≈ G = J Jᵀ and for
nothing else. Every sketch here is isometric in expectation, E‖S z‖² = ‖z‖² for every
z ∈ R^{md}, and the good ones are subspace embeddings of range(Jᵀ) for s = O(n) (up to
logarithms), which makes κ(R⁻ᵀ G R⁻¹) = O(1) independently of κ(G).

Column i of Jᵀ is u_i ⊗ x_i with u_i = a ⊙ D_i / √m ∈ R^m (row-major vec, index r·d + k).
The sketches differ in how much of that structure they use:

==============  ==========================================  ==============================
name            S                                            cost of S Jᵀ
==============  ==========================================  ==============================
gaussian        iid N(0, 1/s)                                O(s·md·n)
srht            √(N/s)·P H E on the padded md dimension      O(n·N log N), N = 2^⌈log₂ md⌉
tensor_srht     rows √(m'd'/s)(P₁HE₁u)_j (P₂HE₂x)_j          O(n(m' log m' + d' log d') + ns)
countsketch     one hash h: [md] → [s] with signs            O(n·md)
tensorsketch    CountSketches of u and x, combined by FFT    O(n(m + d + s log s))
==============  ==========================================  ==============================

The first, second and fourth act on the md-long columns, which they build a block at a time
(at most ``BLOCK_ELEMENTS`` entries), never the whole n×md Jacobian; the other two use only
the Kronecker factors. Every class also applies S to arbitrary md-vectors (``apply``), which
the tests use to check E‖S z‖² = ‖z‖² and that the structured path equals S applied to the
explicit Jᵀ.

Example
-------
>>> import torch
>>> from harness.problem import make_problem
>>> from harness.sketches import SKETCHES
>>> p = make_problem("synthetic", n=8, d=4, m=32, seed=0, dtype=torch.float64)
>>> jac = p.linearize().jacobian
>>> S = SKETCHES.get("tensor_srht")(jac.m, jac.d, 16, torch.Generator().manual_seed(0),
...                                 dtype=torch.float64)
>>> B = S.sketch_jacobian(jac)
>>> B.shape
torch.Size([16, 8])
>>> bool(torch.allclose(B, S.apply(jac.dense()).T))
True
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from harness.errors import ConfigError
from harness.hadamard import fwht, next_power_of_two, pad_last
from harness.problem import LAYERED, TWO_LAYER, JacobianOperator
from harness.registry import Registry

#: Largest temporary (in elements) a sketch builds while forming S Jᵀ block by block.
BLOCK_ELEMENTS = 1 << 22

SKETCHES: Registry[type[Sketch]] = Registry("sketch", "harness.sketches", "nlt.sketches")


def register_sketch(cls: type[Sketch]) -> type[Sketch]:
    return SKETCHES.register(cls.name)(cls)


def _signs(size: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.randint(0, 2, (size,), generator=gen, device=gen.device).to(dtype) * 2 - 1


#: Up to this N, ``_sample_rows`` permutes all of [N] (its cost grows with N, not s)
PERMUTATION_LIMIT = 1 << 24


def _sample_rows(N: int, s: int, gen: torch.Generator) -> torch.Tensor:
    """s distinct indices of [N] (uniform without replacement; with replacement for huge N)."""
    if N <= PERMUTATION_LIMIT:
        return torch.randperm(N, generator=gen, device=gen.device)[:s]
    return torch.randint(0, N, (s,), generator=gen, device=gen.device)


def _units(jac: JacobianOperator, r0: int, r1: int) -> torch.Tensor:
    """u_i restricted to units r0..r1−1 for every i: D[:, r0:r1] ⊙ a / √m (n × (r1−r0))."""
    return jac.D[:, r0:r1] * (jac.a[r0:r1] * jac.scale)


def sketch_dims(model) -> tuple[int, int]:
    """(m, d) one sketch of the Jacobian of ``model`` (a problem, or an ``algorithms.Shape``)
    is drawn for: the two-layer factors, or (P, 1) — the flat parameter dimension."""
    if TWO_LAYER in model.features:
        return model.m, model.d
    return model.num_params, 1


def _per_layer(cls: type[Sketch], features: frozenset[str]) -> bool:
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


def sketch_problem(name: str, problem, s: int, generator: torch.Generator):
    """The sketch ``name`` of ``problem``'s Jacobian: on the two-layer factors (m, d); one per
    layer (``LayeredSketch``) for a sketch that needs Kronecker rows on a layered model; on
    the flat P-dimensional rows otherwise."""
    cls = SKETCHES.get(name)
    if _per_layer(cls, problem.features):
        return LayeredSketch(cls, problem.layout, s, generator, problem.dtype)
    return cls(*sketch_dims(problem), s, generator, dtype=problem.dtype)


def check_sketch_size(name: str, shape, s: int) -> str | None:
    """Why sketch ``name`` with s rows cannot be drawn for the model of ``shape`` (an
    ``algorithms.Shape``); None: it can."""
    cls = SKETCHES.get(name)
    if _per_layer(cls, shape.features):  # one per layer: m×d, then m×m
        layers = [(shape.m, shape.d)] + [(shape.m, shape.m)] * (shape.depth > 1)
        return next(filter(None, (cls.check_size(r, c, s) for r, c in layers)), None)
    return cls.check_size(*sketch_dims(shape), s)


def _two_layer(jac) -> bool:
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
        raise NotImplementedError

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


@register_sketch
class GaussianSketch(Sketch):
    """iid N(0, 1/s) entries: the reference-quality sketch; cost O(s·md·n), blocks of S."""

    name = "gaussian"
    references = ("Woodruff. Sketching as a tool for numerical linear algebra. Found. Trends "
                  "Theor. Comput. Sci. 10(1-2), 2014 (Gaussian subspace embeddings)",)

    def _draw(self, gen: torch.Generator) -> None:
        # S has s·md entries: too many to keep at training sizes, so keep a seed and draw
        # S one block of units (a fixed partition of the md columns) at a time.
        self._seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
        self._units_per_block = max(1, BLOCK_ELEMENTS // (self.s * self.d))

    @classmethod
    def work_elements(cls, n: int, m: int, d: int, s: int) -> int:
        return 2 * BLOCK_ELEMENTS + 2 * (s + n) * d

    def _blocks(self):
        """(r0, r1, S[:, r0·d : r1·d]) for consecutive blocks of units."""
        for b, r0 in enumerate(range(0, self.m, self._units_per_block)):
            r1 = min(self.m, r0 + self._units_per_block)
            gen = torch.Generator(device=self.device).manual_seed(self._seed + b)
            S = torch.randn(self.s, (r1 - r0) * self.d, generator=gen, dtype=self.dtype,
                            device=self.device)
            yield r0, r1, S.mul_(1.0 / math.sqrt(self.s))

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        out = V.new_zeros(V.shape[0], self.s)
        for r0, r1, S in self._blocks():
            out += V[:, r0 * self.d:r1 * self.d] @ S.T
        return out

    def sketch_jacobian(self, jac: JacobianOperator) -> torch.Tensor:
        if not _two_layer(jac):
            return super().sketch_jacobian(jac)
        out = jac.X.new_zeros(self.s, jac.n)
        for r0, r1, S in self._blocks():
            rows = max(1, BLOCK_ELEMENTS // ((r1 - r0) * jac.d))  # J's block ≤ BLOCK too
            for i0 in range(0, jac.n, rows):
                i1 = min(jac.n, i0 + rows)
                out[:, i0:i1] += S @ jac.columns(r0, r1, i0, i1).T
        return out


@register_sketch
class SRHTSketch(Sketch):
    """Subsampled randomized Hadamard transform √(N/s)·P H E on the padded md dimension."""

    name = "srht"
    references = ("Ailon, Chazelle. The fast Johnson-Lindenstrauss transform and approximate "
                  "nearest neighbors. SIAM J. Comput. 39(1), 2009",
                  "Tropp. Improved analysis of the subsampled randomized Hadamard transform. "
                  "Adv. Adapt. Data Anal. 3(1-2), 2011")

    @classmethod
    def check_size(cls, m: int, d: int, s: int) -> str | None:
        N = next_power_of_two(m * d)
        if s > N:
            return f"srht samples s={s} rows of the padded md={N}; needs s <= {N}"
        return super().check_size(m, d, s)

    @classmethod
    def work_elements(cls, n: int, m: int, d: int, s: int) -> int:
        N = next_power_of_two(m * d)
        return 4 * max(BLOCK_ELEMENTS, N) + 2 * N

    def _draw(self, gen: torch.Generator) -> None:
        self.N = next_power_of_two(self.m * self.d)
        self.E = _signs(self.N, gen, self.dtype)
        self.P = _sample_rows(self.N, self.s, gen)
        self._scale = math.sqrt(self.N / self.s)

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        HEV = fwht(pad_last(V, self.N) * self.E, normalized=True)
        return HEV[:, self.P] * self._scale


@register_sketch
class TensorSRHTSketch(Sketch):
    """Tensor SRHT: rows √(m'd'/s)(P₁HE₁u)_j (P₂HE₂x)_j sketch u ⊗ x without forming it."""

    name = "tensor_srht"
    requires = frozenset({LAYERED})
    explicit = False
    references = ("Ahle, Kapralov, Knudsen, Pagh, Velingker, Woodruff, Zandieh. Oblivious "
                  "sketching of high-degree polynomial kernels. SODA 2020 (TensorSRHT)",)

    @classmethod
    def check_size(cls, m: int, d: int, s: int) -> str | None:
        N = next_power_of_two(m) * next_power_of_two(d)
        if s > N:
            return f"tensor_srht samples s={s} of the m'd'={N} index pairs; needs s <= {N}"
        return super().check_size(m, d, s)

    @classmethod
    def work_elements(cls, n: int, m: int, d: int, s: int) -> int:
        return 4 * max(BLOCK_ELEMENTS, next_power_of_two(m)) + 2 * n * s

    def _draw(self, gen: torch.Generator) -> None:
        self.mp, self.dp = next_power_of_two(self.m), next_power_of_two(self.d)
        self.E1 = _signs(self.mp, gen, self.dtype)
        self.E2 = _signs(self.dp, gen, self.dtype)
        # row j samples the pair (P₁_j, P₂_j) of [m'] × [d'], uniformly and distinct
        pairs = _sample_rows(self.mp * self.dp, self.s, gen)
        self.P1, self.P2 = pairs // self.dp, pairs % self.dp
        self._scale = math.sqrt(self.mp * self.dp / self.s)

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        # (P₁HE₁ ⊗ P₂HE₂) on a general z = vec(Z), Z ∈ R^{m×d}: row j is (H E₁ Z E₂ Hᵀ)_{P₁P₂}
        Z = V.reshape(V.shape[0], self.m, self.d)
        Z = torch.nn.functional.pad(Z, (0, self.dp - self.d, 0, self.mp - self.m))
        Z = fwht(Z * self.E2, normalized=True)
        Z = fwht((Z * self.E1[:, None]).transpose(1, 2), normalized=True)  # k × d' × m'
        return Z[:, self.P2, self.P1] * self._scale

    def sketch_jacobian(self, jac: JacobianOperator) -> torch.Tensor:
        HX = fwht(pad_last(jac.X * self.E2[:jac.d], self.dp), normalized=True)
        HX = HX.index_select(1, self.P2)
        out = torch.empty(self.s, jac.n, dtype=jac.X.dtype, device=jac.X.device)
        # E₁ and H's 1/√m' folded into a / √m: one pass over each block of D before H
        signed_a = jac.a * (jac.scale / math.sqrt(self.mp)) * self.E1[:jac.m]
        rows = max(1, BLOCK_ELEMENTS // self.mp)
        for i0 in range(0, jac.n, rows):
            i1 = min(jac.n, i0 + rows)
            HU = fwht(pad_last(jac.D[i0:i1] * signed_a, self.mp))
            out[:, i0:i1] = (HU.index_select(1, self.P1) * HX[i0:i1]).T
        return out.mul_(self._scale)


@register_sketch
class CountSketch(Sketch):
    """CountSketch: each of the md coordinates goes to one random row with a random sign."""

    name = "countsketch"
    references = ("Charikar, Chen, Farach-Colton. Finding frequent items in data streams. "
                  "ICALP 2002",
                  "Clarkson, Woodruff. Low rank approximation and regression in input "
                  "sparsity time. STOC 2013")

    @classmethod
    def work_elements(cls, n: int, m: int, d: int, s: int) -> int:
        return 2 * BLOCK_ELEMENTS + n * s + 3 * m * d  # blocks, (n, s) buffer, hash + signs

    def _draw(self, gen: torch.Generator) -> None:
        self.h = torch.randint(0, self.s, (self.m * self.d,), generator=gen, device=gen.device)
        self.sigma = _signs(self.m * self.d, gen, self.dtype)

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        return V.new_zeros(V.shape[0], self.s).index_add_(1, self.h, V * self.sigma)

    def sketch_jacobian(self, jac: JacobianOperator) -> torch.Tensor:
        if not _two_layer(jac):
            return super().sketch_jacobian(jac)
        out = jac.X.new_zeros(jac.n, self.s)
        units = max(1, BLOCK_ELEMENTS // (jac.n * jac.d))
        for r0 in range(0, jac.m, units):
            r1 = min(jac.m, r0 + units)
            cols = slice(r0 * jac.d, r1 * jac.d)
            out.index_add_(1, self.h[cols], jac.columns(r0, r1) * self.sigma[cols])
        return out.T


@register_sketch
class TensorSketch(Sketch):
    """TensorSketch: CountSketches of u and x combined by FFT (circular convolution)."""

    name = "tensorsketch"
    requires = frozenset({LAYERED})
    explicit = False
    references = ("Pham, Pagh. Fast and scalable polynomial kernels via explicit feature "
                  "maps. KDD 2013",
                  "Avron, Nguyen, Woodruff. Subspace embeddings for the polynomial kernel. "
                  "NeurIPS 2014")

    @classmethod
    def work_elements(cls, n: int, m: int, d: int, s: int) -> int:
        return BLOCK_ELEMENTS + 6 * n * (s + 2)  # two CountSketches and their spectra

    def _draw(self, gen: torch.Generator) -> None:
        # S z for z = u ⊗ x is the CountSketch with hash (h₁(r) + h₂(k)) mod s and sign
        # σ₁(r)σ₂(k); that sketch of u ⊗ x is the circular convolution CS₁(u) ⊛ CS₂(x).
        self.h1 = torch.randint(0, self.s, (self.m,), generator=gen, device=gen.device)
        self.s1 = _signs(self.m, gen, self.dtype)
        self.h2 = torch.randint(0, self.s, (self.d,), generator=gen, device=gen.device)
        self.s2 = _signs(self.d, gen, self.dtype)

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        h = ((self.h1[:, None] + self.h2[None, :]) % self.s).reshape(-1)
        sigma = (self.s1[:, None] * self.s2[None, :]).reshape(-1)
        return V.new_zeros(V.shape[0], self.s).index_add_(1, h, V * sigma)

    def sketch_jacobian(self, jac: JacobianOperator) -> torch.Tensor:
        C1 = jac.X.new_zeros(jac.n, self.s)
        units = max(1, BLOCK_ELEMENTS // jac.n)
        for r0 in range(0, jac.m, units):
            r1 = min(jac.m, r0 + units)
            C1.index_add_(1, self.h1[r0:r1], _units(jac, r0, r1) * self.s1[r0:r1])
        C2 = jac.X.new_zeros(jac.n, self.s).index_add_(1, self.h2, jac.X * self.s2)
        B = torch.fft.irfft(torch.fft.rfft(C1, dim=1) * torch.fft.rfft(C2, dim=1), n=self.s,
                            dim=1)
        return B.T


def make_sketch(name: str, m: int, d: int, s: int, generator: torch.Generator,
                dtype: torch.dtype = torch.float32) -> Sketch:
    """Draw the sketch ``name`` (a ConfigError naming the allowed ones if unknown)."""
    return SKETCHES.get(name)(m, d, s, generator, dtype=dtype)
