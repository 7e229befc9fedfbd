"""What every algorithm plugin provides, and the registry that finds it by name.

An algorithm is one class in one file (benchopt's solver, torch.optim's optimizer), and that
file holds every fact the harness needs about it:

* ``name``: the registry key, also ``conf/algorithm/<name>.yaml`` (optional for a plugin);
* ``Params``: a dataclass of hyperparameters with defaults, also the Hydra schema;
* ``references``: the papers the update rule comes from;
* ``step(phase)``: one outer iteration, moving the parameters by ``problem.update`` (or
  torch.optim on ``problem.params``) and returning a ``StepInfo``; the runner owns the clock,
  stopping and recording, and the algorithm marks its phases with ``with phase("solve"):``;
* ``memory_bytes(params, shape)``: the planned peak memory, which the runner compares with the
  budget (``skip`` may refuse for other reasons, returning a sentence instead of crashing);
* ``requires``: the model structure it needs (``harness.model.TWO_LAYER`` for K-FAC); on a
  model without it the runner skips the cell with the reason;
* flops (the report's fits): ``cost_terms(n, m, d, params, inner, refresh)`` on the two-layer
  model and ``cost_text``; callers ask ``flops(...)``, which maps them to the cell's model;
* seconds (the cost model, ``harness.costmodel``): ``step_seconds(c, params, n, m, d, inner)``,
  the seconds of each phase of one step from the kernels of a profile (``c``: a
  ``harness.costmodel.Costs``), with ``refresh_phases`` (built once per preconditioner refresh
  and amortised), ``default_inner_iters`` (when no count is measured), ``phase_key`` (a phase
  whose operation a parameter picks) and ``ladder_runs`` (the parameter sets the calibration's
  step ladder runs this method with);
* ``family`` and ``reports_inner_iters`` say how reports group it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from harness.common.device import format_bytes
from harness.common.errors import ConfigError
from harness.common.flops import Term
from harness.common.registry import Registry
from harness.model import MODELS, Problem, Shape

#: The public API of a method plugin (docs/extending.md, "The plugin API"); a plugin may
#: rely on these names, and on those of ``algorithms.solvers.__all__``.
__all__ = ["ALGORITHMS", "Algorithm", "EpochBatches", "Shape", "StepInfo", "base_memory",
           "check_number_or_auto", "check_positive_int", "param_defaults", "register",
           "require"]


@dataclass
class StepInfo:
    """What a step reports beyond its time: inner iterations (CG, …) and free-form extras."""

    inner_iters: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def base_memory(shape: Shape) -> int:
    """What every method holds: the model's memory plan (data, parameters, one
    linearisation; ``Model.memory_bytes``)."""
    return shape.model_class.memory_bytes(shape)


class Algorithm:
    """A training method: subclass it, set ``name`` and ``Params``, write ``step(phase)``,
    and register it (``@register``); the module docstring lists what else it may say."""

    name: ClassVar[str]
    Params: ClassVar[type]
    references: ClassVar[tuple[str, ...]] = ()
    #: ``first_order`` or ``gauss_newton``: reports group methods by family.
    family: ClassVar[str] = "first_order"
    #: True when ``StepInfo.inner_iters`` counts iterations of an inner linear solve (CG),
    #: which the report draws against n (claim C3's figure).
    reports_inner_iters: ClassVar[bool] = False
    #: The flop model of ``cost_terms`` as the report's tables print it.
    cost_text: ClassVar[str] = ""
    #: Model structure the method needs (``harness.model.TWO_LAYER``: K-FAC's factors);
    #: empty: any model of the ``Problem`` protocol.
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Phases built once per preconditioner refresh (``refresh=adaptive`` amortises them over
    #: the steps that reuse it); empty: every phase runs every step.
    refresh_phases: ClassVar[tuple[str, ...]] = ()
    #: The parameter sets the calibration's step ladder runs this method with (step sizes
    #: small, so its steps stay steps of the same work); empty: no ladder (kernels only).
    ladder_runs: ClassVar[tuple[dict[str, Any], ...]] = ()

    def __init__(self, problem: Problem, params: Any, generator: torch.Generator):
        self.problem = problem
        self.params = params
        self.generator = generator  # the algorithm's own random stream (batches, sketches)

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def cost_terms(cls, n: float, m: float, d: float, params: dict[str, Any],
                   inner: float | None, refresh: float) -> list[Term] | None:
        """Flops of one outer iteration at sizes n, m, d, term by term (``harness.common.flops``).

        ``params`` are a cell's recorded hyperparameters (a dict; a missing key takes the
        model's default), ``inner`` its measured mean inner iterations per step (None when
        not recorded), ``refresh`` its share of steps that rebuilt a preconditioner. None: no
        model, or one that needs ``inner`` and has none; the report then fits without theory.
        """
        return None

    @classmethod
    def flops(cls, n: float, m: float, d: float, params: dict[str, Any], inner: float | None,
              refresh: float, depth: int = 1, model: str = "two_layer") -> list[Term] | None:
        """``cost_terms`` on ``model`` at ``depth`` hidden layers (``Model.flop_terms``), with
        the Params defaults under ``params``: what every caller uses. None where
        ``cost_terms`` is, where the model has no flop model at that depth, and on a model
        without the structure the method needs (``requires``)."""
        if not (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 1):
            raise ConfigError(f"depth must be a positive integer, got {depth!r}")
        model_cls = MODELS.get(model)
        if not cls.requires <= model_cls.features:
            return None
        terms = cls.cost_terms(n, m, d, cls.with_defaults(params), inner, refresh)
        return None if terms is None else model_cls.flop_terms(terms, m, d, depth)

    @classmethod
    def with_defaults(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The Params defaults overlaid with those of ``params`` the Params know."""
        return {**param_defaults(cls.Params),
                **{k: v for k, v in params.items() if k in param_defaults(cls.Params)}}

    # --- seconds: the cost model's facts (harness.costmodel) ------------------------------

    @classmethod
    def step_seconds(cls, c, p: dict[str, Any], n: int, m: int, d: int,
                     inner: float) -> dict[str, float] | None:
        """Seconds of each phase of one step on a kernel profile, in the phases and with the
        operations of ``step``: ``c`` is a ``harness.costmodel.Costs`` (its kernels and the
        model's operators: ``c.forward``, ``c.rmatvec``, ``c.gram_apply``, ``c.cg``, …),
        ``p`` the validated parameters, ``inner`` the inner iterations per step. A phase of
        ``refresh_phases`` is given per build (the caller amortises it). None: no cost
        model for this method."""
        return None

    @classmethod
    def default_inner_iters(cls, n: int, params: dict[str, Any]) -> float:
        """Inner (CG) iterations per step when no measured count is given."""
        return 0.0

    @classmethod
    def phase_key(cls, params: dict[str, Any], phase: str) -> str:
        """The name a phase's ladder curve is kept under: the phase, or the phase and the
        parameter that picks its operation (gn_sketch's ``sketch:<name>``)."""
        return phase

    @classmethod
    def memory_bytes(cls, params: Any, shape: Shape) -> int:
        """Planned peak memory of a run; override where the method needs more than a step."""
        return base_memory(shape)

    @classmethod
    def required_features(cls, params: Any) -> frozenset[str]:
        """The model structure this configuration needs (``requires`` unless a parameter
        changes it, e.g. a sketch that needs the two-layer factors)."""
        return cls.requires

    @classmethod
    def skip(cls, params: Any, shape: Shape, budget_bytes: int) -> str | None:
        """A reason not to run (None: run). Default: the model lacks a structure the method
        needs, or the memory estimate exceeds the budget."""
        missing = cls.required_features(params) - shape.features
        if missing:
            return (f"{cls.name} needs the {', '.join(sorted(missing))} structure, which "
                    f"model={shape.model} does not have")
        need = cls.memory_bytes(params, shape)
        if need > budget_bytes:
            return (f"{cls.name} needs about {format_bytes(need)} ({need} bytes) at n={shape.n}, "
                    f"m={shape.m}, d={shape.d}, above the memory budget of "
                    f"{format_bytes(budget_bytes)}")
        return None

    def setup(self, phase) -> None:
        """Work done once before the first step (timed apart from the steps, counted in the
        time to target). Process start-up that is not the method's cost on this problem (a
        library's first call) goes in ``with phase("warmup")``: recorded as
        ``warmup_time_s`` and left out of the setup time."""

    def step(self, phase) -> StepInfo:
        raise NotImplementedError


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm", "algorithms", "nlt.algorithms")


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: add an algorithm to the registry under ``cls.name``."""
    return ALGORITHMS.register(cls)


class EpochBatches:
    """Mini-batches of b row indices without replacement: a fresh permutation of the n rows
    every epoch (a short tail is dropped), drawn from the algorithm's own random stream."""

    def __init__(self, n: int, b: int, generator: torch.Generator, device: torch.device):
        self.n, self.b, self.generator, self.device = n, b, generator, device
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0

    def next(self) -> torch.Tensor:
        if self._cursor + self.b > self._order.numel():
            gen = self.generator
            self._order = torch.randperm(self.n, generator=gen, device=gen.device)
            self._cursor = 0
        rows = self._order[self._cursor:self._cursor + self.b]
        self._cursor += self.b
        return rows.to(self.device)


# --- parameter checks ---------------------------------------------------------------------------
# Called from the ``__post_init__`` of a Params dataclass, so that a bad value is refused by the
# pre-flight (harness.execution.config.resolve builds the dataclass) before a sweep starts.


def require(ok: bool, key: str, rule: str, value: Any) -> None:
    """``algorithm.<key> must be <rule>, got <value>`` as a ConfigError unless ``ok``."""
    if not ok:
        raise ConfigError(f"algorithm.{key} must be {rule}, got {value!r}")


def check_positive_int(key: str, value: Any) -> None:
    """An int ≥ 1 (not a bool)."""
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key,
            "a positive integer", value)


def check_number_or_auto(key: str, value: Any) -> None:
    """A positive number, or the string 'auto'."""
    if value == "auto":
        return
    try:
        ok = float(value) > 0
    except (TypeError, ValueError):
        ok = False
    require(ok, key, "a positive number or 'auto'", value)


def param_defaults(params_cls: type) -> dict[str, Any]:
    """``{field: default}`` of a Params dataclass."""
    return {f.name: f.default for f in fields(params_cls)}
