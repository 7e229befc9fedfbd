"""What every algorithm plugin provides, and the registry that finds it by name.

An algorithm is one class in one file (benchopt's solver, torch.optim's optimizer):

* ``name``: the registry key, also ``conf/algorithm/<name>.yaml``;
* ``Params``: a dataclass of hyperparameters with defaults, also the Hydra schema;
* ``references``: the papers the update rule comes from;
* ``cost_terms(n, m, d, params, inner, refresh)`` and ``cost_text``: its flops per outer
  iteration on the two-layer model as terms (``harness.flops``) and as the tables print them;
  callers ask ``flops(..., depth)``, which maps them to L hidden layers and which the report
  fits measured times against; ``family`` and ``reports_inner_iters`` say how reports group it;
* ``memory_bytes(params, shape)``: the planned peak memory, which the runner compares with the
  budget (``skip`` may refuse for other reasons, returning a sentence instead of crashing);
* ``requires``: the model structure it needs (``harness.problem.TWO_LAYER`` for K-FAC);
  on a model without it the runner skips the cell with the reason;
* ``step(phase)``: one outer iteration, moving the parameters by ``problem.update`` (or
  torch.optim on ``problem.params``) and returning a
  ``StepInfo``; the runner owns the clock, stopping and recording, and the algorithm marks its
  phases with ``with phase("solve"): ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from harness.device import format_bytes
from harness.errors import ConfigError
from harness.flops import Term, deepen
from harness.problem import TWO_LAYER, Problem, TwoLayerReLU
from harness.registry import Registry


@dataclass(frozen=True)
class Shape:
    """The sizes a feasibility check sees before anything is allocated."""

    n: int
    m: int
    d: int
    itemsize: int = 4  # bytes per element of the working dtype
    depth: int = 1  # trained hidden layers (1: the two-layer model)
    model: str = "two_layer"
    features: frozenset[str] = TwoLayerReLU.features  # the model's structure tags

    def bytes(self, elements: float) -> int:
        return int(elements * self.itemsize)

    @property
    def num_params(self) -> int:
        """P: m·d for the first layer plus m² for each further hidden layer."""
        return self.m * self.d + (self.depth - 1) * self.m * self.m


@dataclass
class StepInfo:
    """What a step reports beyond its time: inner iterations (CG, …) and free-form extras."""

    inner_iters: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def base_memory(shape: Shape) -> int:
    """X, y, W, W0, a, plus one linearisation (the n×m pattern D, its one-byte mask and the
    mask's int8 copy for the integer products of ``harness.problem``) and an m×d gradient
    with the n×d product it is reduced from (tests/test_contract.py measures the lot)."""
    n, m, d, P = shape.n, shape.m, shape.d, shape.num_params
    # deeper models (harness/mlp.py) keep, per further layer, its activations H and scaled
    # signals K, and build per layer an n×m temporary of the backward pass or of a product
    # (g ⊙ K, p ⊙ B) and a layer-sized share of Jᵀg beside the full P-sized result
    deeper = (shape.depth - 1) * (4 * n * m + 2 * P)
    return shape.bytes(n * d + n + 3 * P + m + n * m + 2 * n + n * d + deeper) + 2 * n * m


class Algorithm:
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
    #: Model structure the method needs (``harness.problem.TWO_LAYER``: K-FAC's factors);
    #: empty: any model of the ``Problem`` protocol.
    requires: ClassVar[frozenset[str]] = frozenset()

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
        """Flops of one outer iteration at sizes n, m, d, term by term (``harness.flops``).

        ``params`` are a cell's recorded hyperparameters (a dict; a missing key takes the
        model's default), ``inner`` its measured mean inner iterations per step (None when
        not recorded), ``refresh`` its share of steps that rebuilt a preconditioner. None: no
        model, or one that needs ``inner`` and has none; the report then fits without theory.
        """
        return None

    @classmethod
    def flops(cls, n: float, m: float, d: float, params: dict[str, Any], inner: float | None,
              refresh: float, depth: int = 1) -> list[Term] | None:
        """``cost_terms`` at ``depth`` hidden layers of width m (``harness.flops.deepen``):
        what every caller uses. None where ``cost_terms`` is, and beyond depth 1 for a method
        that needs the two-layer structure (``requires``)."""
        if not (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 1):
            raise ConfigError(f"depth must be a positive integer, got {depth!r}")
        if depth > 1 and TWO_LAYER in cls.requires:
            return None
        terms = cls.cost_terms(n, m, d, params, inner, refresh)
        return None if terms is None else deepen(terms, m, d, depth)

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
    return ALGORITHMS.register(cls.name)(cls)


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
# pre-flight (harness.config.resolve builds the dataclass) before any job of a sweep starts.


def require(ok: bool, key: str, rule: str, value: Any) -> None:
    """``algorithm.<key> must be <rule>, got <value>`` as a ConfigError unless ``ok``."""
    if not ok:
        raise ConfigError(f"algorithm.{key} must be {rule}, got {value!r}")


def check_positive_int(key: str, value: Any) -> None:
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
    return {f.name: f.default for f in fields(params_cls)}
