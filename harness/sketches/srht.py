"""``srht``: the subsampled randomized Hadamard transform √(N/s)·P H E on the padded md
dimension, the literal Fast-JL transform (cost O(n·N log N), N = 2^⌈log₂ md⌉)."""

from __future__ import annotations

import math

import torch

from harness.common.flops import Term, next_pow2
from harness.linalg.hadamard import fwht, next_power_of_two, pad_last
from harness.sketches.base import (
    BLOCK_ELEMENTS,
    Sketch,
    draw_work,
    register_sketch,
    sample_rows,
    signs,
)


@register_sketch
class SRHTSketch(Sketch):
    """Subsampled randomized Hadamard transform √(N/s)·P H E on the padded md dimension."""

    name = "srht"
    kernel_kinds = ("elements", "flops", "rows", "draw")
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
        self.E = signs(self.N, gen, self.dtype)
        self.P = sample_rows(self.N, self.s, gen)
        self._scale = math.sqrt(self.N / self.s)

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        HEV = fwht(pad_last(V, self.N) * self.E, normalized=True)
        return HEV[:, self.P] * self._scale

    @classmethod
    def work(cls, n, m, d, s):
        N = next_power_of_two(int(m * d))
        return {"elements": n * N, "flops": n * N * math.log2(max(N, 2)), "rows": n * s,
                "draw": draw_work(N, s)}

    @classmethod
    def seconds(cls, c, n, m, d, s):
        N = next_power_of_two(m * d)
        return 2 * c.ew(n * m * d) + 2 * c.ew(n * N) + c.fwht(n, N) + c.ew(n * s)

    @classmethod
    def flop_terms(cls, n, m, d, s):
        big = next_pow2(m * d)
        return [Term("nmd·log(md) (sketch)", n * big * math.log2(big),
                     {"n": 1, "m": 1, "d": 1}, depth="padded_params")]
