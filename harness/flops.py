r"""Flop counts per outer iteration (spec §3), as sums of monomials in n, m and d.

Each method declares its own count on its class (``Algorithm.cost_terms`` and ``cost_text``);
this module holds the vocabulary they share: a ``Term`` (a label, its value at one size, and
the exponents of n, m, d in it), ``monomial`` to build one, and the flops of forming a sketch
``S Jᵀ`` for each sketch type. ``harness.reporting.fits`` compares measured times against the
sum of the terms; the exponents say which term leads where.

Conventions: one forward pass Z = XWᵀ and each product with J or Jᵀ cost 2nmd; one CG
iteration applies G = J Jᵀ once (4nmd) plus what its preconditioner costs. k is a cell's
measured mean inner iterations per step, f its measured share of steps that rebuilt the
preconditioner (1 with refresh=always).

>>> [t.label for t in sketch_terms("tensor_srht", 64, 1024, 16, 128)]
['nm·log m (sketch)', 'nd·log d (sketch)', 'ns (sketch)']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Term:
    label: str
    value: float
    exponents: dict[str, float]  # exponent of n, m, d in this term (log factors left out)

    def scaled(self, factor: float) -> Term:
        """The same term counted ``factor`` times (e.g. f: the share of steps that pay it)."""
        return Term(self.label, factor * self.value, self.exponents)


def monomial(label: str, coef: float, n: float, m: float, d: float, en: float, em: float,
             ed: float) -> Term:
    """coef · nᵉⁿ mᵉᵐ dᵉᵈ, labelled."""
    return Term(label, coef * n**en * m**em * d**ed, {"n": en, "m": em, "d": ed})


def next_pow2(x: float) -> float:
    """The padded length of a Hadamard transform of x entries."""
    return float(2 ** math.ceil(math.log2(max(x, 2.0))))


def number_param(params: dict[str, Any], names: tuple[str, ...], default: float) -> float:
    """The first of ``names`` that holds a number in a cell's hyperparameters, else default."""
    for name in names:
        v = params.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return default


def batch_size(params: dict[str, Any], n: float) -> tuple[float, float]:
    """(b, exponent of n in b): a mini-batch of fixed size b < n does not grow with n."""
    b = params.get("batch_size") or params.get("b")
    if b is None or not isinstance(b, (int, float)) or b >= n:
        return n, 1.0
    return float(b), 0.0


def sketch_terms(sketch: str, n: float, m: float, d: float, s: float) -> list[Term]:
    """Flops of forming S Jᵀ ∈ R^{s×n} (spec §4; ``harness.sketches``)."""
    c = s / n
    if sketch == "gaussian":
        return [monomial("n²md (sketch)", 2 * c, n, m, d, 2, 1, 1)]
    if sketch == "srht":
        big = next_pow2(m * d)
        return [Term("nmd·log(md) (sketch)", n * big * math.log2(big), {"n": 1, "m": 1, "d": 1})]
    if sketch == "countsketch":
        return [monomial("nmd (sketch)", 1, n, m, d, 1, 1, 1)]
    if sketch == "tensorsketch":
        return [Term("n(m+d) (sketch)", n * (m + d), {"n": 1, "m": 1, "d": 0}),
                Term("ns·log s (sketch)", n * s * math.log2(max(s, 2.0)),
                     {"n": 2, "m": 0, "d": 0})]
    # tensor_srht (the default): Hadamard transforms of u_i and x_i, then s products
    mp, dp = next_pow2(m), next_pow2(d)
    return [Term("nm·log m (sketch)", n * mp * math.log2(mp), {"n": 1, "m": 1, "d": 0}),
            Term("nd·log d (sketch)", n * dp * math.log2(dp), {"n": 1, "m": 0, "d": 1}),
            Term("ns (sketch)", n * s, {"n": 2, "m": 0, "d": 0})]
