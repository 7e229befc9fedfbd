r"""Kernel routes: products with more than one implementation, chosen by measurement.

The pattern D = 1[X Wᵀ ≥ 0] ∈ {0,1}^{n×m} enters every Gauss–Newton method through three
products. Each has a plain float route (what a user would write by hand) and an integer route
(D as int8, a quarter of float32's bytes, integer GEMMs with int32 accumulation):

============== ============ ==================================================================
product        computes     routes
============== ============ ==================================================================
pattern_gram   D Dᵀ         ``float``: ``D @ D.T``; ``int8``: ``torch._int_mm`` on an int8 copy
                            (exact: counts ≤ m < 2²⁴)
pattern_mm     D Z          ``float``: ``D @ Z``; ``int8``: fixed-point split of Z into 4–6
                            signed int8 pieces per column (float32 only; each entry carried
                            to float32's rounding of the column's typical entry; operands
                            beyond that range, inf/NaN or subnormal: float, per call)
pattern_rmm    Dᵀ Y         the same two routes with D transposed
============== ============ ==================================================================

Which route is faster depends on the machine, not on the method: ``_int_mm`` flies on a CPU
with AVX-512 VNNI or AMX and can be 10–40× slower than the float GEMM on one without. So no
route is fixed here. With ``kernels=auto`` (the default) the first call of a product on a shape
bucket (each dimension rounded up to a power of two, per device and dtype) times every
available route on the operands at hand (the Gram on a corner of at most
``CALIBRATION_MAX_ROWS`` × ``CALIBRATION_MAX_COLS`` of D, so calibrating a huge cell stays
cheap; the skinny products whole, since they stream D and a cache-sized corner would rank them
by cache bandwidth), after one untimed call each, and keeps the fastest for the rest of the
process. A route within ``TIE_MARGIN`` of the
fastest loses to the plain float route: no extra memory for nothing. ``kernels=float`` or
``kernels=int8`` forces a route (int8 falls back to float, with the reason recorded, where the
integer route cannot compute the product exactly enough, e.g. float64 products).

The time spent calibrating is counted by ``calibration_seconds()``: the runner does it in the
untimed warm-up step and subtracts any calibration that still happens inside a timed step, so a
step time never contains it. ``report()`` gives the routes a cell used, with the timings that
chose them, for run.json.

Example
-------
>>> import torch
>>> from harness import kernels
>>> P = kernels.Pattern((torch.rand(64, 256) > 0.5).float())
>>> C = kernels.pattern_gram(P)
>>> bool(torch.equal(C, P.D @ P.D.T))
True
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.common.errors import unknown
from harness.common.timing import best_time

MODES = ("auto", "float", "int8")
FLOAT, INT8 = "float", "int8"

#: Calibration operands: at most this many rows and columns of D (a corner of the real one).
CALIBRATION_MAX_ROWS, CALIBRATION_MAX_COLS = 2048, 16384
#: Calibration: each route is timed at least this many times and for at least this long.
CALIBRATION_REPS, CALIBRATION_MIN_S = 3, 0.02
#: A route must beat the plain float route by more than this fraction to be chosen.
TIE_MARGIN = 0.05
#: Before a route is timed on operands larger than a PROBE_ROWS × PROBE_COLS corner of D, it
#: is timed beside float on that corner; one over PROBE_SLOW_FACTOR × float there is not timed
#: at full size (on a CPU without int8 dot-product instructions, e.g. AVX2 only, one int8
#: Dᵀ Y at 4096 × 65536 took 280 s against 0.1 s for float: timing it would cost minutes).
PROBE_ROWS, PROBE_COLS = 256, 2048
PROBE_SLOW_FACTOR = 10.0

#: int32 accumulation of 127·(±1) over k terms is exact while 127·k < 2³¹; counts ≤ m are
#: exact in float32 below 2²⁴.
_INT_MAX_DIM = 2**24
#: Signed int8 pieces of the fixed-point split: at least 4 (4 × 7 bits carry 28 bits below
#: the column maximum, more than float32's 24-bit significand), more for a column whose
#: largest entry towers over its typical one, at most MAX_PIECES (else the float route).
_PIECES, MAX_PIECES = 4, 6
_FLOAT32_BITS = 24


class Pattern:
    """The 0/1 pattern D (float, the working dtype) with a lazily made int8 copy.

    One linearisation makes one Pattern; every product on it shares the int8 copy, so the cast
    (n·m bytes) is paid once per linearisation by whichever product first takes the int8 route.
    """

    def __init__(self, D: torch.Tensor):
        self.D = D
        self._int8: torch.Tensor | None = None
        #: seconds the int8 route would have saved on this pattern so far, had its cast been
        #: paid (``Selector.run``: the cast is bought once this reaches its cost)
        self.rent = 0.0

    @property
    def has_int8(self) -> bool:
        return self._int8 is not None

    @property
    def int8(self) -> torch.Tensor:
        if self._int8 is None:
            self._int8 = self.D.to(torch.int8)
        return self._int8

    @property
    def shape(self) -> torch.Size:
        return self.D.shape

    def corner(self, rows: int, cols: int) -> Pattern:
        """The top-left rows×cols block, as a fresh Pattern (for calibration)."""
        return Pattern(self.D[:rows, :cols].contiguous())


# --- the routes -----------------------------------------------------------------------------


def _int_mm_missing() -> str | None:
    return None if hasattr(torch, "_int_mm") else "torch._int_mm is missing in this torch"


class OutOfRange(ValueError):
    """The split cannot carry this operand to float32's accuracy; the caller runs float."""


