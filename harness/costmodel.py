r"""A calibrated cost model: each method's time per outer iteration, phase by phase, at any size.

Spec §2 counts costs in flops; a clock does not. This module measures the rates of the few
kernels every method is made of once per machine (``nlt-bench --calibrate``) and adds them up
along each method's phases, as its ``step`` runs them:

    predicted(phase) = Σ over the kernels the phase calls of  t_kernel(work)
    t_kernel(work)   = overhead + Σ_j work_j / rate_j

with one or two kinds of work per kernel (elements touched, flops), fitted by non-negative
least squares on relative error over a few sizes, so that a small size is not mispredicted by
latency and a large one not by cache. The products with the pattern D are predicted on the
route ``harness.kernels`` would take (``kernels=auto``: the route the fitted rates say is
faster, with the selector's tie margin in favour of float).

Kernels (names in the profile, work in brackets; C = A·B with A p×k, B k×q):

============ ================================================ ===============================
kernel       what is timed                                    work
============ ================================================ ===============================
xw           X Wᵀ (n×d · d×m), the forward GEMM                elements pq+(p+q)k, flops 2pqk
gram_float   D Dᵀ as a float GEMM; any dense large-k GEMM      elements pq+(p+q)k, flops 2pqk
gram_int8    D Dᵀ by ``torch._int_mm``, the int8 cast included  the same
mm_float     D Z (n×m · m×k), float                           elements nm+(m+n)k, flops 2nmk
mm_int8      D Z by the int8 fixed-point split                 the same
rmm_float    Dᵀ Y (m×n · n×k), float                          the same
rmm_int8     Dᵀ Y, int8 split                                 the same
qr           R of an s×n matrix (``torch.linalg.qr``)          elements sn, flops 2sn² − 2n³/3
cholesky     ``torch.linalg.cholesky`` of n×n                  elements n², flops n³/3
trsv         ``solve_triangular`` n×n, one right-hand side     elements n²
copy         ``dst.copy_(src)``                                bytes read + written
elementwise  one in-place pass (``relu_``) over k elements      elements
fwht         ``harness.hadamard.fwht`` of rows × N             elements rows·N·passes,
                                                              flops 2·rows·N·Σ_j 2^{b_j}
fault        a fresh buffer's first write (``torch.empty``,    bytes
             then ``fill_``) less the same write on a warm
             buffer: the page faults of a new allocation
sketch_<s>   sketch s drawn and B = S Jᵀ formed               elements, transform flops and
             (``sketch_problem(...).sketch_jacobian``)        n·s rows (``sketch_work``)
============ ================================================ ===============================

Each fit carries a *size curve* (``Fit.curve``): at every calibrated size, measured over
fitted, interpolated in log–log between sizes. The straight line holds a kernel's shape in
its kinds of work; the curve holds what changes with the working set (cache-resident, then
memory-bound, then freshly faulted pages), so that a pass over a 4 GB pattern is not priced
at the rate of a 1 MB one. Timings of ``xw`` write into a preallocated output; a step that
allocates its n×m buffer pays ``fault`` for it on top (``Costs.fresh``).

Beyond the kernels, a step pays what no kernel timing in a tight loop sees: Python and
dispatch per torch call, small temporaries, the phase clock, and caches and allocator state
left by the loss evaluation the runner runs between steps (in a loop of ``linearize`` alone
a 256×2048 forward takes 0.17 ms here; with the loss evaluated between calls, 0.7 ms). The
calibration measures that where it happens: the *step ladder* runs every method's own steps
in the runner's loop (a timed step, then the loss) at a few sizes, ``LADDER``, from where
fixed costs dominate to where D streams from memory, and keeps per phase the ratio measured
/ kernel model as a curve over the model's seconds per occurrence of the phase (per CG
iteration for an inner solve, per build for a refresh; ``Profile.phase_curves``).
``predict`` multiplies each phase's kernel-model time by its curve's factor at that time,
interpolated in log–log and held at the ends. gn_sketch's sketch and factor phases have one
curve per sketch and factorisation (``phase_key``); the sketches themselves are kernels of
their own (``sketch_<name>``: the draw and B = S Jᵀ timed whole, ``sketch_work``). No ladder
size and no sketch size is a cell of a committed sweep: no phase is fitted to the cells it
is judged on.

Each is measured per dtype (float32 and float64; the int8 routes exist for float32 only).
The profile is a JSON file (``Profile``), written by ``calibrate`` and read by ``predict``,
``frontier`` and ``predicted_vs_measured``. ``reports/profiles/h100_datasheet.json`` holds an
NVIDIA H100 SXM built from its datasheet, labelled as a prediction.

Example
-------
>>> prof = Profile.synthetic(flops=1e9)
>>> t = predict("gd", {}, n=10, m=100, d=2, profile=prof)
>>> sorted(t)
['forward', 'gradient', 'total', 'update']
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from harness import kernels
from harness.errors import ConfigError, unknown
from harness.flops import num_params
from harness.hadamard import BLOCK_BITS, next_power_of_two

SCHEMA = "nlt-costmodel/1"
DTYPES = ("float32", "float64")
DATASHEET_SOURCE = "datasheet (prediction, not measured)"

#: Kinds of work per kernel, in the order of the fit's columns.
KERNELS: dict[str, tuple[str, ...]] = {
    "xw": ("elements", "flops"),
    "gram_float": ("elements", "flops"),
    "gram_int8": ("elements", "flops"),
    "mm_float": ("elements", "flops"),
    "mm_int8": ("elements", "flops"),
    "rmm_float": ("elements", "flops"),
    "rmm_int8": ("elements", "flops"),
    "qr": ("elements", "flops"),
    "cholesky": ("elements", "flops"),
    "trsv": ("elements",),
    "copy": ("bytes",),
    "elementwise": ("elements",),
    "fwht": ("elements", "flops"),
    "fault": ("bytes",),
    # B = S Jᵀ as ``harness.sketches`` forms it (the draw included), one kernel per sketch:
    # its passes over D (or J), its transform, and its n·s rows of output (``sketch_work``)
    "sketch_tensor_srht": ("elements", "flops", "rows", "draw"),
    "sketch_srht": ("elements", "flops", "rows", "draw"),
    "sketch_countsketch": ("elements", "rows"),
    "sketch_gaussian": ("elements", "flops", "rows"),
    "sketch_tensorsketch": ("elements", "flops", "rows"),
}
#: The sketches' own kernels.
SKETCH_KERNELS = tuple(k for k in KERNELS if k.startswith("sketch_"))
#: The sketches the model has a formula for (``sketch_work``, ``_sketch_layer``).
MODELLED_SKETCHES = tuple(sorted(k.removeprefix("sketch_") for k in SKETCH_KERNELS))
#: Kernels a profile may lack (older and datasheet profiles): a fresh allocation then costs
#: nothing, a sketch is priced pass by pass from the other kernels (``_sketch_layer``).
OPTIONAL_KERNELS = ("fault", *SKETCH_KERNELS)
#: Kernels fitted through their largest point (``fit_kernel``'s ``anchor``).
ANCHORED_KERNELS = ("fault",)
#: harness.kernels product → the profile's kernel name prefix.
PRODUCT_KERNEL = {"pattern_gram": "gram", "pattern_mm": "mm", "pattern_rmm": "rmm"}

# --- defaults of the model, each with where it comes from -------------------------------------

#: Outer steps per sketch under ``refresh=adaptive`` when the caller gives none: a
#: Gauss–Newton run to 1e-6 takes 2–4 outer steps and builds R once (nlt-bench's
#: AMORTIZE_STEPS = 3, docs/performance.md).
DEFAULT_REFRESH_EVERY = 3.0
#: CG iterations priced one by one before the steady per-iteration cost is used
CG_TRACE_ITERS = 64
#: phases built once per preconditioner refresh (amortised over ``refresh_every`` steps)
REFRESH_PHASES = ("sketch", "factor", "nystrom")
#: gn_sketch CG iterations at tol 0.1: 4 at every n from 64 to 2048 (README, claim C3).
DEFAULT_SKETCH_INNER = 4.0
#: gn_cg CG iterations at tol 0.1 grow like n^0.41 from 6 at n = 64 (README, claim C3).
CG_INNER_AT_64, CG_INNER_SLOPE = 6.0, 0.41
#: gn_nystrom: no fit recorded; the mean of the committed CPU sweep's cells (17.6,
#: reports/cpu/cells.csv). Pass the measured mean where there is one.
DEFAULT_NYSTROM_INNER = 17.6
#: torch.optim.Adam's update: about this many elementwise passes over the m×d weights.
ADAM_PASSES = 8
#: gn_exact: elementwise passes over the n·m·d entries of J to form it (closed form: the
#: product U ⊙ X and its reshape; autograd: vmap/jacrev's batched intermediates).
JACOBIAN_PASSES = {"closed_form": 2.0, "autograd": 6.0}
#: CG's vector work per iteration (axpys, dots, norms) in elementwise passes over n.
CG_VECTOR_PASSES = 8


def default_inner_iters(method: str, n: int, params: Mapping[str, Any]) -> float:
    """Inner (CG) iterations per outer iteration when the caller has no measured mean."""
    if method == "gn_sketch":
        return DEFAULT_SKETCH_INNER
    if method == "gn_cg":
        return min(float(params.get("max_inner", 1000)),
                   CG_INNER_AT_64 * (max(n, 1) / 64) ** CG_INNER_SLOPE)
    if method == "gn_nystrom":
        return min(float(params.get("max_inner", 200)), DEFAULT_NYSTROM_INNER)
    return 0.0


# --- the profile ------------------------------------------------------------------------------


@dataclasses.dataclass
class Fit:
    """t(work) = (overhead_s + Σ_j work_j / rates[j]) · curve(size); a rate of None means
    'never limiting'.

    ``curve``: the measured size dependence the straight-line fit cannot hold (cache, then
    memory, then fresh pages): at each calibrated size (the kernel's first kind of work:
    elements, or bytes) the ratio measured / fitted; between sizes the factor is interpolated
    in log–log, beyond the ends held at the end's value. Empty (old and datasheet profiles):
    factor 1.
    """

    overhead_s: float
    rates: dict[str, float | None]
    points: list[dict[str, float]] = dataclasses.field(default_factory=list)
    note: str = ""
    curve: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    def base_seconds(self, **work: float) -> float:
        """The straight-line fit alone (no size curve)."""
        t = self.overhead_s
        for kind, amount in work.items():
            if kind not in self.rates:
                raise ConfigError(f"cost model: no rate for {kind!r} work "
                                  f"(this kernel has {sorted(self.rates)})")
            rate = self.rates[kind]
            if rate:
                t += amount / rate
        return t

    @property
    def size_kind(self) -> str:
        return next(iter(self.rates))

    def factor(self, size: float) -> float:
        """The size curve's factor at ``size`` units of the first kind of work."""
        return curve_factor(self.curve, size)

    def seconds(self, **work: float) -> float:
        return self.base_seconds(**work) * self.factor(work.get(self.size_kind, 0.0))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"overhead_s": self.overhead_s, "rates": self.rates}
        if self.curve:
            out["curve"] = [list(c) for c in self.curve]
        if self.points:
            out["points"] = self.points
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fit:
        curve = [(float(x), float(f)) for x, f in data.get("curve", [])]
        return cls(float(data["overhead_s"]), dict(data["rates"]), list(data.get("points", [])),
                   str(data.get("note", "")), curve)


