"""The contract every registered method keeps, checked over the whole registry.

What a method must provide for the harness to run, fit, draw and document it, from its class
alone: its YAML equals its Params defaults (the check of ``tests/test_presets.py``, reused),
references, a flop model (``cost_terms``, ``cost_text``) that is positive at a small size, a
planned memory that covers the tensors it allocates, reproducible steps, an entry in
``nlt-list``, and a row with a theory slope in the scaling fits of a report. Each check is a
function of the class, so a method that does not come from this repository (an entry-point
plugin, ``tests/test_plugin.py``) is checked by the same code; a toy class without a cost
model shows the contract fails where it should.
"""

from __future__ import annotations

import gc
import json
import warnings
import weakref

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from algorithms.base import (
    ALGORITHMS,
    Algorithm,
    Shape,
    StepInfo,
    base_memory,
    param_defaults,
)
from harness.common.timing import NullClock
from harness.execution.config import CONF_DIR
from harness.execution.listing import list_algorithms
from harness.model import TWO_LAYER, make_problem
from harness.reporting import fits
from tests.test_presets import test_method_yaml_equals_params_defaults as yaml_equals_defaults

#: A small problem: every method steps on it in milliseconds.
N, M, D = 32, 256, 8
#: Measured inner iterations and refresh share the cost models are evaluated with.
INNER, REFRESH = 3.0, 1.0
#: Sizes of the synthetic scaling table (``fits.MIN_SIZES`` of them).
FIT_NS = (64, 128, 256, 512, 1024)


def _problem(n: int = N, m: int = M):
    return make_problem("synthetic", n=n, d=D, m=m, seed=0, dtype=torch.float64)


def _steps(cls: type[Algorithm], problem, steps: int = 2) -> torch.Tensor:
    alg = cls(problem, cls.Params(), torch.Generator().manual_seed(3))
    alg.setup(NullClock())
    for _ in range(steps):
        info = alg.step(NullClock())
        assert isinstance(info, StepInfo)
    return problem.params


class TensorBytes(TorchDispatchMode):
    """Peak bytes of the CPU tensor storages created while the mode is on (views and in-place
    results share their storage and count once; storages alive before it started are not
    counted). torch keeps no allocator statistics on the CPU, and tracemalloc does not see
    its allocations: this counts what the operators return, which is what a plan can know."""

    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():  # isinstance on deprecated torch objects warns
            warnings.simplefilter("ignore")
            self._before = {t.untyped_storage().data_ptr() for t in gc.get_objects()
                            if isinstance(t, torch.Tensor)}
        self._refs: dict[int, int] = {}
        self._bytes: dict[int, int] = {}
        self.live = self.peak = 0

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if not self._refs[key]:
            del self._refs[key]
            self.live -= self._bytes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self._before or not storage.nbytes():
                continue
            if key not in self._refs:
                self._refs[key], self._bytes[key] = 0, storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self._refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


# --- the checks: each takes a method's class ----------------------------------------------------


def check_yaml(cls: type[Algorithm]) -> None:
    """conf/algorithm/<name>.yaml equals the Params defaults; a plugin may have no YAML (its
    schema is the config), a method of this repository may not."""
    if (CONF_DIR / "algorithm" / f"{cls.name}.yaml").exists():
        yaml_equals_defaults(cls.name)
    else:
        assert not cls.__module__.startswith("algorithms."), f"{cls.name} has no YAML"


def check_references(cls: type[Algorithm]) -> None:
    assert cls.references and all(isinstance(r, str) and r.strip() for r in cls.references), \
        f"{cls.name} names no reference"


def check_cost_model(cls: type[Algorithm]) -> None:
    """Terms that are all positive at a small size, with measured k and f given, and their text."""
    params = param_defaults(cls.Params)
    terms = cls.flops(float(N), float(M), float(D), params, INNER, REFRESH)
    assert terms, f"{cls.name} has no cost model (cost_terms)"
    assert all(t.value > 0 and set(t.exponents) == {"n", "m", "d"} for t in terms), terms
    assert cls.cost_text, f"{cls.name} has no cost_text"
    assert isinstance(cls.reports_inner_iters, bool)
    # at depth 2 (the MLP): more flops than the two-layer model, or no model where the method
    # needs the two-layer structure
    deep = cls.flops(float(N), float(M), float(D), params, INNER, REFRESH, depth=2,
                     model="mlp")
    if TWO_LAYER in cls.requires:
        assert deep is None, f"{cls.name} needs two layers but has flops at depth 2"
    else:
        assert deep and sum(t.value for t in deep) > sum(t.value for t in terms), cls.name
    assert cls.family in ("first_order", "gauss_newton", "approximate_natural_gradient")