def split_plan(B: torch.Tensor) -> tuple[int, torch.Tensor]:
    r"""Pieces and per-column scales of the fixed-point split of a float32 B (c×k).

    Column b is carried as b ≈ s Σ_{j<P} 128^{-j} q_j with s the power of two ≥ max|b| / 127
    (every step of the split is exact in float32) and signed int8 pieces q_j, so each entry
    is off by at most δ = s 128^{1-P} / 2 < 2^{-7P} max|b|. P is the fewest pieces with δ at
    most float32's rounding of a *typical* entry, 2^{-24} g (g: the geometric mean of the
    column's nonzero magnitudes, which one huge entry barely moves): 7P ≥ 24 + log2(max/g).
    Raises ``OutOfRange`` (the float route is then taken) where that needs more than
    ``MAX_PIECES`` pieces, where a piece's scale would leave float32's normal range
    (subnormal columns), or where B holds inf or NaN (IEEE semantics are the float GEMM's).
    """
    if not bool(torch.isfinite(B).all()):
        raise OutOfRange("operand holds inf or NaN")
    mag = B.abs()
    top = mag.amax(0)
    logs = torch.log2(mag)
    nonzero = mag > 0
    count = nonzero.sum(0)
    mean_log = torch.where(nonzero, logs, torch.zeros_like(logs)).sum(0) / count.clamp_min(1)
    live = top > 0
    if not bool(live.any()):
        return 1, torch.ones_like(top)
    spread = float((torch.log2(top[live]) - mean_log[live]).max())
    pieces = max(_PIECES, math.ceil((_FLOAT32_BITS + spread) / 7))
    if pieces > MAX_PIECES:
        raise OutOfRange(f"a column's dynamic range (2^{spread:.1f} between its largest and "
                         f"typical entry) needs {pieces} int8 pieces (at most {MAX_PIECES})")
    s = torch.where(live, torch.exp2(torch.ceil(torch.log2(top / 127))), torch.ones_like(top))
    if float(s[live].min()) / 128.0 ** (pieces - 1) < torch.finfo(torch.float32).tiny:
        raise OutOfRange("a column is too small for the split's scales (subnormal range)")
    return pieces, s


def _fixed_point_matmul(Di: torch.Tensor, B: torch.Tensor, transpose: bool = False):
    r"""D B (or Dᵀ B with ``transpose``) for the 0/1 pattern Di (int8) and a float32 B (c×k).

    B is split as ``split_plan`` says; then D b = s Σ_j 128^{-j} (D q_j), every D q_j an exact
    int32 GEMM; the errors are the split's δ per entry and the float32 sum of the pieces.
    Raises ``OutOfRange`` for an operand the split cannot carry.
    """
    pieces, s = split_plan(B)
    parts, scales, R = [], [], B
    for j in range(pieces):
        sj = s / 128.0**j
        q = torch.round(R / sj)
        R = R - q * sj
        parts.append(q)
        scales.append(sj)
    Q = torch.cat(parts, 1).to(torch.int8)  # c × Pk
    # S (Pk × k) stacks diag(s_j): C S sums the pieces back in one small GEMM
    S = torch.cat([torch.diag(sj) for sj in scales], 0).to(B.dtype)
    if transpose:  # (Qᵀ D)ᵀ = Dᵀ Q, with Di in its stored row-major layout; returned
        # contiguous, as the float route's result is (callers may .view it)
        return (S.T @ torch._int_mm(Q.T.contiguous(), Di).to(B.dtype)).T.contiguous()
    return torch._int_mm(Di, Q).to(B.dtype) @ S


