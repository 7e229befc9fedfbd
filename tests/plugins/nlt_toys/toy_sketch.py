r"""A toy sketch from outside the harness: a sparse sign sketch, each of the md coordinates
sent to ``nnz`` random rows with random signs / √nnz (OSNAP-like, here nnz = 2).

Besides drawing S it declares its cost facts: working memory, the seconds of forming
B = S Jᵀ from a profile's kernels, and its flops.
"""

import math

import torch

from harness.common.flops import monomial
from harness.sketches import Sketch, register_sketch

NNZ = 2


@register_sketch
class SparseSignSketch(Sketch):
    """Sparse sign sketch: each coordinate goes to 2 random rows, signs ±1/√2 (a plugin)."""

    name = "toy_sparse_sign"
    references = ("A toy for the plugin tests",)

    @classmethod
    def work_elements(cls, n, m, d, s):
        return 2 * NNZ * m * d + n * s + (1 << 20)

    def _draw(self, gen):
        N = self.m * self.d
        self.rows = torch.randint(0, self.s, (NNZ, N), generator=gen, device=gen.device)
        self.signs = (torch.randint(0, 2, (NNZ, N), generator=gen, device=gen.device)
                      .to(self.dtype) * 2 - 1) / math.sqrt(NNZ)

    def apply(self, V):
        out = V.new_zeros(V.shape[0], self.s)
        for j in range(NNZ):
            out.index_add_(1, self.rows[j], V * self.signs[j])
        return out

    @classmethod
    def seconds(cls, c, n, m, d, s):
        return (2 + 2 * NNZ) * c.ew(n * m * d) + c.ew(n * s)

    @classmethod
    def flop_terms(cls, n, m, d, s):
        return [monomial("nmd (sketch)", NNZ, n, m, d, 1, 1, 1)]
