"""``gaussian``: iid N(0, 1/s) entries, the reference-quality sketch (cost O(s·md·n))."""

from __future__ import annotations

import math

import torch

from harness.common.flops import monomial
from harness.model.two_layer import JacobianOperator
from harness.sketches.base import (
    BLOCK_ELEMENTS,
    Sketch,
    register_sketch,
    two_layer,
)


@register_sketch
class GaussianSketch(Sketch):
    """iid N(0, 1/s) entries: the reference-quality sketch; cost O(s·md·n), blocks of S."""

    name = "gaussian"
    kernel_kinds = ("elements", "flops", "rows")
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
        if not two_layer(jac):
            return super().sketch_jacobian(jac)
        out = jac.X.new_zeros(self.s, jac.n)
        for r0, r1, S in self._blocks():
            rows = max(1, BLOCK_ELEMENTS // ((r1 - r0) * jac.d))  # J's block ≤ BLOCK too
            for i0 in range(0, jac.n, rows):
                i1 = min(jac.n, i0 + rows)
                out[:, i0:i1] += S @ jac.columns(r0, r1, i0, i1).T
        return out

    @classmethod
    def work(cls, n, m, d, s):
        """S itself (s·md drawn), J's n·md entries, the product's 2·s·md·n flops."""
        return {"elements": s * m * d + n * m * d, "flops": 2 * s * m * d * n, "rows": n * s}

    @classmethod
    def seconds(cls, c, n, m, d, s):
        return c.ew(s * m * d) + 2 * c.ew(n * m * d) + c.gemm(s, n, m * d)

    @classmethod
    def flop_terms(cls, n, m, d, s):
        return [monomial("n²md (sketch)", 2 * s / n, n, m, d, 2, 1, 1)]