def _split_unavailable(P: Pattern, B: torch.Tensor) -> str | None:
    if B.dtype != torch.float32:
        return f"the int8 split carries float32 precision only (operand is {B.dtype})"
    if max(P.shape) > _INT_MAX_DIM:
        return f"int32 sums could overflow at {tuple(P.shape)}"
    return _int_mm_missing()


def _gram_int8_unavailable(P: Pattern) -> str | None:
    if P.shape[1] > _INT_MAX_DIM:
        return f"counts above 2^24 are not exact (m={P.shape[1]})"
    return _int_mm_missing()


@dataclass(frozen=True)
class Route:
    run: Callable[..., torch.Tensor]
    #: None where the route can compute this product, else the reason it cannot.
    unavailable: Callable[..., str | None] = lambda *args: None


@dataclass(frozen=True)
class Product:
    name: str
    formula: str
    routes: dict[str, Route]
    #: Time the int8 cast of D with every call: true where one call per linearisation is the
    #: rule (the Gram), false where many products share one cast (CG, sketches).
    cast_per_call: bool = False
    #: Calibrate on a corner of D (≤ CALIBRATION_MAX_ROWS × CALIBRATION_MAX_COLS): right for
    #: the compute-bound Gram, whose rate a corner shows; wrong for the skinny products, which
    #: stream D from memory, so that a corner that fits in the last-level cache (260 MB on the
    #: machine this was found on) ranks the routes by cache bandwidth. They are timed whole.
    calibrate_on_corner: bool = False

    def bucket(self, P: Pattern, *operands: torch.Tensor) -> tuple[int, ...]:
        """Each dimension rounded up to a power of two: one calibration serves a bucket."""
        dims = list(P.shape) + [t.shape[-1] for t in operands]
        return tuple(1 << max(0, math.ceil(math.log2(max(1, s)))) for s in dims)

    def calibration_operands(self, P: Pattern, *operands: torch.Tensor):
        rows, cols = P.shape
        if self.calibrate_on_corner:
            rows, cols = min(rows, CALIBRATION_MAX_ROWS), min(cols, CALIBRATION_MAX_COLS)
        if (rows, cols) == tuple(P.shape):
            return (Pattern(P.D), *operands)  # fresh int8 cache: the cast is timed too
        cut = []
        for t in operands:  # D Z: Z has m rows; Dᵀ Y: Y has n rows
            cut.append(t[:cols] if t.shape[0] == P.shape[1] else t[:rows])
        return (P.corner(rows, cols), *cut)


PRODUCTS: dict[str, Product] = {
    p.name: p for p in (
        Product("pattern_gram", "D Dᵀ", {
            FLOAT: Route(lambda P: P.D @ P.D.T),
            INT8: Route(lambda P: torch._int_mm(P.int8, P.int8.T).to(P.D.dtype),
                        _gram_int8_unavailable),
        }, cast_per_call=True, calibrate_on_corner=True),
        Product("pattern_mm", "D Z", {
            FLOAT: Route(lambda P, Z: P.D @ Z),
            INT8: Route(lambda P, Z: _fixed_point_matmul(P.int8, Z), _split_unavailable),
        }),
        Product("pattern_rmm", "Dᵀ Y", {
            FLOAT: Route(lambda P, Y: P.D.T @ Y),
            INT8: Route(lambda P, Y: _fixed_point_matmul(P.int8, Y, True), _split_unavailable),
        }),
    )
}


# --- selection --------------------------------------------------------------------------------


def _time_route(fn: Callable[[], Any], device: torch.device) -> float:
    """Best of a few calls after one untimed call (first-call costs are not the route's)."""
    return best_time(fn, device, repeats=CALIBRATION_REPS, min_seconds=CALIBRATION_MIN_S,
                     max_calls=50)


def _fresh_cast(run: Callable[..., torch.Tensor], P: Pattern, *operands: torch.Tensor):
    return run(Pattern(P.D), *operands)


