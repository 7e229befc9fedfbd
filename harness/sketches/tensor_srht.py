"""``tensor_srht``: rows √(m'd'/s)·(P₁HE₁u)_j (P₂HE₂x)_j sketch u ⊗ x without forming it
(Ahle et al. 2020); the default sketch of ``gn_sketch``."""

from __future__ import annotations

import math

import torch

from harness.common.flops import Term, next_pow2
from harness.linalg.hadamard import fwht, next_power_of_two, pad_last
from harness.model import LAYERED
from harness.model.two_layer import JacobianOperator
from harness.sketches.base import (
    BLOCK_ELEMENTS,
    Sketch,
    draw_work,
    register_sketch,
    sample_rows,
    signs,
)


@register_sketch
class TensorSRHTSketch(Sketch):
    """Tensor SRHT: rows √(m'd'/s)(P₁HE₁u)_j (P₂HE₂x)_j sketch u ⊗ x without forming it."""

    name = "tensor_srht"
    kernel_kinds = ("elements", "flops", "rows", "draw")
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
        self.E1 = signs(self.mp, gen, self.dtype)
        self.E2 = signs(self.dp, gen, self.dtype)
        # row j samples the pair (P₁_j, P₂_j) of [m'] × [d'], uniformly and distinct
        pairs = sample_rows(self.mp * self.dp, self.s, gen)
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

    @classmethod
    def work(cls, n, m, d, s):
        """Both factors transformed (u padded to m', x to d'), the n·s gathered entries of B
        (written transposed), and the draw of s pairs of [m'] × [d']."""
        mp, dp = next_power_of_two(int(m)), next_power_of_two(int(d))
        return {"elements": n * (mp + dp), "rows": n * s, "draw": draw_work(mp * dp, s),
                "flops": n * (mp * math.log2(max(mp, 2)) + dp * math.log2(max(dp, 2)))}

    @classmethod
    def seconds(cls, c, n, m, d, s):
        mp, dp = next_power_of_two(m), next_power_of_two(d)
        t = 2 * c.ew(n * d) + c.fwht(n, dp) + c.ew(n * s)  # H E₂ x, gather P₂
        # D in blocks of ``rows`` rows, each small enough to stay in cache
        rows = min(n, max(1, BLOCK_ELEMENTS // mp))
        block = c.ew(rows * m) + (c.ew(rows * mp) if mp != m else 0.0)  # D ⊙ a, pad
        block += c.fwht(rows, mp) + 2 * c.ew(rows * s)  # H E₁ u, gather P₁, product
        return t + math.ceil(n / rows) * block + c.ew(n * s)  # scale

    @classmethod
    def flop_terms(cls, n, m, d, s):
        mp, dp = next_pow2(m), next_pow2(d)
        return [Term("nm·log m (sketch)", n * mp * math.log2(mp), {"n": 1, "m": 1, "d": 0}),
                Term("nd·log d (sketch)", n * dp * math.log2(dp), {"n": 1, "m": 0, "d": 1}),
                Term("ns (sketch)", n * s, {"n": 2, "m": 0, "d": 0}, depth="layers")]
