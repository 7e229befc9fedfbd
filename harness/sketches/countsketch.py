"""``countsketch``: each of the md coordinates goes to one random row with a random sign
(cost O(n·md))."""

from __future__ import annotations

import torch

from harness.common.flops import monomial
from harness.model.two_layer import JacobianOperator
from harness.sketches.base import (
    BLOCK_ELEMENTS,
    Sketch,
    register_sketch,
    signs,
    two_layer,
)


@register_sketch
class CountSketch(Sketch):
    """CountSketch: each of the md coordinates goes to one random row with a random sign."""

    name = "countsketch"
    kernel_kinds = ("elements", "rows")
    references = ("Charikar, Chen, Farach-Colton. Finding frequent items in data streams. "
                  "ICALP 2002",
                  "Clarkson, Woodruff. Low rank approximation and regression in input "
                  "sparsity time. STOC 2013")

    @classmethod
    def work_elements(cls, n: int, m: int, d: int, s: int) -> int:
        return 2 * BLOCK_ELEMENTS + n * s + 3 * m * d  # blocks, (n, s) buffer, hash + signs

    def _draw(self, gen: torch.Generator) -> None:
        self.h = torch.randint(0, self.s, (self.m * self.d,), generator=gen, device=gen.device)
        self.sigma = signs(self.m * self.d, gen, self.dtype)

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        return V.new_zeros(V.shape[0], self.s).index_add_(1, self.h, V * self.sigma)

    def sketch_jacobian(self, jac: JacobianOperator) -> torch.Tensor:
        if not two_layer(jac):
            return super().sketch_jacobian(jac)
        out = jac.X.new_zeros(jac.n, self.s)
        units = max(1, BLOCK_ELEMENTS // (jac.n * jac.d))
        for r0 in range(0, jac.m, units):
            r1 = min(jac.m, r0 + units)
            cols = slice(r0 * jac.d, r1 * jac.d)
            out.index_add_(1, self.h[cols], jac.columns(r0, r1) * self.sigma[cols])
        return out.T

    @classmethod
    def work(cls, n, m, d, s):
        return {"elements": n * m * d, "rows": n * s}

    @classmethod
    def seconds(cls, c, n, m, d, s):
        return 4 * c.ew(n * m * d) + c.ew(n * s)

    @classmethod
    def flop_terms(cls, n, m, d, s):
        return [monomial("nmd (sketch)", 1, n, m, d, 1, 1, 1)]