#: Calibrated sizes closer than this factor share one point of a size curve (their ratios'
#: geometric mean): two timings at one size with different k are one size, not a slope.
CURVE_MERGE = 1.5


def size_curve(fit: Fit, points: Sequence[Mapping[str, float]]) -> list[tuple[float, float]]:
    """Measured / fitted at each calibrated size (sizes within CURVE_MERGE merged), sorted."""
    kind = fit.size_kind
    return merged_curve((float(p[kind]), p["seconds"] / fit.base_seconds(
        **{k: p[k] for k in fit.rates})) for p in points
        if p.get(kind, 0) > 0 and p["seconds"] > 0)


def curve_factor(curve: Sequence[Sequence[float]], x: float) -> float:
    """A curve's factor at ``x`` (a size curve: units of work; a ladder curve: model
    seconds per occurrence): interpolated in log–log between its points, held at the end
    values beyond them; 1 for an empty curve."""
    if not curve or not x > 0:
        return 1.0
    xs = np.log([c[0] for c in curve])
    ys = np.log([c[1] for c in curve])
    return float(np.exp(np.interp(math.log(x), xs, ys)))


def merged_curve(points) -> list[tuple[float, float]]:
    """(x, ratio) points sorted by x, those within CURVE_MERGE of a group's first x merged
    into one by geometric means: two timings at one size are one point, not a slope."""
    groups: list[list[tuple[float, float]]] = []
    for x, r in sorted(p for p in points if p[0] > 0 and p[1] > 0):
        if groups and x <= CURVE_MERGE * groups[-1][0][0]:
            groups[-1].append((x, r))
        else:
            groups.append([(x, r)])
    return [(math.exp(float(np.mean(np.log([v for v, _ in g])))),
             math.exp(float(np.mean(np.log([v for _, v in g]))))) for g in groups]


def fit_kernel(points: Sequence[Mapping[str, float]], kinds: Sequence[str],
               curve: bool = True, anchor: bool = False) -> Fit:
    """Least-squares fit of t = c₀ + Σ_j c_j work_j (all c ≥ 0) on relative error, then
    (``curve``) the size curve of what the line leaves (``size_curve``).

    ``points``: dicts with the work of each kind and ``seconds``. Rates are 1/c_j (None for a
    kind the fit found no cost in). ``anchor``: no least squares; the one rate is the
    largest point's, with no overhead (for ``fault``, whose small sizes cost next to nothing
    and would pull a relative-error line to zero: the curve holds them).
    """
    from scipy.optimize import nnls

    if anchor:
        big = max(points, key=lambda p: p[kinds[0]])
        fit = Fit(0.0, {kinds[0]: big[kinds[0]] / big["seconds"]}, [dict(p) for p in points])
        fit.curve = size_curve(fit, points) if curve else []
        return fit

    t = np.array([p["seconds"] for p in points], dtype=float)
    cols = [np.ones_like(t)] + [np.array([p[k] for p in points], dtype=float) for k in kinds]
    A = np.stack(cols, 1) / t[:, None]
    scale = np.abs(A).max(0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale, np.ones_like(t))
    coef = coef / scale
    rates = {k: (1.0 / c if c > 0 else None) for k, c in zip(kinds, coef[1:])}
    if all(r is None for r in rates.values()):  # only overhead: keep the rate of the largest
        big = int(np.argmax(cols[1]))
        rates[kinds[0]] = float(cols[1][big] / t[big])
        coef[0] = 0.0
    fit = Fit(float(coef[0]), rates, [dict(p) for p in points])
    if curve:
        fit.curve = size_curve(fit, points)
    return fit


class Profile:
    """A machine's measured (or datasheet) kernel rates and where they come from.

    ``data`` is the JSON object: provenance keys (device, device_name, cpu, threads, torch,
    git_commit, date, source, memory_bytes, default_dtype) and ``kernels[dtype][name]``.
    """

    def __init__(self, data: Mapping[str, Any]):
        self.data = dict(data)
        self.fits: dict[str, dict[str, Fit]] = {
            dtype: {name: Fit.from_dict(f) for name, f in table.items()}
            for dtype, table in self.data.get("kernels", {}).items()}

    # provenance
    @property
    def memory_bytes(self) -> int | None:
        value = self.data.get("memory_bytes")
        return None if value is None else int(value)

    @property
    def is_datasheet(self) -> bool:
        """Published rates, not a measurement: only ever a labelled prediction."""
        return str(self.data.get("source", "")).startswith("datasheet")

    @property
    def default_dtype(self) -> str:
        return str(self.data.get("default_dtype", "float32"))

    @property
    def notes(self) -> list[str]:
        """What this profile lacks that newer calibrations measure, and the fallback taken."""
        out = []
        for dtype, table in sorted(self.fits.items()):
            if "fault" not in table:
                out.append(f"{dtype}: no fault kernel (fresh allocations cost nothing)")
            sketches = [k for k in SKETCH_KERNELS if k not in table]
            if sketches and not self.is_datasheet:
                out.append(f"{dtype}: no {', '.join(sketches)} kernel (those sketches priced "
                           f"pass by pass)")
            if not self.is_datasheet and dtype not in self.data.get("phase_curves", {}):
                out.append(f"{dtype}: no step ladder (kernels only, no per-phase "
                           f"correction)")
            flat = sorted(k for k, f in table.items() if not f.curve)
            if flat:
                out.append(f"{dtype}: no size curve for {', '.join(flat)} (one rate at "
                           f"every size)")
        return out

    def has(self, name: str, dtype: str) -> bool:
        return name in self.fits.get(dtype, {})

    def phase_curves(self, method: str, dtype: str, depth: int = 1
                     ) -> dict[str, list[list[float]]]:
        """The step ladder's correction curves of ``method`` on the two-layer model (depth
        1) or the MLP (depth > 1; the two-layer ones where the profile has no MLP ladder):
        {phase key: [[model seconds per occurrence, measured / model], ...]}; empty for a
        profile without a ladder."""
        table = self.data.get("phase_curves", {}).get(dtype, {})
        return dict(table.get(ladder_key(method, depth)) or table.get(method) or {})

    def fit(self, name: str, dtype: str) -> Fit:
        if dtype not in self.fits:
            raise ConfigError(f"cost-model profile has no rates for dtype {dtype!r}. "
                              f"Available: {sorted(self.fits)}")
        table = self.fits[dtype]
        if name not in table:
            raise ConfigError(f"cost-model profile has no {name!r} kernel for {dtype}. "
                              f"Available: {sorted(table)}")
        return table[name]

    def seconds(self, name: str, dtype: str, **work: float) -> float:
        return self.fit(name, dtype).seconds(**work)

    # files
    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.data.items() if k != "kernels"}
        out["kernels"] = {dt: {k: f.as_dict() for k, f in table.items()}
                          for dt, table in self.fits.items()}
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile; a missing or malformed file is a ConfigError naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"cost-model profile {str(path)!r} does not exist (write one with "
                              f"nlt-bench --calibrate --out {path})") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cost-model profile {str(path)!r} is unreadable: "
                              f"{type(exc).__name__}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("kernels"), dict):
            raise ConfigError(f"cost-model profile {str(path)!r} has no 'kernels' table "
                              f"(schema {SCHEMA})")
        try:
            return cls(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"cost-model profile {str(path)!r} is malformed: "
                              f"{type(exc).__name__}: {exc}") from None

    @classmethod
    def synthetic(cls, flops: float = 1e9, elements: float | None = None,
                  overhead_s: float = 0.0, int8_speedup: float | None = None,
                  memory_bytes: int | None = None, **per_kernel: Mapping[str, Any]) -> Profile:
        """Every kernel at one flop rate (and element rate; None: elements cost nothing),
        for tests and hand calculations. ``int8_speedup``: int8 routes that many times
        faster (None: no int8 routes). ``per_kernel``: overrides, name → Fit fields."""
        table: dict[str, dict[str, Any]] = {}
        for name, kinds in KERNELS.items():
            if name.endswith("_int8") and int8_speedup is None:
                continue
            if name in OPTIONAL_KERNELS and name not in per_kernel:
                continue
            speed = int8_speedup if name.endswith("_int8") else 1.0
            rates: dict[str, float | None] = {}
            for kind in kinds:
                if kind == "flops":
                    rates[kind] = flops * speed
                elif kind == "elements" and name in ("trsv", "elementwise"):
                    rates[kind] = elements if elements is not None else flops
                else:  # bytes of copy, elements beside flops
                    rates[kind] = elements
            table[name] = {"overhead_s": overhead_s, "rates": rates}
            table[name].update(per_kernel.get(name, {}))
        return cls({"schema": SCHEMA, "source": "synthetic", "device": "synthetic",
                    "default_dtype": "float32", "memory_bytes": memory_bytes,
                    "kernels": {"float32": table, "float64": table}})


