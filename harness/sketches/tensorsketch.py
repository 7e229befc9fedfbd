"""``tensorsketch``: CountSketches of u and x combined by FFT (Pham–Pagh), cost
O(n(m + d + s log s))."""

from __future__ import annotations

import math

import torch

from harness.common.flops import Term
from harness.linalg.hadamard import next_power_of_two
from harness.model import LAYERED
from harness.model.two_layer import JacobianOperator
from harness.sketches.base import (
    BLOCK_ELEMENTS,
    Sketch,
    register_sketch,
    signs,
    unit_columns,
)


@register_sketch
class TensorSketch(Sketch):
    """TensorSketch: CountSketches of u and x combined by FFT (circular convolution)."""

    name = "tensorsketch"
    kernel_kinds = ("elements", "flops", "rows")
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
        self.s1 = signs(self.m, gen, self.dtype)
        self.h2 = torch.randint(0, self.s, (self.d,), generator=gen, device=gen.device)
        self.s2 = signs(self.d, gen, self.dtype)

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        h = ((self.h1[:, None] + self.h2[None, :]) % self.s).reshape(-1)
        sigma = (self.s1[:, None] * self.s2[None, :]).reshape(-1)
        return V.new_zeros(V.shape[0], self.s).index_add_(1, h, V * sigma)

    def sketch_jacobian(self, jac: JacobianOperator) -> torch.Tensor:
        C1 = jac.X.new_zeros(jac.n, self.s)
        units = max(1, BLOCK_ELEMENTS // jac.n)
        for r0 in range(0, jac.m, units):
            r1 = min(jac.m, r0 + units)
            C1.index_add_(1, self.h1[r0:r1], unit_columns(jac, r0, r1) * self.s1[r0:r1])
        C2 = jac.X.new_zeros(jac.n, self.s).index_add_(1, self.h2, jac.X * self.s2)
        B = torch.fft.irfft(torch.fft.rfft(C1, dim=1) * torch.fft.rfft(C2, dim=1), n=self.s,
                            dim=1)
        return B.T

    @classmethod
    def work(cls, n, m, d, s):
        N = next_power_of_two(int(s))
        return {"elements": n * (m + d), "flops": n * N * math.log2(max(N, 2)), "rows": n * s}

    @classmethod
    def seconds(cls, c, n, m, d, s):
        """FFTs of n rows of length s, priced like a Hadamard pass."""
        N = next_power_of_two(s)
        return 3 * c.ew(n * m) + 2 * c.ew(n * d) + 3 * 2 * c.fwht(n, N) + 2 * c.ew(n * s)

    @classmethod
    def flop_terms(cls, n, m, d, s):
        return [Term("n(m+d) (sketch)", n * (m + d), {"n": 1, "m": 1, "d": 0}, depth="factors"),
                Term("ns·log s (sketch)", n * s * math.log2(max(s, 2.0)),
                     {"n": 2, "m": 0, "d": 0}, depth="layers")]
