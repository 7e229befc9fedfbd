"""Cost-model profiles: a machine's fitted kernel rates (``Fit``) in one JSON file
(``Profile``), the kinds of work of every kernel, and the size curves between fitted sizes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.base import ALGORITHMS, Algorithm
from harness.common.device import device_name
from harness.common.errors import ConfigError
from harness.common.io import write_json
from harness.common.provenance import REPO_ROOT
from harness.model import MODELS
from harness.sketches import SKETCHES

SCHEMA = "nlt-costmodel/1"
DTYPES = ("float32", "float64")
DATASHEET_SOURCE = "datasheet (prediction, not measured)"

#: Kinds of work per kernel of the machine, in the order of the fit's columns (a sketch's own
#: kernel ``sketch_<name>`` comes from its class: ``kernel_table``).
BASE_KERNELS: dict[str, tuple[str, ...]] = {
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
}
#: Kernels fitted through their largest point (``fit_kernel``'s ``anchor``).
ANCHORED_KERNELS = ("fault",)
#: harness.linalg.kernels product → the profile's kernel name prefix.
PRODUCT_KERNEL = {"pattern_gram": "gram", "pattern_mm": "mm", "pattern_rmm": "rmm"}


def modelled(method: str) -> bool:
    """Whether ``method`` has a cost model (declares ``step_seconds``)."""
    return ALGORITHMS.get(method).step_seconds.__func__ is not Algorithm.step_seconds.__func__


def modelled_methods() -> list[str]:
    """The registered methods with a cost model."""
    return [name for name in ALGORITHMS.names() if modelled(name)]


def ladder_keys(models: Sequence[str]) -> set[str]:
    """The ladder curves a calibration of this code measures on ``models``: every modelled
    method that the model supports (its ``requires`` within the model's features)."""
    return {ladder_key(name, model) for model in models if model in MODELS
            for name in modelled_methods()
            if ALGORITHMS.get(name).requires <= MODELS.get(model).features}


def ladder_key(method: str, model: str) -> str:
    """Where a method's ladder curves are kept: its name for the two-layer model, and
    ``<name>@<model>`` for another model (the MLP's measured at one depth serve all)."""
    return method if model == "two_layer" else f"{method}@{model}"


def sketch_kernel(name: str) -> str:
    """The profile's name of sketch ``name``'s own kernel."""
    return f"sketch_{name}"


def sketch_kernels() -> dict[str, tuple[str, ...]]:
    """The sketches' own kernels (B = S Jᵀ timed whole, the draw included): every registered
    sketch that declares ``kernel_kinds``."""
    return {sketch_kernel(name): SKETCHES.get(name).kernel_kinds for name in SKETCHES
            if SKETCHES.get(name).kernel_kinds}


def kernel_table() -> dict[str, tuple[str, ...]]:
    """Every kernel a calibration fits, with its kinds of work."""
    return {**BASE_KERNELS, **sketch_kernels()}


def optional_kernels() -> tuple[str, ...]:
    """Kernels a profile may lack (older and datasheet profiles): a fresh allocation then
    costs nothing, a sketch is priced by its ``seconds`` formula from the other kernels."""
    return ("fault", *sketch_kernels())


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


def ladder_factor(curve: Sequence[Sequence[float]], x: float) -> float:
    """A step-ladder curve's factor at ``x`` (model seconds per occurrence of a phase):
    ``curve_factor`` within and below the ladder; above its top point (x_top, f_top) the
    correction is held as *seconds*, not as a ratio: 1 + (f_top − 1)·x_top / x.

    What the ladder measures beyond the kernels (dispatch and Python per call, temporaries,
    allocator state; docs/costmodel.md) does not grow with the phase's work, so a ratio found
    at the ladder's top multiplied into a phase a hundred times larger predicts work that is
    not there. Revision 2 of the cost model (2026-12-03): the first held-out set (d = 24,
    seeds 11–12) found gn_cg's ladder ratio of 2.8 at a 2.5 ms forward pass held up to 0.8 s
    forward passes that ran at the kernel model's time (49/63 within 1.5× held as a ratio).
    """
    if curve and x > 0:
        x_top, f_top = float(curve[-1][0]), float(curve[-1][1])
        if x > x_top:
            return 1.0 + (f_top - 1.0) * x_top / x
    return curve_factor(curve, x)


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
            sketches = [k for k in sketch_kernels() if k not in table]
            if sketches and not self.is_datasheet:
                out.append(f"{dtype}: no {', '.join(sketches)} kernel (those sketches priced "
                           f"pass by pass)")
            curves = self.data.get("phase_curves", {})
            if not self.is_datasheet and dtype not in curves:
                out.append(f"{dtype}: no step ladder (kernels only, no per-phase "
                           f"correction)")
            elif not self.is_datasheet:
                # the models it laddered: two_layer, and those named in its <method>@<model> keys
                models = {"two_layer"} | {k.split("@")[1] for k in curves[dtype] if "@" in k}
                missing = sorted(ladder_keys(sorted(models)) - set(curves[dtype]))
                if missing:
                    out.append(f"{dtype}: no step ladder for {', '.join(missing)} (modelled "
                               f"after this calibration: kernels only for them)")
            if (not self.is_datasheet and "inner_model" not in self.data
                    and dtype == self.default_dtype):
                out.append("no inner-iteration model (calibrated before it): k and f "
                           "predicted from the ladder's recorded k, adaptive drift 1 and "
                           "rebuild 0 assumed; without a ladder, each method's default k")
            flat = sorted(k for k, f in table.items() if not f.curve)
            if flat:
                out.append(f"{dtype}: no size curve for {', '.join(flat)} (one rate at "
                           f"every size)")
        return out

    def has(self, name: str, dtype: str) -> bool:
        return name in self.fits.get(dtype, {})

    def phase_curves(self, method: str, dtype: str, model: str = "two_layer"
                     ) -> dict[str, list[list[float]]]:
        """The step ladder's correction curves of ``method`` on ``model`` (the two-layer ones
        where the profile has no ladder of that model): {phase key: [[model seconds per
        occurrence, measured / model], ...]}; empty for a profile without a ladder."""
        table = self.data.get("phase_curves", {}).get(dtype, {})
        return dict(table.get(ladder_key(method, model)) or table.get(method) or {})

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
        return write_json(path, self.to_dict(), indent=2)

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
        for name, kinds in kernel_table().items():
            if name.endswith("_int8") and int8_speedup is None:
                continue
            if name in optional_kernels() and name not in per_kernel:
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


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def default_profile_path(device: torch.device, device_label: str, threads: int) -> Path:
    """reports/profiles/<device model>_<device type>[_<threads>t].json (threads on CPU)."""
    name = f"{slug(device_label)}_{device.type}"
    if device.type == "cpu":
        name += f"_{threads}t"
    return Path("reports") / "profiles" / f"{name}.json"


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


def profiles_in(folder: str | Path) -> tuple[Profile, ...]:
    """Every readable profile among ``folder``'s JSON files (others, such as link files, are
    left out)."""
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
    return newest_measured(profiles_in(REPO_ROOT / "reports" / "profiles"),
                           {device_name(device)}, device.type)