# --- the kernels as the methods call them -----------------------------------------------------


class Costs:
    """Seconds of the building blocks of a step, on one profile, dtype and route policy.

    ``depth`` 1 prices the two-layer model's operators (``harness.problem``: the products
    with the pattern D on their ``harness.kernels`` route); depth L > 1 those of the deep MLP
    (``harness.mlp``, uniform width m): every layer's factors K⁽ˡ⁾, H⁽ˡ⁾ are float matrices,
    so each layer's product runs on the float route of the same shape (layer 1's too)."""

    def __init__(self, profile: Profile, dtype: str, kernels_mode: str = "auto",
                 depth: int = 1):
        self.p, self.dtype = profile, dtype
        self.mode = kernels.check_mode(kernels_mode)
        self.routes: dict[str, str] = {}
        self.itemsize = 8 if dtype == "float64" else 4
        self.depth = depth
        # the int8 copy of the current linearisation's D (kernels.Pattern): made by an int8
        # Gram, or bought by the skinny products once their savings cover it (rent or buy)
        self._cast_paid, self._rent = False, 0.0

    def params(self, m: float, d: float) -> float:
        """P: md, plus m² per further hidden layer."""
        return m * d if self.depth == 1 else num_params(m, d, self.depth)

    def fan_ins(self, d: float, m: float) -> list[float]:
        """Each layer's input width m_{l−1}: d, then m."""
        return [d] + [m] * (self.depth - 1)

    def dense(self, product: str, n: float, m: float, k: float = 0) -> float:
        """A product of an n×m float factor (an MLP layer's K or H) shaped like the pattern
        product ``product``: its float route (``pattern`` without the route choice)."""
        return self._t(f"{PRODUCT_KERNEL[product]}_float", **_pattern_work(product, n, m, k))

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

    def pattern(self, product: str, n: float, m: float, k: float = 0) -> float:
        """D Dᵀ (k unused), D Z or Dᵀ Y (k columns) on the route harness.kernels would take."""
        prefix = PRODUCT_KERNEL[product]
        work = _pattern_work(product, n, m, k)
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
        bits = _split_bits(N)
        return self._t("fwht", elements=rows * N * len(bits),
                       flops=2 * rows * N * sum(1 << b for b in bits))

    # composite operations of harness.problem (depth 1) and harness.mlp (depth L > 1)

    def forward(self, n: float, m: float, d: float) -> float:
        """linearize(): X Wᵀ into a new n×m buffer, relu_, (·) a, sign_ (the buffer becomes D
        in place). Depth L adds per further layer the forward product H W⁽ˡ⁾ᵀ (relu_, scale)
        and the backward one K W⁽ˡ⁾ for the signals (the sign of H into a new buffer, two
        products), each of the three n×m buffers fresh."""
        self._cast_paid, self._rent = False, 0.0  # a new D: no int8 copy yet
        t = (self.gemm(n, m, d, "xw") + self.fresh(n * m) + 3 * self.ew(n * m)
             + 2 * self.ew(n))
        if self.depth > 1:
            t += (self.depth - 1) * (2 * self.gemm(n, m, m) + 3 * self.fresh(n * m)
                                     + 5 * self.ew(n * m))
        return t

    def jt(self, n: float, m: float, d: float) -> float:
        """Jᵀ g before its scaling: Dᵀ (g ⊙ X); depth L: per layer K⁽ˡ⁾ᵀ (g ⊙ B⁽ˡ⁾), copied
        into the flat P-vector."""
        if self.depth == 1:
            return self.ew(n * d) + self.pattern("pattern_rmm", n, m, d)
        return sum(self.ew(n * c) + self.dense("pattern_rmm", n, m, c) + self.ew(m * c)
                   for c in self.fan_ins(d, m))

    def rmatvec(self, n: float, m: float, d: float) -> float:
        """Jᵀ g = a ⊙ (Dᵀ (g ⊙ X)) / √m, then W −= η·(it) (P entries at depth L)."""
        return self.jt(n, m, d) + 3 * self.ew(self.params(m, d))

    def gram_apply(self, n: float, m: float, d: float, k: float = 1) -> float:
        """(G + μI) P for a block of k vectors: rowsum(X ⊙ D (Dᵀ (P ⊙ X))) / m; depth L:
        the same per layer on (K⁽ˡ⁾, B⁽ˡ⁾), float products."""
        if self.depth == 1:
            kd = k * d
            return (2 * self.ew(n * kd) + self.pattern("pattern_rmm", n, m, kd)
                    + self.pattern("pattern_mm", n, m, kd) + self.ew(n * k))
        return sum(2 * self.ew(n * k * c) + self.dense("pattern_rmm", n, m, k * c)
                   + self.dense("pattern_mm", n, m, k * c) + self.ew(n * k)
                   for c in self.fan_ins(d, m))

    def hadamard_gram(self, n: float, m: float, d: float) -> float:
        """G = (D Dᵀ) ⊙ (X Xᵀ) / m (+ μI); depth L: Σₗ (B⁽ˡ⁾B⁽ˡ⁾ᵀ) ⊙ (K⁽ˡ⁾K⁽ˡ⁾ᵀ), float GEMMs
        (B⁽¹⁾ = X on the small-k kernel), one accumulating pass each."""
        if self.depth == 1:
            return (self.pattern("pattern_gram", n, m) + self.gemm(n, n, d, "xw")
                    + 2 * self.ew(n * n))
        return self.ew(n * n) + sum(
            self.gemm(n, n, c, "xw" if c == d else "gram_float") + self.gemm(n, n, m)
            + 2 * self.ew(n * n) for c in self.fan_ins(d, m))

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


def _pattern_work(product: str, n: float, m: float, k: float) -> dict[str, float]:
    if product == "pattern_gram":
        return {"elements": n * m + n * n, "flops": 2 * n * n * m}
    return {"elements": n * m + (n + m) * k, "flops": 2 * n * m * k}