def probe(product: Product, route: str, P: Pattern, *operands: torch.Tensor,
          timer: Callable[..., float] | None = None) -> str | None:
    """Why ``route`` is not worth timing at the size of ``P`` (None: time it): it was over
    ``PROBE_SLOW_FACTOR`` × the float route on a ``PROBE_ROWS`` × ``PROBE_COLS`` corner of
    D, measured here and now. Operands no larger than the corner are never probed."""
    rows, cols = P.shape
    pr, pc = min(rows, PROBE_ROWS), min(cols, PROBE_COLS)
    if route == FLOAT or (pr, pc) == (rows, cols):
        return None
    cut = [t[:pc] if t.shape[0] == cols else t[:pr] for t in operands]
    corner = P.corner(pr, pc)
    _ = corner.int8  # the shared cast is not the route's time here
    timer = timer or (lambda name, fn, device: _time_route(fn, device))
    times = {}
    for r in (FLOAT, route):
        run = product.routes[r].run
        try:
            times[r] = float(timer(r, functools.partial(run, corner, *cut), P.D.device))
        except OutOfRange:  # these operands only: a tame stand-in of the same shape
            tame = [torch.randn_like(t) for t in cut]
            times[r] = float(timer(r, functools.partial(run, corner, *tame), P.D.device))
    ratio = times[route] / max(times[FLOAT], 1e-12)
    if ratio > PROBE_SLOW_FACTOR:
        return (f"{ratio:.0f}x slower than {FLOAT} on a {pr}x{pc} corner of D on this "
                f"machine; not timed at {rows}x{cols}")
    return None


@dataclass
class Choice:
    """The route of one product on one bucket, and how it was chosen."""

    product: str
    bucket: tuple[int, ...]
    device: str
    dtype: str
    route: str
    how: str  # "measured" | "forced" | "only route"
    times_s: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    calibration_s: float = 0.0
    #: seconds of the int8 copy of D (made once per linearisation) where the route's times
    #: leave it out (the skinny products: their int8 time is on a pattern that has its copy)
    cast_s: float | None = None
    #: calls that ran on float while the cast had not yet paid for itself on their pattern
    rented: int = 0
    #: calls whose operand the int8 split could not carry (``OutOfRange``): run on float
    fallbacks: int = 0
    fallback_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"product": self.product, "bucket": list(self.bucket), "device": self.device,
                "dtype": self.dtype, "route": self.route, "how": self.how,
                "times_s": self.times_s, "unavailable": self.unavailable,
                "calibration_s": self.calibration_s, "cast_s": self.cast_s,
                "rented": self.rented, "fallbacks": self.fallbacks,
                "fallback_reason": self.fallback_reason}


class Selector:
    """Chooses, caches and records one route per (product, device, dtype, bucket).

    ``timer(route_name, fn, device)`` measures one route; tests pass a fake one.
    """

    def __init__(self, mode: str = "auto", timer: Callable[..., float] | None = None):
        self.mode = check_mode(mode)
        self.timer = timer or (lambda name, fn, device: _time_route(fn, device))
        self.choices: dict[tuple, Choice] = {}
        self.used: dict[tuple, Choice] = {}
        self.calibration_s = 0.0

    def choose(self, product: Product, P: Pattern, *operands: torch.Tensor) -> str:
        return self._choice(product, P, *operands).route

    def _choice(self, product: Product, P: Pattern, *operands: torch.Tensor) -> Choice:
        D = P.D
        key = (product.name, D.device.type, str(D.dtype).replace("torch.", ""),
               product.bucket(P, *operands))
        choice = self.choices.get(key)
        if choice is None:
            choice = self.choices[key] = self._decide(key, product, P, *operands)
        self.used.setdefault(key, choice)
        return choice

    def _decide(self, key, product: Product, P: Pattern, *operands) -> Choice:
        name, device, dtype, bucket = key
        unavailable = {r: why for r, route in product.routes.items()
                       if (why := route.unavailable(P, *operands))}
        candidates = [r for r in product.routes if r not in unavailable]
        choice = Choice(name, bucket, device, dtype, FLOAT, "only route",
                        unavailable=unavailable)
        if self.mode != "auto":
            choice.how = "forced"
            choice.route = self.mode if self.mode in candidates else FLOAT
            return choice
        if len(candidates) < 2:
            choice.route = candidates[0] if candidates else FLOAT
            return choice
        t0 = time.perf_counter()
        cal = product.calibration_operands(P, *operands)
        for r in candidates:
            route = product.routes[r]
            slow = probe(product, r, cal[0], *cal[1:], timer=self.timer)
            if slow:  # measured hopeless on a corner: never timed at this size
                choice.unavailable[r] = slow
                continue
            call = functools.partial(route.run, *cal)
            if product.cast_per_call:
                call = functools.partial(_fresh_cast, route.run, *cal)
            try:
                choice.times_s[r] = float(self.timer(r, call, P.D.device))
            except OutOfRange:  # these operands only: time the split on a tame stand-in
                tame = tuple(torch.randn_like(t) for t in cal[1:])
                choice.times_s[r] = float(self.timer(r, functools.partial(
                    route.run, cal[0], *tame), P.D.device))
            except Exception as exc:  # a route that fails here is not a candidate
                choice.unavailable[r] = f"{type(exc).__name__}: {exc}"
        if not product.cast_per_call and INT8 in choice.times_s:
            choice.cast_s = _time_route(lambda: cal[0].D.to(torch.int8), P.D.device)
        choice.calibration_s = time.perf_counter() - t0
        self.calibration_s += choice.calibration_s
        choice.how = "measured"
        if choice.times_s:
            fastest = min(choice.times_s, key=choice.times_s.get)
            plain = choice.times_s.get(FLOAT)
            keep_plain = plain is not None and plain <= (1 + TIE_MARGIN) * choice.times_s[fastest]
            choice.route = FLOAT if keep_plain else fastest
        return choice

    def run(self, name: str, P: Pattern, *operands: torch.Tensor) -> torch.Tensor:
        product = PRODUCTS[name]
        choice = self._choice(product, P, *operands)
        route = choice.route
        if route == INT8 and choice.cast_s and not P.has_int8:
            # rent or buy: a product whose int8 time leaves out the cast runs on float until
            # the time int8 would have saved on this pattern reaches the cast's cost, then
            # casts (at most twice the better of the two in hindsight). gd's one Jᵀr per
            # linearisation stays on float; CG's many products on one D buy the cast.
            saving = choice.times_s.get(FLOAT, 0.0) - choice.times_s.get(INT8, 0.0)
            if P.rent + saving < choice.cast_s:
                P.rent += saving
                choice.rented += 1
                route = FLOAT
        try:
            return product.routes[route].run(P, *operands)
        except OutOfRange as exc:  # this operand, not the route: float for this call only
            choice.fallbacks += 1
            choice.fallback_reason = str(exc)
            return product.routes[FLOAT].run(P, *operands)