def check_memory_plan(cls: type[Algorithm]) -> None:
    """The plan covers the problem's tensors plus the peak of those a setup and two steps
    allocate, and grows with n and with m."""
    params = cls.Params()
    plan = cls.memory_bytes(params, Shape(N, M, D, itemsize=8))
    _steps(cls, _problem())  # first calls (kernel choice, library start-up) outside the count
    problem = _problem()
    held = sum(t.untyped_storage().nbytes()
               for t in (problem.X, problem.y, problem.W, problem.W0, problem.a))
    with TensorBytes() as measured:
        _steps(cls, problem)
    assert plan >= held + measured.peak, (cls.name, plan, held, measured.peak)
    assert plan >= base_memory(Shape(N, M, D, itemsize=8))
    for bigger in (Shape(2 * N, M, D, 8), Shape(N, 2 * M, D, 8)):
        assert cls.memory_bytes(params, bigger) > plan, (cls.name, bigger)


def check_memory_plan_deep(cls: type[Algorithm]) -> None:
    """On the MLP (depth 2, ``model=mlp``) the plan covers what a setup and two steps
    allocate too, or the method declares the structure it lacks and is skipped."""
    params = cls.Params()
    deep = make_problem("synthetic", n=N, d=D, m=M // 4, seed=0, dtype=torch.float64,
                        model="mlp", depth=2)
    shape = Shape(N, M // 4, D, itemsize=8, depth=2, model="mlp", features=deep.features)
    if not cls.required_features(params) <= deep.features:
        assert "structure" in cls.skip(params, shape, 1 << 40), cls.name
        return
    plan = cls.memory_bytes(params, shape)
    _steps(cls, make_problem("synthetic", n=N, d=D, m=M // 4, seed=0, dtype=torch.float64,
                             model="mlp", depth=2))
    held = sum(t.untyped_storage().nbytes()
               for t in (deep.X, deep.y, deep.params, deep.params0, deep.a))
    with TensorBytes() as measured:
        _steps(cls, deep)
    assert plan >= held + measured.peak, (cls.name, plan, held, measured.peak)


def check_deterministic(cls: type[Algorithm]) -> None:
    """Two runs from the same seeds give the same W after two steps, bit for bit."""
    first, second = _steps(cls, _problem()), _steps(cls, _problem())
    assert torch.equal(first, second), f"{cls.name}: two runs from one seed differ"


def check_listed(cls: type[Algorithm]) -> None:
    assert f"  {cls.name} [{cls.family}]: " in list_algorithms(), f"{cls.name} not in nlt-list"


def synthetic_cells(cls: type[Algorithm], m: int = 1024) -> pd.DataFrame:
    """A cells table over ``FIT_NS`` whose times follow the method's own model (two seeds, a
    few percent of noise): what ``nlt-report`` would fit."""
    params = param_defaults(cls.Params)
    rng = np.random.default_rng(0)
    rows = []
    for n in FIT_NS:
        flops = sum(t.value for t in cls.flops(float(n), float(m), float(D), params,
                                               INNER, REFRESH))
        for seed in (0, 1):
            rows.append({"variant": cls.name, "algorithm": cls.name, "device": "cpu",
                         "dataset": "synthetic", "data_params": "{}", "d": D,
                         "dtype": "float64", "n": n, "m": m, "seed": seed,
                         "status": "converged", "hyperparameters": json.dumps(params),
                         "mean_inner_iters": INNER, "refresh_frac": REFRESH,
                         fits.TIME_COLUMN: 1e-9 * flops * (1 + 0.02 * rng.random())})
    return pd.DataFrame(rows)


def check_fitted(cls: type[Algorithm]) -> None:
    """The report's C2 fits give the method a row in n with a theory slope it agrees with."""
    table = fits.scaling_fits(synthetic_cells(cls), "n", min_time_s=0.0)
    (row,) = table[table["algorithm"] == cls.name].itertuples()
    assert np.isfinite(row.theory) and row.agrees, (cls.name, row)


CHECKS = {check.__name__[len("check_"):]: check for check in (
    check_yaml, check_references, check_cost_model, check_memory_plan, check_memory_plan_deep,
    check_deterministic, check_listed, check_fitted)}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_contract(name, check):
    CHECKS[check](ALGORITHMS.get(name))


class NoCostModel(Algorithm):
    """A toy without a flop model: gradient descent that declares nothing else."""

    name = "no_cost_model"
    Params = ALGORITHMS.get("gd").Params
    references = ("none",)

    def step(self, phase) -> StepInfo:
        lin = self.problem.linearize()
        self.problem.update(lin.jacobian.rmatvec(lin.residual), 0.1)
        return StepInfo()


def test_contract_fails_for_a_method_without_a_cost_model():
    with pytest.raises(AssertionError, match="has no cost model"):
        check_cost_model(NoCostModel)
    assert fits.cost_terms(NoCostModel.name, N, M, D, {}, INNER) is None  # not registered