def _split_bits(N: int) -> list[int]:
    k = max(0, int(N).bit_length() - 1)
    passes = -(-k // BLOCK_BITS)
    if passes == 0:
        return []
    base, extra = divmod(k, passes)
    return [base + 1] * extra + [base] * (passes - extra)


def sketch_seconds(c: Costs, sketch: str, n: int, m: int, d: int, s: int) -> float:
    """Forming B = S Jᵀ (s×n) as ``harness.sketches`` does, kernel by kernel. At depth L a
    sketch of Kronecker rows runs once per layer on (K⁽ˡ⁾, B⁽ˡ⁾) and sums the parts
    (``LayeredSketch``); any other acts on the flat rows of J, P = md + (L − 1)m² long."""
    if c.depth == 1:
        return _sketch_layer(c, sketch, n, m, d, s)
    from harness.problem import LAYERED
    from harness.sketches import SKETCHES

    if sketch in SKETCHES and LAYERED in SKETCHES.get(sketch).requires:
        return sum(_sketch_layer(c, sketch, n, m, fan_in, s) for fan_in in c.fan_ins(d, m)) \
            + (c.depth - 1) * c.ew(n * s)
    return _sketch_layer(c, sketch, n, int(c.params(m, d)), 1, s)


def sketch_work(sketch: str, n: float, m: float, d: float, s: float) -> dict[str, float]:
    """The work of forming B = S Jᵀ (s×n) for n rows u ⊗ x (u ∈ R^m, x ∈ R^d), in the kinds of
    the sketch's kernel: elements passed over (D padded to m' and X to d', or the md-long rows
    of J, or S itself), transform flops (Hadamard, FFT, or the Gaussian product) and the n·s
    entries of B, which are gathered, scaled and written transposed."""
    if sketch == "tensor_srht":  # both factors transformed: u (m') and x (d')
        mp, dp = next_power_of_two(int(m)), next_power_of_two(int(d))
        return {"elements": n * (mp + dp), "rows": n * s, "draw": _draw_work(mp * dp, s),
                "flops": n * (mp * math.log2(max(mp, 2)) + dp * math.log2(max(dp, 2)))}
    if sketch == "srht":
        N = next_power_of_two(int(m * d))
        return {"elements": n * N, "flops": n * N * math.log2(max(N, 2)), "rows": n * s,
                "draw": _draw_work(N, s)}
    if sketch == "countsketch":
        return {"elements": n * m * d, "rows": n * s}
    if sketch == "gaussian":
        return {"elements": s * m * d + n * m * d, "flops": 2 * s * m * d * n, "rows": n * s}
    if sketch == "tensorsketch":
        N = next_power_of_two(int(s))
        return {"elements": n * (m + d), "flops": n * N * math.log2(max(N, 2)), "rows": n * s}
    raise unknown("sketch", sketch, MODELLED_SKETCHES)


def _draw_work(N: int, s: int) -> float:
    """Values drawn to sample s of N indices as ``harness.sketches._sample_rows`` does: a
    permutation of all N up to its limit, s draws beyond it (at a deep layer m'd' = m'²)."""
    from harness.sketches import PERMUTATION_LIMIT

    return float(N if N <= PERMUTATION_LIMIT else s)


def _sketch_layer(c: Costs, sketch: str, n: int, m: int, d: int, s: int) -> float:
    """The sketch of one Kronecker layer u ⊗ x (u ∈ R^m, x ∈ R^d), as on two layers: the
    sketch's measured kernel where the profile has one, else pass by pass."""
    if c.p.has(f"sketch_{sketch}", c.dtype):  # kinds of work a profile lacks cost nothing
        kinds = c.p.fit(f"sketch_{sketch}", c.dtype).rates
        return c._t(f"sketch_{sketch}", **{k: v for k, v in sketch_work(
            sketch, n, m, d, s).items() if k in kinds})
    if sketch == "tensor_srht":
        from harness.sketches import BLOCK_ELEMENTS

        mp, dp = next_power_of_two(m), next_power_of_two(d)
        t = 2 * c.ew(n * d) + c.fwht(n, dp) + c.ew(n * s)  # H E₂ x, gather P₂
        # D in blocks of ``rows`` rows, each small enough to stay in cache (sketches.py)
        rows = min(n, max(1, BLOCK_ELEMENTS // mp))
        block = c.ew(rows * m) + (c.ew(rows * mp) if mp != m else 0.0)  # D ⊙ a, pad
        block += c.fwht(rows, mp) + 2 * c.ew(rows * s)  # H E₁ u, gather P₁, product
        return t + math.ceil(n / rows) * block + c.ew(n * s)  # scale
    if sketch == "srht":
        N = next_power_of_two(m * d)
        return 2 * c.ew(n * m * d) + 2 * c.ew(n * N) + c.fwht(n, N) + c.ew(n * s)
    if sketch == "gaussian":
        return c.ew(s * m * d) + 2 * c.ew(n * m * d) + c.gemm(s, n, m * d)
    if sketch == "countsketch":
        return 4 * c.ew(n * m * d) + c.ew(n * s)
    if sketch == "tensorsketch":  # FFTs of n rows of length s, costed like a Hadamard pass
        N = next_power_of_two(s)
        return 3 * c.ew(n * m) + 2 * c.ew(n * d) + 3 * 2 * c.fwht(n, N) + 2 * c.ew(n * s)
    raise unknown("sketch", sketch, MODELLED_SKETCHES)


# --- the methods ------------------------------------------------------------------------------
# Each function returns {phase: seconds} for one outer iteration, in the phases (and with the
# operations) of the method's ``step`` in algorithms/<name>.py.

Phases = dict[str, float]


def _first_order(c: Costs, p, n, m, d, inner, rows=None) -> Phases:
    b = n if rows is None else rows
    P = c.params(m, d)
    return {"forward": c.forward(b, m, d), "gradient": c.jt(b, m, d) + 2 * c.ew(P),
            "update": c.ew(P)}


def _gd(c, p, n, m, d, inner) -> Phases:
    return _first_order(c, p, n, m, d, inner)


def _sgd(c, p, n, m, d, inner) -> Phases:
    out = _first_order(c, p, n, m, d, inner, rows=min(int(p["batch_size"]), n))
    P = c.params(m, d)
    out["update"] = 2 * c.ew(P) if p.get("momentum") else c.ew(P)
    return out


def _adam(c, p, n, m, d, inner) -> Phases:
    out = _first_order(c, p, n, m, d, inner)
    P = c.params(m, d)
    out["gradient"] += c.ew(P)  # / n
    out["update"] = ADAM_PASSES * c.ew(P)
    return out


def _gram_step(c: Costs, b: int, m: int, d: int) -> Phases:
    return {"forward": c.forward(b, m, d), "gram": c.hadamard_gram(b, m, d),
            "solve": c.cholesky_solve(b), "update": c.rmatvec(b, m, d)}


def _gn_gram(c, p, n, m, d, inner) -> Phases:
    return _gram_step(c, n, m, d)


def _ggn(c, p, n, m, d, inner) -> Phases:
    return _gram_step(c, min(int(p["batch_size"]), n), m, d)


def _kfac(c, p, n, m, d, inner) -> Phases:
    return {"forward": c.forward(n, m, d),
            "gram": c.pattern("pattern_gram", n, m) + 2 * c.ew(n * n),
            "solve": 2 * c.ew(n * d) + c.cholesky_solve(n, rhs=d) + c.gemm(n, d, d, "xw"),
            "update": c.pattern("pattern_rmm", n, m, d) + 2 * c.ew(m * d)}


def _gn_cg(c, p, n, m, d, inner) -> Phases:
    return {"forward": c.forward(n, m, d), "solve": c.cg(n, m, d, inner),
            "update": c.rmatvec(n, m, d)}


def _refresh_every(p: Mapping[str, Any], refresh_every: float | None) -> float:
    if p.get("refresh", "always") == "always":
        return 1.0
    every = DEFAULT_REFRESH_EVERY if refresh_every is None else float(refresh_every)
    if not every >= 1:
        raise ConfigError(f"refresh_every must be >= 1 (outer steps per refresh), got {every}")
    return every


def _gn_sketch(c, p, n, m, d, inner, refresh_every=None) -> Phases:
    from algorithms.gn_sketch import sketch_size

    s = sketch_size(float(p["sketch_ratio"]), n)
    every = _refresh_every(p, refresh_every)
    if p["factor"] == "qr":
        rows = s + (n if p.get("damping") else 0)
        factor = c.qr(rows, n) + (c.ew(rows * n) if p.get("damping") else 0.0)
    else:  # BᵀB, Cholesky
        factor = c.gemm(n, n, s) + c.cholesky(n)
    factor += c.ew(n * n)  # Rᵀ made contiguous for the preconditioner
    return {"forward": c.forward(n, m, d),
            "sketch": sketch_seconds(c, p["sketch"], n, m, d, s) / every,
            "factor": factor / every,
            "solve": c.cg(n, m, d, inner, precondition=lambda: 2 * c.trsv(n)),
            "update": c.rmatvec(n, m, d)}


def _gn_nystrom(c, p, n, m, d, inner, refresh_every=None) -> Phases:
    from algorithms.gn_nystrom import _block_columns

    ell = min(int(p["rank"]), n)
    every = _refresh_every(p, refresh_every)
    kb = min(_block_columns(n, m, int(c.params(m, d))), ell)
    blocks = math.ceil(ell / kb)
    build = c.ew(n * ell) + c.qr(n, ell)  # Ω, orthonormalised
    build += blocks * c.gram_apply(n, m, d, kb) + 2 * c.ew(n * ell)  # Y = G Ω, shift
    build += c.gemm(ell, ell, n) + c.cholesky(ell) + c.gemm(n, ell, ell)  # C, F = Y C⁻ᵀ
    build += 3 * c.qr(n, ell)  # thin SVD of F (n×ℓ), costed as three QRs of its shape
    return {"forward": c.forward(n, m, d), "nystrom": build / every,
            "solve": c.cg(n, m, d, inner,
                          precondition=lambda: 2 * c.gemm(n, 1, ell, "xw") + 3 * c.ew(n)),
            "update": c.rmatvec(n, m, d)}


def _gn_exact(c, p, n, m, d, inner) -> Phases:
    P = c.params(m, d)
    nP = n * P
    jacobian = JACOBIAN_PASSES[p["jacobian"]] * c.ew(nP)
    if p["jacobian"] == "closed_form":
        jacobian += c.ew(n * m)
    elif c.depth > 1:  # jacrev: the backward pass of n cotangents at once, per further layer
        jacobian += (c.depth - 1) * c.gemm(n * n, m, m)
    return {"forward": c.forward(n, m, d),
            "jacobian": jacobian,
            "gram": c.gemm(n, n, P),
            "solve": c.cholesky_solve(n),
            "update": c.ew(nP) + c.ew(P)}  # Jᵀ g reads J once


METHODS: dict[str, Callable[..., Phases]] = {
    "gd": _gd, "sgd": _sgd, "adam": _adam, "gn_gram": _gn_gram, "ngd": _gn_gram,
    "ggn": _ggn, "kfac": _kfac, "gn_cg": _gn_cg, "gn_sketch": _gn_sketch,
    "gn_nystrom": _gn_nystrom, "gn_exact": _gn_exact,
}
#: Methods with an inner iterative solve (their time depends on ``inner_iters``).
INNER_METHODS = ("gn_cg", "gn_sketch", "gn_nystrom")
#: Methods that reuse a preconditioner under ``refresh=adaptive``.
REFRESH_METHODS = ("gn_sketch", "gn_nystrom")


def method_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's Params defaults overlaid with ``params``, validated by its dataclass."""
    if method not in METHODS:
        raise unknown("method for the cost model", method, METHODS)
    from algorithms.base import ALGORITHMS, param_defaults

    cls = ALGORITHMS.get(method).Params
    merged = {**param_defaults(cls), **dict(params or {})}
    known = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(merged) - known)
    if extra:
        raise ConfigError(f"Unknown parameter {extra[0]!r} of {method}. Available: "
                          f"{sorted(known)}")
    cls(**merged)  # raises the method's own ConfigError on a bad value
    return merged


def check_depth(method: str, depth: Any) -> int:
    """``depth`` as a positive int; a ConfigError for a bad one, or for depth > 1 with a
    method that needs the two-layer structure (kfac: ``requires``), which has no formula."""
    if not (isinstance(depth, (int, np.integer)) and not isinstance(depth, bool) and depth >= 1):
        raise ConfigError(f"cost model: depth must be a positive integer, got {depth!r}")
    if depth > 1:
        from algorithms.base import ALGORITHMS
        from harness.problem import TWO_LAYER

        if TWO_LAYER in ALGORITHMS.get(method).requires:
            raise ConfigError(f"cost model: {method} needs the two-layer model's structure; "
                              f"it has no cost at depth={int(depth)} (only depth=1)")
    return int(depth)


def predict(method: str, params: Mapping[str, Any] | None, n: int, m: int, d: int,
            profile: Profile, inner_iters: float | None = None, *, dtype: str | None = None,
            kernels_mode: str = "auto", refresh_every: float | None = None,
            depth: int = 1) -> dict[str, float]:
    """Predicted seconds per outer iteration of ``method`` at (n, m, d), phase by phase.

    ``params``: the method's hyperparameters (missing ones take the Params defaults).
    ``inner_iters``: mean inner (CG) iterations per outer iteration; None takes
    ``default_inner_iters``. ``refresh_every``: outer steps per preconditioner build under
    ``refresh=adaptive`` (sketch and factor amortised over them; default
    ``DEFAULT_REFRESH_EVERY``). ``depth``: hidden layers (1: the two-layer model; L > 1: the
    MLP of ``harness.mlp`` with L layers of width m; ``Costs``). Returns {phase: seconds,
    ..., "total": sum}.
    """
    p = method_params(method, params)
    depth = check_depth(method, depth)
    for key, value in (("n", n), ("m", m), ("d", d)):
        if not value >= 1:
            raise ConfigError(f"cost model: {key} must be >= 1, got {value!r}")
    if inner_iters is None or (isinstance(inner_iters, float) and math.isnan(inner_iters)):
        inner_iters = default_inner_iters(method, n, p)
    c = Costs(profile, dtype or profile.default_dtype, kernels_mode, depth)
    fn = METHODS[method]
    if method in REFRESH_METHODS:
        phases = fn(c, p, n, m, d, float(inner_iters), refresh_every=refresh_every)
    else:
        phases = fn(c, p, n, m, d, float(inner_iters))
    phases = {k: float(v) for k, v in phases.items()}
    every = _refresh_every(p, refresh_every) if method in REFRESH_METHODS else 1.0
    curves = profile.phase_curves(method, c.dtype, depth)
    if curves:  # measured over modelled, per phase, on the method's own steps (the ladder)
        for phase, seconds in phases.items():
            curve = curves.get(phase_key(method, p, phase))
            if curve and seconds > 0:
                x = _occurrence(method, phase, seconds, float(inner_iters), every)
                phases[phase] = seconds * curve_factor(curve, x)
    phases["total"] = float(sum(phases.values()))
    return phases


def phase_key(method: str, params: Mapping[str, Any], phase: str) -> str:
    """The name a phase's correction curve is kept under: the phase, except where a
    hyperparameter picks a different operation for it (gn_sketch's sketch and factor)."""
    if method == "gn_sketch" and phase == "sketch":
        return f"sketch:{params.get('sketch')}"
    if method == "gn_sketch" and phase == "factor":
        return f"factor:{params.get('factor')}"
    if method == "gn_exact" and phase == "jacobian":
        return f"jacobian:{params.get('jacobian')}"
    return phase


def _occurrence(method: str, phase: str, seconds: float, inner: float, every: float) -> float:
    """A phase's seconds per occurrence: per inner iteration for an inner solve, per build
    for an amortised refresh phase, else per step."""
    if phase == "solve" and method in INNER_METHODS:
        return seconds / inner if inner > 0 else seconds
    if phase in REFRESH_PHASES:
        return seconds * every
    return seconds


#: The runs of the step ladder: every method (with the step sizes kept small, so that its
#: steps stay steps of the same work instead of converging in two), and gn_sketch once per
#: sketch and factorisation, rebuilding every step so each step times its build.
LADDER_RUNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("gd", {"lr": 1e-6}), ("sgd", {"lr": 1e-6}), ("adam", {"lr": 1e-6}),
    ("gn_gram", {"step_size": 0.05}), ("ngd", {"step_size": 0.05}),
    ("ggn", {"step_size": 0.05}), ("kfac", {"step_size": 0.05}),
    ("gn_cg", {"step_size": 0.05}), ("gn_exact", {"step_size": 0.05}),
    ("gn_exact", {"step_size": 0.05, "jacobian": "closed_form"}),
    ("gn_nystrom", {"step_size": 0.05, "refresh": "always"}),
    ("gn_sketch", {"step_size": 0.05, "refresh": "always"}),
    ("gn_sketch", {"step_size": 0.05, "refresh": "always", "factor": "qr",
                   "sketch_ratio": 4.0}),
    *(("gn_sketch", {"step_size": 0.05, "refresh": "always", "sketch": name})
      for name in ("gaussian", "srht", "countsketch", "tensorsketch")),
)
#: (n, m, d) of the ladder, none of them a cell of a committed sweep (nothing is calibrated
#: on the cells it is judged on), from where fixed costs dominate to where D streams from
#: memory. A run stops climbing where the kernel model puts its step above LADDER_STEP_S.
LADDER = ((64, 128, 8), (160, 1280, 12), (320, 2560, 16), (640, 5120, 16), (1280, 20480, 16),
          (2560, 81920, 16))
QUICK_LADDER = ((64, 128, 8), (96, 384, 8))
#: The MLP's depth on the ladder: its curves serve every depth > 1 (``ladder_key``)
LADDER_DEPTH = 2
LADDER_STEP_S = 0.4
#: timed steps per ladder point (after one untimed warm-up step; the loss is evaluated
#: between steps, as the runner does)
LADDER_STEPS = 3


def ladder_key(method: str, depth: int) -> str:
    """Where a method's ladder curves are kept: its name for the two-layer model, and
    ``<name>@mlp`` for the MLP (measured at ``LADDER_DEPTH``, used at every depth > 1)."""
    return method if depth == 1 else f"{method}@mlp"


def _ladder_steps(method: str, params: dict[str, Any], n: int, m: int, d: int, depth: int,
                  dev: torch.device, dtype: str) -> tuple[dict[str, list[float]], float]:
    """``LADDER_STEPS`` timed steps of ``method`` in the runner's loop (warm-up, setup, then
    a step and the loss evaluation, each step on the clock): {phase: seconds per step}, and
    the mean inner iterations (0 without an inner solve)."""
    from algorithms.base import ALGORITHMS
    from harness.device import resolve_dtype
    from harness.loop import timed_step, warm_up
    from harness.problem import make_generator, make_problem
    from harness.timing import PhaseClock

    cls = ALGORITHMS.get(method)
    problem = make_problem("synthetic", n, d, m, seed=0, device=dev, dtype=resolve_dtype(dtype),
                           model="two_layer" if depth == 1 else "mlp", depth=depth)

    def make():
        return cls(problem, cls.Params(**params), make_generator(1, dev))

    warm_up(problem, make, 1)
    alg, clock = make(), PhaseClock(dev)
    alg.setup(clock)
    clock.pop()
    problem.loss()
    seen: dict[str, list[float]] = {}
    inner = []
    for _ in range(LADDER_STEPS):
        info, _, _ = timed_step(alg, clock, dev)
        for phase, secs in clock.pop().items():
            seen.setdefault(phase, []).append(secs)
        if info.inner_iters is not None:
            inner.append(float(info.inner_iters))
        problem.loss()  # the runner's evaluation, outside the clock
    return seen, float(np.mean(inner)) if inner else 0.0


def _measure_ladder(dev: torch.device, dtype: str, profile: Profile, ladder,
                    log: Callable[[str], None], depths: Sequence[int] = (1,)
                    ) -> tuple[dict[str, dict[str, list]], list]:
    """Each method's own steps in the runner's loop at the ladder's sizes, on the two-layer
    model (depth 1) and on the MLP (any other depth; methods that need the two-layer
    structure are left out); per phase, measured over the kernel model's prediction (no
    correction) at each size, as a curve over the model's seconds per occurrence. Returns
    ({``ladder_key``: {phase key: curve}}, the raw points)."""
    from algorithms.base import ALGORITHMS
    from harness.mlp import MLPReLU

    bare = Profile({k: v for k, v in profile.data.items() if k != "phase_curves"})
    raw: list[dict[str, Any]] = []
    pairs: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for depth in depths:
        for method, overrides in LADDER_RUNS:
            if depth > 1 and not ALGORITHMS.get(method).requires <= MLPReLU.features:
                continue
            params = method_params(method, overrides)
            for n, m, d in ladder:
                if predict(method, params, n, m, d, bare, dtype=dtype,
                           depth=depth)["total"] > LADDER_STEP_S:
                    break
                seen, k = _ladder_steps(method, params, n, m, d, depth, dev, dtype)
                model = predict(method, params, n, m, d, bare, inner_iters=k, dtype=dtype,
                                refresh_every=1.0, depth=depth)
                for phase, times in seen.items():
                    if not model.get(phase, 0.0) > 0:
                        continue
                    measured = float(np.median(times))
                    key = phase_key(method, params, phase)
                    x = _occurrence(method, phase, model[phase], k, 1.0)
                    pairs.setdefault(ladder_key(method, depth), {}).setdefault(key, []).append(
                        (x, measured / model[phase]))
                    raw.append({"method": method, "params": dict(overrides), "n": n, "m": m,
                                "d": d, "depth": depth, "phase": key, "inner_iters": k,
                                "measured_s": measured, "model_s": model[phase]})
            log(f"    {ladder_key(method, depth):<15} {json.dumps(overrides)[:60]}")
    curves = {method: {key: [list(p) for p in merged_curve(pts)]
                       for key, pts in table.items()}
              for method, table in pairs.items()}
    return curves, raw


def predict_routes(method: str, params: Mapping[str, Any] | None, n: int, m: int, d: int,
                   profile: Profile, *, dtype: str | None = None,
                   kernels_mode: str = "auto", depth: int = 1) -> dict[str, str]:
    """The route per pattern product the prediction used (as ``kernels.routes_used()``;
    none beyond depth 1, where every product is a float one)."""
    p = method_params(method, params)
    c = Costs(profile, dtype or profile.default_dtype, kernels_mode, check_depth(method, depth))
    fn = METHODS[method]
    fn(c, p, n, m, d, default_inner_iters(method, n, p))
    return dict(sorted(c.routes.items()))


# --- the crossover frontier -------------------------------------------------------------------


def fits_memory(method: str, params: Mapping[str, Any] | None, n: int, m: int, d: int,
                limit_bytes: float | None, itemsize: int = 4, depth: int = 1) -> bool:
    """Whether the method's own memory plan (``memory_bytes``) stays within ``limit_bytes``
    (at ``depth`` > 1: the plan on the MLP's ``Shape``)."""
    if limit_bytes is None:
        return True
    from algorithms.base import ALGORITHMS, Shape

    cls = ALGORITHMS.get(method)
    shape = Shape(n, m, d, itemsize)
    if depth > 1:
        from harness.mlp import MLPReLU

        shape = Shape(n, m, d, itemsize, depth=depth, model=MLPReLU.model,
                      features=MLPReLU.features)
    plan = cls.memory_bytes(cls.Params(**method_params(method, params)), shape)
    return plan <= limit_bytes


def frontier(profile: Profile, ns: Sequence[int], ms: Sequence[int], d: int,
             methods: tuple[str, str] = ("gn_sketch", "gn_gram"),
             params: Mapping[str, Mapping[str, Any]] | None = None,
             inner_iters: Mapping[str, float] | None = None,
             outer_iters: Mapping[str, float] | None = None, *,
             dtype: str | None = None, kernels_mode: str = "auto",
             refresh_every: float | None = None,
             memory_bytes: float | None = None, depth: int = 1) -> pd.DataFrame:
    """Per n, the smallest m of ``ms`` where ``methods[0]`` beats ``methods[1]``.

    Per iteration (``m_per_iteration``) and, given ``outer_iters`` {method: outer iterations
    to ε}, to ε (``m_to_target``: iterations × time per iteration, setup excluded). An m is
    admissible while ``methods[0]``'s memory plan fits ``memory_bytes`` (default: the
    profile's); a baseline that does not fit loses. None where no admissible m of the grid
    wins. Also returns the time ratio baseline / candidate at the largest admissible m.
    ``depth``: hidden layers of the model (``predict``, ``fits_memory``).
    """
    cand, base = methods
    params = dict(params or {})
    inner_iters = dict(inner_iters or {})
    dtype = dtype or profile.default_dtype
    itemsize = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    limit = profile.memory_bytes if memory_bytes is None else memory_bytes
    if outer_iters is not None:
        missing = [k for k in methods if k not in outer_iters]
        if missing:
            raise ConfigError(f"frontier: outer_iters has no count for {missing[0]!r}")
    rows = []
    for n in ns:
        row: dict[str, Any] = {"n": int(n), "m_per_iteration": None, "m_to_target": None,
                               "m_max_fits": None, "ratio_at_max": None}
        for m in sorted(ms):
            if not fits_memory(cand, params.get(cand), n, m, d, limit, itemsize, depth):
                break
            row["m_max_fits"] = int(m)
            t = {}
            for name in methods:
                if name == base and not fits_memory(base, params.get(base), n, m, d, limit,
                                                    itemsize, depth):
                    t[name] = math.inf
                    continue
                t[name] = predict(name, params.get(name), n, m, d, profile,
                                  inner_iters.get(name), dtype=dtype,
                                  kernels_mode=kernels_mode,
                                  refresh_every=refresh_every, depth=depth)["total"]
            row["ratio_at_max"] = t[base] / t[cand]
            if row["m_per_iteration"] is None and t[cand] < t[base]:
                row["m_per_iteration"] = int(m)
            if (outer_iters is not None and row["m_to_target"] is None
                    and outer_iters[cand] * t[cand] < outer_iters[base] * t[base]):
                row["m_to_target"] = int(m)
        rows.append(row)
    return pd.DataFrame(rows, columns=["n", "m_per_iteration", "m_to_target", "m_max_fits",
                                       "ratio_at_max"], dtype=object)


# --- predicted against measured ---------------------------------------------------------------

#: Ratio band counted as a good prediction.
GOOD_RATIO = 1.5


def _params_of(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("hyperparameters")
    if isinstance(raw, str) and raw:
        return dict(json.loads(raw))
    if isinstance(raw, Mapping):
        return dict(raw)
    return {}


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def predicted_vs_measured(cells: pd.DataFrame, profile: Profile,
                          dtype: str | None = None) -> pd.DataFrame:
    """One row per measured cell: predicted and measured seconds per iteration, their ratio.

    ``cells``: the report's per-cell table (``harness.reporting.metrics.cell_metrics``):
    algorithm, n, m, d, hyperparameters (JSON), time_per_iter_s (median), mean_step_time_s
    (amortised), mean_inner_iters, optionally dtype, ``depth`` (hidden layers; missing: 1)
    and ``refresh_every`` (outer steps per preconditioner build; else a run is taken to
    build once in ``n_steps`` steps). Methods
    with ``refresh=adaptive`` are compared on the amortised time, the others on the median.
    Cells without a time or of a method the model lacks are left out.
    """
    out = []
    for _, r in cells.iterrows():
        r = r.to_dict()
        alg = r.get("algorithm")
        if alg not in METHODS:
            continue
        params = _params_of(r)
        from algorithms.base import ALGORITHMS

        known = {f.name for f in dataclasses.fields(ALGORITHMS.get(alg).Params)}
        params = {k: v for k, v in params.items() if k in known}  # renamed since the run
        adaptive = params.get("refresh") == "adaptive"
        cols = (("time_per_iter_amortised_s", "mean_step_time_s") if adaptive
                else ("time_per_iter_median_s", "time_per_iter_s"))
        measured = next((r.get(c) for c in cols if _finite(r.get(c))), None)
        if not _finite(measured) or float(measured) <= 0:
            continue
        every = None
        if adaptive:
            every = r.get("refresh_every")
            if not _finite(every) and _finite(r.get("refresh_frac")) and r["refresh_frac"] > 0:
                every = 1.0 / float(r["refresh_frac"])  # measured: steps per rebuild
            if not _finite(every) and _finite(r.get("n_steps")):
                every = max(1.0, float(r["n_steps"]))
            every = float(every) if _finite(every) else None
        inner = r.get("mean_inner_iters")
        inner = float(inner) if _finite(inner) else None
        cell_dtype = dtype or (r.get("dtype") if isinstance(r.get("dtype"), str) else None)
        depth = int(r["depth"]) if _finite(r.get("depth")) else 1
        try:
            pred = predict(alg, params, int(r["n"]), int(r["m"]), int(r["d"]), profile,
                           inner, dtype=cell_dtype, refresh_every=every, depth=depth)
        except ConfigError:
            continue
        row = {"algorithm": alg, "hyperparameters": json.dumps(params, sort_keys=True),
               "n": int(r["n"]), "m": int(r["m"]), "d": int(r["d"]), "depth": depth,
               "dtype": cell_dtype or profile.default_dtype, "measure": "amortised" if adaptive
               else "median", "inner_iters": inner, "refresh_every": every,
               "measured_s": float(measured), "predicted_s": pred["total"],
               "ratio": pred["total"] / float(measured)}
        for key in ("variant", "store", "preset"):  # which sweep and preset, if known
            if key in r:
                row[key] = r[key]
        for phase, seconds in pred.items():
            if phase != "total":
                row[f"pred_{phase}"] = seconds
                meas = r.get(f"mean_t_{phase}")
                row[f"meas_{phase}"] = float(meas) if _finite(meas) else np.nan
        out.append(row)
    return pd.DataFrame(out)


def ratio_summary(rows: pd.DataFrame, band: float = GOOD_RATIO) -> dict[str, Any]:
    """Fraction of cells predicted within ``band``× (either way), median and worst ratio
    (predicted / measured; the worst is the one farthest from 1 on a log scale)."""
    if not len(rows):
        return {"cells": 0, "within": 0, "fraction_within": None, "band": band,
                "median_ratio": None, "worst_ratio": None, "worst_cell": None}
    ratio = rows["ratio"].astype(float)
    within = int(((ratio <= band) & (ratio >= 1 / band)).sum())
    worst = int(np.argmax(np.abs(np.log(ratio.to_numpy()))))
    w = rows.iloc[worst]
    return {"cells": len(rows), "within": within, "fraction_within": within / len(rows),
            "band": band, "median_ratio": float(ratio.median()),
            "worst_ratio": float(ratio.iloc[worst]),
            "worst_cell": f"{w['algorithm']} n={w['n']} m={w['m']} d={w['d']}"}


def predicted_vs_bench(report: Mapping[str, Any], profile: Profile) -> pd.DataFrame:
    """The same comparison for an ``nlt-bench --json`` report (per_iteration, crossover)."""
    meta = report.get("meta", {})
    dtype = meta.get("dtype", profile.default_dtype)
    rows = []

    def add(name: str, n: int, m: int, d: int, res: Mapping[str, Any], params=None,
            every=None):
        if "seconds" not in res:
            return
        inner = [k for k in res.get("inner_iters") or [] if k is not None]
        mean_inner = float(np.mean(inner)) if inner else None
        pred = predict(name, params, n, m, d, profile, mean_inner, dtype=dtype,
                       refresh_every=every)
        rows.append({"algorithm": name, "params": json.dumps(params or {}), "n": n, "m": m,
                     "d": d, "inner_iters": mean_inner, "measured_s": res["seconds"],
                     "predicted_s": pred["total"],
                     "ratio": pred["total"] / res["seconds"]})

    pi = report.get("per_iteration")
    if pi:
        for name, res in pi["methods"].items():
            if name in METHODS:
                add(name, pi["n"], pi["m"], pi["d"], res)
            elif name == "gn_sketch adaptive" and "seconds" in res:
                builds = sum(1 for x in res.get("refreshed") or [] if x)
                every = res["steps"] / max(builds, 1)
                add("gn_sketch", pi["n"], pi["m"], pi["d"], res, {"refresh": "adaptive"}, every)
    cr = report.get("crossover")
    if cr:
        for row in cr["rows"]:
            for name in ("gn_sketch", "gn_gram"):
                add(name, row["n"], row["m"], row["d"], row[name])
    return pd.DataFrame(rows)


# --- calibration ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CalibrationSizes:
    pattern: tuple[tuple[int, int], ...]  # (n, m) of D
    ks: tuple[int, ...]  # columns of the skinny products; also d of X Wᵀ
    square: tuple[int, ...]  # n of Cholesky and the triangular solve
    qr: tuple[tuple[int, int], ...]  # (s, n)
    elements: tuple[int, ...]  # elementwise pass and copy (elements of the dtype)
    fwht: tuple[tuple[int, int], ...]  # (rows, N)
    repeats: int
    budget_s: float  # per timing
    #: (n, m) of D far larger than any cache (1 GB in float32), for the products that read
    #: D once (X Wᵀ, D Z, Dᵀ Y) and stream from memory at the sizes of the crossover grid; a
    #: machine with a large last-level cache (260 MB here) would otherwise be calibrated on
    #: cache bandwidth alone. The Gram is compute-bound and is not timed there.
    stream: tuple[tuple[int, int], ...] = ()
    #: bytes of the fresh buffers ``fault`` is timed on: from below the allocator's reuse
    #: threshold to well past it (a step's n×m buffer reaches gigabytes).
    fault: tuple[int, ...] = ()
    #: (n, m, d, s/n) at which every sketch forms B = S Jᵀ, off the sweeps' grids; the
    #: sketches that pass over J's md-long rows only up to ``sketch_explicit_max`` = n·m·d
    sketch: tuple[tuple[int, int, int, float], ...] = ()
    sketch_explicit_max: float = 0.0


FULL_CAL = CalibrationSizes(
    pattern=((64, 512), (128, 2048), (256, 4096), (1024, 8192), (2048, 16384)), ks=(16, 64),
    square=(32, 128, 256, 1024, 2048),
    qr=((64, 32), (256, 64), (512, 128), (2048, 512), (4096, 1024)),
    elements=(1 << 14, 1 << 18, 1 << 22, 1 << 24, 1 << 26, 1 << 27),
    fwht=((4096, 1024), (256, 65536), (1024, 16), (1024, 4096), (1024, 65536)), repeats=5,
    budget_s=3.0, stream=((4096, 65536),),
    fault=(1 << 20, 1 << 22, 1 << 24, 1 << 25, 1 << 26, 1 << 28, 1 << 30),
    sketch=((96, 384, 16, 2.0), (320, 1280, 16, 8.0), (320, 1280, 64, 4.0),
            (192, 6144, 16, 2.0), (768, 3072, 16, 2.0), (768, 3072, 16, 8.0),
            (640, 20480, 16, 4.0), (1536, 12288, 16, 2.0), (1280, 81920, 16, 2.0),
            (3072, 24576, 16, 4.0), (48, 1536, 1536, 2.0)),
    sketch_explicit_max=float(1 << 25))
QUICK_CAL = CalibrationSizes(
    pattern=((32, 256), (64, 512)), ks=(8, 16), square=(32, 64, 128),
    qr=((128, 32), (256, 64)), elements=(1 << 10, 1 << 14, 1 << 16),
    fwht=((64, 256), (32, 1024)), repeats=5, budget_s=0.1, fault=(1 << 16, 1 << 20),
    sketch=((32, 64, 4, 2.0), (64, 128, 8, 4.0), (96, 256, 8, 2.0), (128, 192, 8, 8.0)),
    sketch_explicit_max=float(1 << 20))


#: A fresh buffer's extra time is a difference of two timings; below this it is noise.
FAULT_FLOOR_S = 1e-7
#: A timing repeats a fast kernel until this much time is spent (at most MAX_CALLS calls):
#: on a shared machine a single call can lose a scheduler slice, and the minimum of many
#: calls is the kernel's own time. 0.1 s gives the memory-bound passes over hundreds of
#: megabytes (15–30 ms a call) several tries; with 0.02 s a busy neighbour left one such
#: point 2.5× slow.
MIN_TIMED_S, MAX_CALLS = 0.1, 200


def _time(fn: Callable[[], object], device: torch.device, sizes: CalibrationSizes) -> float:
    """Minimum over at least ``sizes.repeats`` synchronised calls after one untimed call."""
    from harness.device import synchronize

    fn()
    synchronize(device)
    best, spent, calls = math.inf, 0.0, 0
    while calls < sizes.repeats or (spent < MIN_TIMED_S and calls < MAX_CALLS):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        dt = time.perf_counter() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
        if spent > sizes.budget_s and calls >= 2:
            break
    return best


def _measure_dtype(device: torch.device, dtype: torch.dtype, sizes: CalibrationSizes,
                   log: Callable[[str], None]) -> tuple[dict[str, Fit], dict[str, Any],
                                                         dict[str, str]]:
    """Every kernel's points and fit for one dtype; the pattern routes side by side."""
    gen = torch.Generator(device=device).manual_seed(0)
    points: dict[str, list[dict[str, float]]] = {k: [] for k in KERNELS}
    unavailable: dict[str, str] = {}
    routes: dict[str, list[dict[str, Any]]] = {p: [] for p in PRODUCT_KERNEL}

    def timed(fn):
        return _time(fn, device, sizes)

    _measure_patterns(points, routes, unavailable, gen, timed, device, dtype, sizes, log)
    _measure_dense(points, gen, timed, device, dtype, sizes)
    log(f"  {str(dtype)[6:]} factorisations, passes and transforms")
    _measure_sketches(points, timed, device, dtype, sizes)
    log(f"  {str(dtype)[6:]} sketches")
    fits = {name: fit_kernel(pts, KERNELS[name], anchor=name in ANCHORED_KERNELS)
            for name, pts in points.items() if pts}
    return fits, routes, unavailable


def _measure_patterns(points, routes, unavailable, gen, timed, device, dtype, sizes,
                      log) -> None:
    """The forward GEMM and every route of the products with D, at the pattern sizes."""
    kw = dict(device=device, dtype=dtype)
    for n, m in (*sizes.pattern, *sizes.stream):
        D = (torch.rand(n, m, generator=gen, device=device) > 0.5).to(dtype)
        X = torch.randn(n, max(sizes.ks), generator=gen, device=device).to(dtype)
        out = torch.empty(n, m, **kw)  # the product alone: a fresh buffer is ``fault``
        for k in sizes.ks:
            W, Xk = torch.randn(m, k, **kw), X[:, :k].contiguous()
            t = timed(lambda Xk=Xk, W=W, out=out: torch.matmul(Xk, W.T, out=out))
            points["xw"].append({"elements": n * m + (n + m) * k, "flops": 2 * n * m * k,
                                 "seconds": t})
        for product, prefix in PRODUCT_KERNEL.items():
            if product == "pattern_gram" and (n, m) in sizes.stream:
                continue
            spec = kernels.PRODUCTS[product]
            for k in ((0,) if product == "pattern_gram" else sizes.ks):
                ops = () if not k else (torch.randn(m if product == "pattern_mm" else n, k,
                                                    **kw),)
                P = kernels.Pattern(D)
                if product == "pattern_gram":
                    work = {"elements": n * m + n * n, "flops": 2 * n * n * m}
                else:
                    work = {"elements": n * m + (n + m) * k, "flops": 2 * n * m * k}
                rec: dict[str, Any] = {"n": n, "m": m, "k": k or None}
                for route, impl in spec.routes.items():
                    why = impl.unavailable(P, *ops)
                    if why:
                        unavailable[f"{prefix}_{route}"] = why
                        continue
                    if spec.cast_per_call:
                        t = timed(lambda impl=impl, ops=ops, D=D:
                                  impl.run(kernels.Pattern(D), *ops))
                    else:
                        _ = P.int8  # shared cast, as in a step
                        t = timed(lambda impl=impl, ops=ops, P=P: impl.run(P, *ops))
                    points[f"{prefix}_{route}"].append({**work, "seconds": t})
                    rec[f"{route}_s"] = t
                # the selector's own rule (tie margin, availability) on the times just taken
                selector = kernels.Selector("auto", timer=lambda name, fn, dev, rec=rec:
                                            rec[f"{name}_s"])
                rec["chosen"] = selector.choose(spec, kernels.Pattern(D), *ops)
                routes[product].append(rec)
        log(f"  {str(dtype)[6:]} pattern products at n={n} m={m}")
        del D, out


def _measure_dense(points, gen, timed, device, dtype, sizes) -> None:
    """Factorisations, triangular solves, elementwise passes, copies, page faults, FWHT."""
    kw = dict(device=device, dtype=dtype)
    for n in sizes.square:
        A = torch.randn(n, n, generator=gen, device=device).to(dtype)
        S = A @ A.T / n + torch.eye(n, **kw)
        points["cholesky"].append({"elements": n * n, "flops": n**3 / 3,
                                   "seconds": timed(lambda S=S: torch.linalg.cholesky(S))})
        L = torch.linalg.cholesky(S)
        b = torch.randn(n, 1, **kw)
        points["trsv"].append({"elements": n * n, "seconds": timed(
            lambda L=L, b=b: torch.linalg.solve_triangular(L, b, upper=False))})
    for s, n in sizes.qr:
        B = torch.randn(s, n, generator=gen, device=device).to(dtype)
        k = min(s, n)
        points["qr"].append({"elements": s * n, "flops": 2 * s * n * k - 2 * k**3 / 3,
                             "seconds": timed(lambda B=B: torch.linalg.qr(B, mode="r"))})
    itemsize = torch.empty((), dtype=dtype).element_size()
    for count in sizes.elements:
        x = torch.randn(count, generator=gen, device=device).to(dtype)
        y = torch.empty_like(x)
        points["elementwise"].append({"elements": count, "seconds": timed(
            lambda x=x: torch.relu_(x))})
        points["copy"].append({"bytes": 2 * count * itemsize, "seconds": timed(
            lambda x=x, y=y: y.copy_(x))})
    for nbytes in sizes.fault:
        count = nbytes // itemsize
        warm = torch.empty(count, **kw)
        t_warm = timed(lambda warm=warm: warm.fill_(1.0))
        del warm
        t_new = timed(lambda count=count: torch.empty(count, **kw).fill_(1.0))
        points["fault"].append({"bytes": count * itemsize,
                                "seconds": max(t_new - t_warm, FAULT_FLOOR_S)})
    from harness.hadamard import fwht

    for rows_, N in sizes.fwht:
        x = torch.randn(rows_, N, generator=gen, device=device).to(dtype)
        bits = _split_bits(N)
        points["fwht"].append({"elements": rows_ * N * len(bits),
                               "flops": 2 * rows_ * N * sum(1 << b for b in bits),
                               "seconds": timed(lambda x=x: fwht(x))})


def _measure_sketches(points, timed, device, dtype, sizes) -> None:
    """Each sketch's draw and B = S Jᵀ on a two-layer linearisation (``sketch_problem``, as
    gn_sketch's sketch phase runs it), at ``sizes.sketch``."""
    from algorithms.gn_sketch import sketch_size
    from harness.problem import make_generator, make_problem
    from harness.sketches import SKETCHES, sketch_problem

    for n, m, d, ratio in sizes.sketch:
        problem = make_problem("synthetic", n, d, m, seed=0, device=device, dtype=dtype)
        jac = problem.linearize().jacobian
        s = sketch_size(ratio, n)
        for name in SKETCHES:
            if f"sketch_{name}" not in KERNELS:  # a plugin's sketch: priced by its formula
                continue
            cls = SKETCHES.get(name)
            if cls.explicit and n * m * d > sizes.sketch_explicit_max:
                continue
            if cls.check_size(m, d, s):
                continue
            work = sketch_work(name, n, m, d, s)
            gen = make_generator(0, device)
            t = timed(lambda name=name, s=s, gen=gen, problem=problem, jac=jac:
                      sketch_problem(name, problem, s, gen).sketch_jacobian(jac))
            points[f"sketch_{name}"].append({**work, "seconds": t})
        del problem, jac


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def default_profile_path(device: torch.device, device_label: str, threads: int) -> Path:
    """reports/profiles/<device model>_<device type>[_<threads>t].json (threads on CPU)."""
    name = f"{slug(device_label)}_{device.type}"
    if device.type == "cpu":
        name += f"_{threads}t"
    return Path("reports") / "profiles" / f"{name}.json"


def calibrate(device: str = "cpu", dtypes: Sequence[str] = DTYPES, quick: bool = False,
              log: Callable[[str], None] = lambda s: None) -> Profile:
    """Measure this machine's kernel rates (see the module table) and return the profile."""
    from harness.bench import git_commit
    from harness.device import device_name, resolve_device, resolve_dtype, total_memory_bytes

    dev = resolve_device(device)
    sizes = QUICK_CAL if quick else FULL_CAL
    for dt in dtypes:
        resolve_dtype(dt)
    data: dict[str, Any] = {
        "schema": SCHEMA, "source": "measured (nlt-bench --calibrate)",
        "device": dev.type, "device_name": device_name(dev), "cpu": kernels.cpu_facts(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick, "default_dtype": dtypes[0], "memory_bytes": total_memory_bytes(dev),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "sizes": dataclasses.asdict(sizes), "kernels": {}, "routes": {}, "unavailable": {},
    }
    if dev.type == "cuda":
        cc = torch.cuda.get_device_capability(dev)
        data["cuda_capability"] = f"{cc[0]}.{cc[1]}"
    ladder = QUICK_LADDER if quick else LADDER
    data["ladder"] = {"sizes": [list(x) for x in ladder], "steps": LADDER_STEPS,
                      "step_limit_s": LADDER_STEP_S, "depths": [1, LADDER_DEPTH],
                      "points": {}}
    data["phase_curves"] = {}
    for dt in dtypes:
        fits, routes, unavailable = _measure_dtype(dev, resolve_dtype(dt), sizes, log)
        data["kernels"][dt] = {k: f.as_dict() for k, f in fits.items()}
        data["routes"][dt] = routes
        data["unavailable"][dt] = unavailable
        log(f"  {dt}: the step ladder (each method's own steps at n, m, d = "
            f"{', '.join(map(str, ladder))})")
        curves, raw = _measure_ladder(dev, dt, Profile(data), ladder, log,
                                      (1, LADDER_DEPTH))
        data["phase_curves"][dt] = curves
        data["ladder"]["points"][dt] = raw
    return Profile(data)


def run_calibration(device: str, dtypes: Sequence[str], quick: bool, out: Path | None,
                    log: Callable[[str], None] = print) -> Path:
    """``nlt-bench --calibrate``: measure, write the profile, return its path."""
    prof = calibrate(device, dtypes, quick, log)
    if out is None:
        out = default_profile_path(torch.device(prof.data["device"]),
                                   prof.data["device_name"], prof.data["threads"])
    return prof.save(out)


def render_profile(prof: Profile) -> str:
    """The fitted rates as a short table (GFLOP/s, G elements/s, GB/s, overhead µs)."""
    d = prof.data
    lines = [f"profile  {d.get('device_name')} ({d.get('device')}, {d.get('threads')} threads)"
             f"  source: {d.get('source')}"]
    for dtype, table in prof.fits.items():
        lines.append(f"  {dtype}")
        for name, fit in table.items():
            rates = "  ".join(
                f"{kind} {'-' if r is None else f'{r / 1e9:.3g} G/s'}"
                for kind, r in fit.rates.items())
            lines.append(f"    {name:<12} overhead {fit.overhead_s * 1e6:8.1f} us  {rates}")
    return "\n".join(lines)


def render_predictions(prof: Profile, n: int, m: int, d: int, dtype: str | None = None) -> str:
    """Every modelled method's predicted seconds per iteration at (n, m, d), with phases."""
    lines = [f"predicted seconds per outer iteration  n={n} m={m} d={d}  "
             f"({prof.data.get('source')}, {prof.data.get('device_name')})"]
    for name in METHODS:
        t = predict(name, {}, n, m, d, prof, dtype=dtype)
        phases = "  ".join(f"{k} {v:.3g}" for k, v in t.items() if k != "total")
        lines.append(f"  {name:<11} {t['total']:10.4g} s   {phases}")
    return "\n".join(lines)


@functools.lru_cache(maxsize=8)
def _profiles_in(folder: str) -> tuple[Profile, ...]:
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            out.append(Profile.load(path))
        except ConfigError:
            continue  # an unreadable profile is no profile of this machine
    return tuple(out)


def newest_measured(profiles, device_names, device_type: str | None = None) -> Profile | None:
    """The most recent measured (not datasheet) profile among ``profiles`` whose device name
    is one of ``device_names`` (and whose device type is ``device_type`` if given)."""
    mine = [p for p in profiles if not p.is_datasheet
            and p.data.get("device_name") in device_names
            and (device_type is None or p.data.get("device") == device_type)]
    return max(mine, key=lambda p: str(p.data.get("date", "")), default=None)


def machine_profile(choice: str, device: torch.device) -> Profile | None:
    """The measured profile to predict this machine with: ``choice`` is a path, or "auto"
    for the newest measured profile in reports/profiles/ whose device name and type are this
    machine's (None if there is none)."""
    if choice != "auto":
        return Profile.load(choice)
    from harness.device import device_name
    from harness.results import REPO_ROOT

    return newest_measured(_profiles_in(str(REPO_ROOT / "reports" / "profiles")),
                           {device_name(device)}, device.type)
