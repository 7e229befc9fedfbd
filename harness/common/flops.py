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

Depth. Methods write their counts for the two-layer model; ``deepen`` maps them to the deep
ReLU MLP of ``harness.model.mlp`` (L hidden layers of width m, P = md + (L − 1)m² parameters),
term by term, by the rule each term carries (``Term.depth``; ``DEPTH_RULES``). By default the
rule follows from the exponents: a term in m¹d¹ is work per parameter (a pass over J's
columns: J·v, Jᵀg, G·p, J written out) and scales by P/(md); a term in m¹d⁰ is work on the
n×m pattern (D Dᵀ of the Hadamard Gram) and scales by 2L − 1, the number of n×m factors of
a linearisation (K⁽¹⁾..K⁽ᴸ⁾, H⁽¹⁾..H⁽ᴸ⁻¹⁾); a term without m is unchanged. A term's
``linearize`` share is the part that is forward passes of a linearisation: at depth L each
also runs the backward pass for the signals, 2n(P − md) more (harness.model.mlp). E.g. the Gram
2n²m + 2n²d becomes 2n²d + (2L − 1)·2n²m, which is the MLP's Σₗ 2n²(m_l + m_{l−1}).

>>> [round(t.value) for t in deepen([monomial("n²m", 2, 4, 8, 2, 2, 1, 0)], 8, 2, 3)]
[1280]

>>> [t.label for t in sketch_terms("tensor_srht", 64, 1024, 16, 128)]
['nm·log m (sketch)', 'nd·log d (sketch)', 'ns (sketch)']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Term:
    label: str
    value: float
    exponents: dict[str, float]  # exponent of n, m, d in this term (log factors left out)
    #: How the term grows with depth (a key of ``DEPTH_RULES``); "auto": from the exponents.
    depth: str = "auto"
    #: The share of ``value`` that is forward passes of a linearisation (``deepen``).
    linearize: float = 0.0

    def scaled(self, factor: float) -> Term:
        """The same term counted ``factor`` times (e.g. f: the share of steps that pay it)."""
        return dataclasses.replace(self, value=factor * self.value)


def monomial(label: str, coef: float, n: float, m: float, d: float, en: float, em: float,
             ed: float, **rule: object) -> Term:
    """coef · nᵉⁿ mᵉᵐ dᵉᵈ, labelled (``rule``: the Term's ``depth``/``linearize``)."""
    return Term(label, coef * n**en * m**em * d**ed, {"n": en, "m": em, "d": ed}, **rule)


def num_params(m: float, d: float, depth: int) -> float:
    """P = md + (L − 1)m²: the parameters of L hidden layers of width m on d inputs."""
    return m * d + (depth - 1) * m * m


def _padded_log(size: float) -> float:
    N = next_pow2(size)
    return N * math.log2(N)


#: depth rule → factor (m, d, L) ↦ value at depth L / value of the two-layer model.
DEPTH_RULES: dict[str, Callable[[float, float, int], float]] = {
    "params": lambda m, d, L: num_params(m, d, L) / (m * d),     # per parameter
    "pattern": lambda m, d, L: 2 * L - 1,                         # per n×m factor
    "factors": lambda m, d, L: (d + (2 * L - 1) * m) / (m + d),   # every factor, X included
    "layers": lambda m, d, L: L,                                  # once per layer
    "fixed": lambda m, d, L: 1.0,                                 # n-only work (solves, QR)
    # a Hadamard transform of the padded parameter vector (srht on the flat rows of J)
    "padded_params": lambda m, d, L: _padded_log(num_params(m, d, L)) / _padded_log(m * d),
}


def depth_rule(term: Term) -> str:
    """The rule of ``term``: its own, or from its exponents (module docstring)."""
    if term.depth != "auto":
        return term.depth
    em, ed = term.exponents["m"], term.exponents["d"]
    if em == 0:
        return "fixed"
    if em == 1:
        return "params" if ed == 1 else "pattern" if ed == 0 else _no_rule(term)
    return _no_rule(term)


def _no_rule(term: Term) -> str:
    raise ValueError(f"flop term {term.label!r} (exponents {term.exponents}) has no default "
                     f"depth rule; give it one of {sorted(DEPTH_RULES)}")


def deepen(terms: Sequence[Term], m: float, d: float, depth: int) -> list[Term]:
    """The two-layer ``terms`` at depth L (module docstring); depth 1 returns them unchanged.

    A per-parameter term at depth L counts P where the two-layer one counts md (its label
    says so: ``nmd`` → ``nP``) and is led by m² where (L − 1)m > d (its exponents say so).
    """
    if depth == 1:
        return list(terms)
    out = []
    for t in terms:
        rule = depth_rule(t)
        factor = DEPTH_RULES[rule](m, d, depth)
        if t.linearize:  # forward passes: 2n(2P − md) each where the two-layer pays 2nmd
            factor += t.linearize * (num_params(m, d, depth) - m * d) / (m * d)
        exps, label = dict(t.exponents), t.label
        if rule in ("params", "padded_params"):
            label = label.replace("md", "P")
            if (depth - 1) * m > d:
                exps["m"], exps["d"] = exps["m"] + 1, exps["d"] - 1
        out.append(dataclasses.replace(t, label=label, value=factor * t.value, exponents=exps))
    return out


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
        return [Term("nmd·log(md) (sketch)", n * big * math.log2(big), {"n": 1, "m": 1, "d": 1},
                     depth="padded_params")]
    if sketch == "countsketch":
        return [monomial("nmd (sketch)", 1, n, m, d, 1, 1, 1)]
    if sketch == "tensorsketch":
        return [Term("n(m+d) (sketch)", n * (m + d), {"n": 1, "m": 1, "d": 0}, depth="factors"),
                Term("ns·log s (sketch)", n * s * math.log2(max(s, 2.0)),
                     {"n": 2, "m": 0, "d": 0}, depth="layers")]
    # tensor_srht (the default): Hadamard transforms of u_i and x_i, then s products
    mp, dp = next_pow2(m), next_pow2(d)
    return [Term("nm·log m (sketch)", n * mp * math.log2(mp), {"n": 1, "m": 1, "d": 0}),
            Term("nd·log d (sketch)", n * dp * math.log2(dp), {"n": 1, "m": 0, "d": 1}),
            Term("ns (sketch)", n * s, {"n": 2, "m": 0, "d": 0}, depth="layers")]
