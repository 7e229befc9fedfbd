"""Seconds of the building blocks of a step on a profile: the kernels as the methods call
them (``Costs``), with the operators of the cell's model priced by the model itself
(``Model.op_costs``) and the sketches by themselves (``Sketch.work``/``seconds``).
"""

from __future__ import annotations

from collections.abc import Callable

from harness.common.errors import ConfigError
from harness.costmodel.profile import PRODUCT_KERNEL, Profile, sketch_kernel
from harness.linalg import kernels
from harness.linalg.hadamard import split_bits
from harness.model import MODELS, TWO_LAYER
from harness.sketches import SKETCHES, per_layer

#: CG iterations priced one by one before the steady per-iteration cost is used
CG_TRACE_ITERS = 64
#: CG's vector work per iteration (axpys, dots, norms) in elementwise passes over n.
CG_VECTOR_PASSES = 8


class Costs:
    """Seconds of the building blocks of a step, on one profile, dtype and route policy, for
    one model at one depth.

    The kernels are priced here (``gemm``, ``ew``, ``fresh``, ``pattern`` on the route
    ``harness.linalg.kernels`` would take, ``dense`` on the float route, ``qr``, ``cholesky``,
    ``trsv``, ``fwht``, ``cg``, ``sketch``); the model's operators (``forward``, ``jt``,
    ``rmatvec``, ``gram_apply``, ``gram``, ``params``) by the model's ``op_costs``."""

    def __init__(self, profile: Profile, dtype: str, kernels_mode: str = "auto",
                 depth: int = 1, model: str = "two_layer"):
        self.p, self.dtype = profile, dtype
        self.mode = kernels.check_mode(kernels_mode)
        self.routes: dict[str, str] = {}
        self.itemsize = 8 if dtype == "float64" else 4
        self.depth = depth
        self.model = MODELS.get(model)
        if self.model.op_costs is None:
            raise ConfigError(f"cost model: model {model!r} declares no op_costs (the seconds "
                              f"of its operators); it has no cost model")
        self.ops = self.model.op_costs(self, depth)
        # the int8 copy of the current linearisation's D (kernels.Pattern): made by an int8
        # Gram, or bought by the skinny products once their savings cover it (rent or buy)
        self._cast_paid, self._rent = False, 0.0

    # the model's operators
    def params(self, m: float, d: float) -> float:
        return self.ops.params(m, d)

    def forward(self, n: float, m: float, d: float) -> float:
        return self.ops.forward(n, m, d)

    def jt(self, n: float, m: float, d: float) -> float:
        return self.ops.jt(n, m, d)

    def rmatvec(self, n: float, m: float, d: float) -> float:
        return self.ops.rmatvec(n, m, d)

    def gram_apply(self, n: float, m: float, d: float, k: float = 1) -> float:
        return self.ops.gram_apply(n, m, d, k)

    def gram(self, n: float, m: float, d: float) -> float:
        return self.ops.gram(n, m, d)

    def new_pattern(self) -> None:
        """A new linearisation: its pattern has no int8 copy yet (``forward`` calls it)."""
        self._cast_paid, self._rent = False, 0.0

    # the kernels
    def _t(self, name: str, **work: float) -> float:
        return self.p.seconds(name, self.dtype, **work)

    def ew(self, elements: float) -> float:
        """One elementwise pass over ``elements`` values."""
        return self._t("elementwise", elements=elements) if elements > 0 else 0.0

    def fresh(self, elements: float) -> float:
        """The page faults of a newly allocated buffer of ``elements`` values (zero where the
        profile has no ``fault`` kernel)."""
        if elements <= 0 or not self.p.has("fault", self.dtype):
            return 0.0
        return self._t("fault", bytes=elements * self.itemsize)

    def gemm(self, p: float, q: float, k: float, kernel: str = "gram_float") -> float:
        """C (p×q) = A (p×k) · B (k×q); ``xw`` for small k, ``gram_float`` otherwise."""
        return self._t(kernel, elements=p * q + (p + q) * k, flops=2 * p * q * k)

    def dense(self, product: str, n: float, m: float, k: float = 0) -> float:
        """A product of an n×m float factor (an MLP layer's K or H) shaped like the pattern
        product ``product``: its float route (``pattern`` without the route choice)."""
        return self._t(f"{PRODUCT_KERNEL[product]}_float", **pattern_work(product, n, m, k))

    def pattern(self, product: str, n: float, m: float, k: float = 0) -> float:
        """D Dᵀ (k unused), D Z or Dᵀ Y (k columns) on the route ``harness.linalg.kernels``
        would take."""
        prefix = PRODUCT_KERNEL[product]
        work = pattern_work(product, n, m, k)
        times = {"float": self._t(f"{prefix}_float", **work)}
        if self.p.has(f"{prefix}_int8", self.dtype):  # measured where the route exists
            times["int8"] = self._t(f"{prefix}_int8", **work)
        if self.mode != "auto":
            route = self.mode if self.mode in times else "float"
        else:  # as kernels.Selector: float unless another route is faster by the margin
            fastest = min(times, key=times.get)
            route = ("float" if times["float"] <= (1 + kernels.TIE_MARGIN) * times[fastest]
                     else fastest)
        self.routes[product] = route
        if route != "int8" or self._cast_paid:
            return times[route]
        if product == "pattern_gram":  # its int8 time includes the cast; the copy stays
            self._cast_paid = True
            return times[route]
        cast = self.ew(n * m) + self.fresh(n * m / self.itemsize)  # n·m one-byte values
        if self.mode == "auto":  # as kernels.Selector.run: rent float until int8 pays
            saving = times["float"] - times["int8"]
            if self._rent + saving < cast:
                self._rent += saving
                self.routes[product] = "float"  # what this call runs (gd's Jᵀr stays here)
                return times["float"]
        self._cast_paid = True
        return times["int8"] + cast

    def qr(self, rows: float, cols: float) -> float:
        k = min(rows, cols)
        return self._t("qr", elements=rows * cols,
                       flops=max(2 * rows * cols * k - 2 * k**3 / 3, rows * cols))

    def cholesky(self, n: float) -> float:
        return self._t("cholesky", elements=n * n, flops=n**3 / 3)

    def trsv(self, n: float, rhs: float = 1) -> float:
        """A triangular solve with ``rhs`` right-hand sides: one pass over the factor (the
        measured one-column solve), the other columns' n²·(rhs − 1) flops at the Cholesky
        rate (a blocked TRSM runs at BLAS-3 speed like the factorisation)."""
        t = self._t("trsv", elements=n * n)
        if rhs > 1:
            rate = self.p.fit("cholesky", self.dtype).rates.get("flops")
            t += (rhs - 1) * n * n / rate if rate else 0.0
        return t

    def fwht(self, rows: float, N: int) -> float:
        bits = split_bits(N)
        return self._t("fwht", elements=rows * N * len(bits),
                       flops=2 * rows * N * sum(1 << b for b in bits))

    def cholesky_solve(self, n: float, rhs: float = 1) -> float:
        return self.cholesky(n) + 2 * self.trsv(n, rhs)

    def cg(self, n: float, m: float, d: float, iters: float,
           precondition: Callable[[], float] | None = None) -> float:
        """``iters`` CG iterations: a Gram product, the vector work, the preconditioner."""
        def one() -> float:
            t = self.gram_apply(n, m, d) + CG_VECTOR_PASSES * self.ew(n)
            return t + (precondition() if precondition is not None else 0.0)

        # iteration by iteration while the route of the products may still change (the
        # int8 cast is bought after a few), then the steady cost for the rest
        total, done = 0.0, 0
        while done < iters and not (self._cast_paid or done >= CG_TRACE_ITERS):
            step = min(1.0, iters - done)
            total += step * one()
            done += 1
        return total + max(0.0, iters - done) * one() if done < iters else total

    def sketch(self, name: str, n: int, m: int, d: int, s: int) -> float:
        """Forming B = S Jᵀ (s×n) with sketch ``name``, the draw included: its own kernel where
        the profile has one, else its ``seconds`` formula. On a layered model a sketch of
        Kronecker rows runs once per layer and the parts are summed (``LayeredSketch``); any
        other acts on the flat rows of J (P long)."""
        cls = SKETCHES.get(name)
        if per_layer(cls, self.model.features):
            layers = self.model.layer_dims(m, d, self.depth)
            return sum(self._sketch_layer(cls, n, r, c, s) for r, c in layers) \
                + (len(layers) - 1) * self.ew(n * s)
        if TWO_LAYER in self.model.features:
            return self._sketch_layer(cls, n, m, d, s)
        return self._sketch_layer(cls, n, int(self.params(m, d)), 1, s)

    def _sketch_layer(self, cls, n: int, m: int, d: int, s: int) -> float:
        kernel = sketch_kernel(cls.name)
        if self.p.has(kernel, self.dtype):  # kinds of work a profile lacks cost nothing
            kinds = self.p.fit(kernel, self.dtype).rates
            return self._t(kernel, **{k: v for k, v in cls.work(n, m, d, s).items()
                                      if k in kinds})
        seconds = cls.seconds(self, n, m, d, s)
        if seconds is None:
            raise ConfigError(f"cost model: sketch {cls.name!r} has no kernel in this profile "
                              f"and declares no seconds formula")
        return seconds


def pattern_work(product: str, n: float, m: float, k: float) -> dict[str, float]:
    if product == "pattern_gram":
        return {"elements": n * m + n * n, "flops": 2 * n * n * m}
    return {"elements": n * m + (n + m) * k, "flops": 2 * n * m * k}