def check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise unknown("kernels", mode, MODES)
    return mode


# --- the process-wide selector ------------------------------------------------------------------

_SELECTOR = Selector()


def configure(mode: str = "auto", timer: Callable[..., float] | None = None) -> Selector:
    """Set the route policy for this process (the runner calls it with ``cfg.kernels``).

    Changing the mode drops the cached choices; the same mode keeps them (one calibration per
    process, whatever number of cells it runs).
    """
    global _SELECTOR
    check_mode(mode)
    if mode != _SELECTOR.mode or timer is not None:
        _SELECTOR = Selector(mode, timer)
    return _SELECTOR


def reset() -> None:
    """Forget every choice (tests; a new process starts this way)."""
    global _SELECTOR
    _SELECTOR = Selector()


def selector() -> Selector:
    return _SELECTOR


def begin_cell() -> None:
    """Forget which routes the previous cell used (the cache of choices stays)."""
    _SELECTOR.used = {}


def calibration_seconds() -> float:
    """Total time spent calibrating in this process (monotone)."""
    return _SELECTOR.calibration_s


def routes_used() -> dict[str, str]:
    """product → route(s) this cell used, e.g. {'pattern_gram': 'int8'} (several buckets with
    different routes are joined by '|')."""
    out: dict[str, set[str]] = {}
    for choice in _SELECTOR.used.values():
        out.setdefault(choice.product, set()).add(choice.route)
    return {k: "|".join(sorted(v)) for k, v in sorted(out.items())}


def format_routes(routes: dict[str, str]) -> str:
    """product → route as one short string, 'pattern_gram=int8,pattern_rmm=float'."""
    return ",".join(f"{k}={v}" for k, v in sorted(routes.items()))


def routes_text() -> str:
    """The routes this cell used, for a result column ('none' before any product)."""
    return format_routes(routes_used()) or "none"


def report() -> dict[str, Any]:
    """What run.json records: the mode, the routes used and every choice behind them."""
    return {"mode": _SELECTOR.mode, "routes": routes_used(),
            "choices": [c.as_dict() for c in _SELECTOR.used.values()]}


# --- the products, as the operators call them ---------------------------------------------------


def pattern_gram(P: Pattern | torch.Tensor) -> torch.Tensor:
    """C = D Dᵀ, exact on every route (entries are counts ≤ m)."""
    P = P if isinstance(P, Pattern) else Pattern(P)
    return _SELECTOR.run("pattern_gram", P)


def pattern_mm(P: Pattern, Z: torch.Tensor) -> torch.Tensor:
    """D Z for Z of shape (m, k)."""
    return _SELECTOR.run("pattern_mm", P, Z)


def pattern_rmm(P: Pattern, Y: torch.Tensor) -> torch.Tensor:
    """Dᵀ Y for Y of shape (n, k)."""
    return _SELECTOR.run("pattern_rmm", P, Y)
