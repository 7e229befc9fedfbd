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

Each sketch is one class in one file of this folder, registered with ``@register_sketch``
(``SKETCHES``; third-party sketches through the entry-point group ``nlt.sketches``); besides
drawing S and forming B it declares its cost facts (``Sketch.kernel_kinds``, ``work``,
``seconds``, ``flop_terms``, ``work_elements``). The sketches sit above the model layer: they
act on a model's Jacobian.

The first, second and fourth act on the md-long columns, which they build a block at a time
(at most ``BLOCK_ELEMENTS`` entries), never the whole n×md Jacobian; the other two use only
the Kronecker factors. Every class also applies S to arbitrary md-vectors (``apply``), which
the tests use to check E‖S z‖² = ‖z‖² and that the structured path equals S applied to the
explicit Jᵀ.

Example
-------
>>> import torch
>>> from harness.model import make_problem
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

import importlib
import pkgutil

import torch

from harness.sketches.base import (
    BLOCK_ELEMENTS,
    PERMUTATION_LIMIT,
    SKETCHES,
    LayeredSketch,
    Sketch,
    per_layer,
    register_sketch,
    sketch_dims,
)

__all__ = ["BLOCK_ELEMENTS", "PERMUTATION_LIMIT", "SKETCHES", "LayeredSketch", "Sketch",
           "check_sketch_size", "make_sketch", "register_sketch", "sketch_problem"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")


def sketch_problem(name: str, problem, s: int, generator: torch.Generator):
    """The sketch ``name`` of ``problem``'s Jacobian: the problem's own (``sketch_of``: a
    sharded problem's one sketch per block); on the two-layer factors (m, d); one per layer
    (``LayeredSketch``) for a sketch that needs Kronecker rows on a layered model; on the
    flat P-dimensional rows otherwise."""
    cls = SKETCHES.get(name)
    own = getattr(problem, "sketch_of", None)
    if own is not None:  # a problem that draws its sketch itself (harness.model.sharded)
        return own(cls, s, generator)
    if per_layer(cls, problem.features):
        return LayeredSketch(cls, problem.layout, s, generator, problem.dtype)
    return cls(*sketch_dims(problem), s, generator, dtype=problem.dtype)


def check_sketch_size(name: str, shape, s: int) -> str | None:
    """Why sketch ``name`` with s rows cannot be drawn for the model of ``shape`` (an
    ``harness.model.Shape``); None: it can."""
    cls = SKETCHES.get(name)
    if per_layer(cls, shape.features):  # one per layer: the model's Kronecker layers
        layers = dict.fromkeys(shape.model_class.layer_dims(shape.m, shape.d, shape.depth))
        return next(filter(None, (cls.check_size(r, c, s) for r, c in layers)), None)
    return cls.check_size(*sketch_dims(shape), s)


def make_sketch(name: str, m: int, d: int, s: int, generator: torch.Generator,
                dtype: torch.dtype = torch.float32) -> Sketch:
    """Draw the sketch ``name`` (a ConfigError naming the allowed ones if unknown)."""
    return SKETCHES.get(name)(m, d, s, generator, dtype=dtype)
