"""Predictions: a method's seconds per outer iteration, phase by phase, at any size, from a
profile (kernel rates and the step ladder's curves) and the method's own ``step_seconds``;
the routes it priced; and the crossover frontier between two methods."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from algorithms.base import ALGORITHMS, param_defaults
from harness.common.errors import ConfigError, unknown
from harness.costmodel.comm import NO_LINK, Link, ShardedCosts
from harness.costmodel.inner import PROFILE_KEY, InnerModel, from_ladder
from harness.costmodel.pricing import Costs
from harness.costmodel.profile import Profile, ladder_factor, modelled, modelled_methods
from harness.model import MODELS, Shape

#: Outer steps per preconditioner build under ``refresh=adaptive`` when the caller gives
#: none: a Gauss–Newton run to 1e-6 takes 2–4 outer steps and builds R once (nlt-bench's
#: AMORTIZE_STEPS = 3, docs/costmodel.md).
DEFAULT_REFRESH_EVERY = 3.0


def method_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's Params defaults overlaid with ``params``, validated by its dataclass."""
    if method not in ALGORITHMS or not modelled(method):
        raise unknown("method for the cost model", method, modelled_methods())
    cls = ALGORITHMS.get(method).Params
    merged = {**param_defaults(cls), **dict(params or {})}
    extra = sorted(set(merged) - set(param_defaults(cls)))
    if extra:
        raise ConfigError(f"Unknown parameter {extra[0]!r} of {method}. Available: "
                          f"{sorted(param_defaults(cls))}")
    cls(**merged)  # raises the method's own ConfigError on a bad value
    return merged


def check_depth(method: str, depth: Any, model: str = "two_layer") -> int:
    """``depth`` as a positive int; a ConfigError for a bad one, for a depth the model does
    not allow, or for a method that needs structure the model lacks (kfac beyond two
    layers), which has no formula there."""
    if not (isinstance(depth, (int, np.integer)) and not isinstance(depth, bool) and depth >= 1):
        raise ConfigError(f"cost model: depth must be a positive integer, got {depth!r}")
    model_cls = MODELS.get(model)
    missing = ALGORITHMS.get(method).requires - model_cls.features
    if missing:
        raise ConfigError(f"cost model: {method} needs the {', '.join(sorted(missing))} "
                          f"structure, which model={model} at depth={int(depth)} does not "
                          f"have; it has no cost there")
    reason = model_cls.check_sizes(1, int(depth))
    if reason:
        raise ConfigError(f"cost model: {reason}")
    return int(depth)


def steps_per_refresh(method: str, params: Mapping[str, Any], given: float | None) -> float:
    """Outer steps per preconditioner build: 1 without ``refresh=adaptive``, else ``given``
    (default ``DEFAULT_REFRESH_EVERY``)."""
    if not ALGORITHMS.get(method).refresh_phases or params.get("refresh", "always") == "always":
        return 1.0
    every = DEFAULT_REFRESH_EVERY if given is None else float(given)
    if not every >= 1:
        raise ConfigError(f"refresh_every must be >= 1 (outer steps per refresh), got {every}")
    return every


def inner_model(profile: Profile) -> InnerModel | None:
    """The profile's model of k and f (``harness.costmodel.inner``): the calibrated one; for
    an older profile, fitted at load on its ladder's recorded k; None without a ladder."""
    if not hasattr(profile, "_inner_model"):
        data = profile.data.get(PROFILE_KEY)
        if data:
            model = InnerModel.from_dict(data)
        else:
            raw = [p for table in profile.data.get("ladder", {}).get("points", {}).values()
                   for p in table]
            model = from_ladder(raw, method_params)
        profile._inner_model = model
    return profile._inner_model


def predicted_inner(method: str, params: Mapping[str, Any], n: int,
                    profile: Profile | None) -> float:
    """Predicted mean inner iterations per step: the profile's model where it has a constant
    for this method, else the method's ``default_inner_iters``; never a measured count."""
    cls = ALGORITHMS.get(method)
    model = inner_model(profile) if profile is not None else None
    k = model.k(method, params, n) if model is not None and cls.reports_inner_iters else None
    return float(cls.default_inner_iters(n, dict(params))) if k is None else k


def predicted_refresh_every(method: str, params: Mapping[str, Any], profile: Profile | None,
                            run_steps: float | None = None) -> float:
    """Predicted outer steps per preconditioner build, 1/f, over a run of ``run_steps``
    steps (default ``DEFAULT_REFRESH_EVERY``): 1 without ``refresh=adaptive``; with it, the
    profile's rebuild rate (``InnerModel.refresh_share``), or one build per run without a
    model."""
    if not ALGORITHMS.get(method).refresh_phases or params.get("refresh", "always") == "always":
        return 1.0
    steps = DEFAULT_REFRESH_EVERY if run_steps is None else max(1.0, float(run_steps))
    model = inner_model(profile) if profile is not None else None
    return 1.0 / model.refresh_share(steps) if model is not None else steps


def occurrence(method: str, phase: str, seconds: float, inner: float) -> float:
    """A phase's seconds per occurrence (``seconds`` as ``step_seconds`` gives it): per inner
    iteration for an inner solve, per build for a refresh phase, else per step."""
    if phase == "solve" and ALGORITHMS.get(method).reports_inner_iters:
        return seconds / inner if inner > 0 else seconds
    return seconds


def _phases(method: str, p: dict[str, Any], n: int, m: int, d: int, c: Costs,
            inner: float) -> dict[str, float]:
    phases = ALGORITHMS.get(method).step_seconds(c, p, n, m, d, inner)
    if phases is None:
        raise ConfigError(f"cost model: {method} declares no step_seconds")
    return {k: float(v) for k, v in phases.items()}


def predict(method: str, params: Mapping[str, Any] | None, n: int, m: int, d: int,
            profile: Profile, inner_iters: float | None = None, *, dtype: str | None = None,
            kernels_mode: str = "auto", refresh_every: float | None = None,
            depth: int = 1, model: str = "two_layer",
            run_steps: float | None = None, world: int = 1,
            link: Link | None = None) -> dict[str, float]:
    """Predicted seconds per outer iteration of ``method`` at (n, m, d), phase by phase.

    ``params``: the method's hyperparameters (missing ones take the Params defaults).
    ``inner_iters``: mean inner (CG) iterations per outer iteration; None takes the
    predicted count (``predicted_inner``: the profile's model of k, else the method's
    ``default_inner_iters``). ``refresh_every``: outer steps per preconditioner build under
    ``refresh=adaptive`` (the method's ``refresh_phases`` amortised over them); None takes
    the predicted one over a run of ``run_steps`` steps (``predicted_refresh_every``).
    ``model`` and ``depth``: the network (the two-layer model; the MLP with ``depth`` layers
    of width m). ``world`` > 1: one rank of a cell sharded over that many ranks
    (``harness.costmodel.comm``), its all-reduces over ``link`` in the phase ``comm`` (the
    other phases without them, as the runner measures them). Returns {phase: seconds, ...,
    "total": sum}.
    """
    p = method_params(method, params)
    depth = check_depth(method, depth, model)
    for key, value in (("n", n), ("m", m), ("d", d)):
        if not value >= 1:
            raise ConfigError(f"cost model: {key} must be >= 1, got {value!r}")
    cls = ALGORITHMS.get(method)
    if inner_iters is None or (isinstance(inner_iters, float) and math.isnan(inner_iters)):
        inner_iters = predicted_inner(method, p, n, profile)
    inner = float(inner_iters)
    args = (profile, dtype or profile.default_dtype, kernels_mode, depth, model)
    comm: dict[str, float] = {}
    if world > 1:
        if link is None or model != "two_layer":
            raise ConfigError("cost model: a sharded step needs a link and model=two_layer")
        c = ShardedCosts(*args, world=world, link=NO_LINK)
        phases = _phases(method, p, n, m, d, c, inner)
        linked = _phases(method, p, n, m, d, ShardedCosts(*args, world=world, link=link),
                         inner)
        comm = {k: linked[k] - phases[k] for k in phases}
    else:
        c = Costs(*args)
        phases = _phases(method, p, n, m, d, c, inner)
    every = (steps_per_refresh(method, p, refresh_every) if refresh_every is not None
             else predicted_refresh_every(method, p, profile, run_steps))
    curves = profile.phase_curves(method, c.dtype, model)
    for phase, seconds in phases.items():
        if curves and seconds > 0:  # measured over modelled, on the method's own steps
            curve = curves.get(cls.phase_key(p, phase))
            if curve:
                seconds *= ladder_factor(curve, occurrence(method, phase, seconds, inner))
        phases[phase] = seconds / every if phase in cls.refresh_phases else seconds
    if comm:
        phases["comm"] = float(sum(v / every if k in cls.refresh_phases else v
                                   for k, v in comm.items()))
    phases["total"] = float(sum(phases.values()))
    return phases


def predict_routes(method: str, params: Mapping[str, Any] | None, n: int, m: int, d: int,
                   profile: Profile, *, dtype: str | None = None, kernels_mode: str = "auto",
                   depth: int = 1, model: str = "two_layer") -> dict[str, str]:
    """The route per pattern product the prediction used (as ``kernels.routes_used()``;
    none on a model whose products are all float ones)."""
    p = method_params(method, params)
    c = Costs(profile, dtype or profile.default_dtype, kernels_mode,
              check_depth(method, depth, model), model)
    _phases(method, p, n, m, d, c, ALGORITHMS.get(method).default_inner_iters(n, p))
    return dict(sorted(c.routes.items()))


# --- the crossover frontier -------------------------------------------------------------------


def fits_memory(method: str, params: Mapping[str, Any] | None, n: int, m: int, d: int,
                limit_bytes: float | None, itemsize: int = 4, depth: int = 1,
                model: str = "two_layer") -> bool:
    """Whether the method's own memory plan (``memory_bytes``) on ``model`` stays within
    ``limit_bytes``."""
    if limit_bytes is None:
        return True
    cls = ALGORITHMS.get(method)
    shape = Shape.of(model, n, m, d, itemsize, depth)
    plan = cls.memory_bytes(cls.Params(**method_params(method, params)), shape)
    return plan <= limit_bytes


def frontier(profile: Profile, ns: Sequence[int], ms: Sequence[int], d: int,
             methods: tuple[str, str] = ("gn_sketch", "gn_gram"),
             params: Mapping[str, Mapping[str, Any]] | None = None,
             inner_iters: Mapping[str, float] | None = None,
             outer_iters: Mapping[str, float] | None = None, *,
             dtype: str | None = None, kernels_mode: str = "auto",
             refresh_every: float | None = None,
             memory_bytes: float | None = None, depth: int = 1,
             model: str = "two_layer", world: int = 1,
             link: Link | None = None) -> pd.DataFrame:
    """Per n, the smallest m of ``ms`` where ``methods[0]`` beats ``methods[1]``.

    Per iteration (``m_per_iteration``) and, given ``outer_iters`` {method: outer iterations
    to ε}, to ε (``m_to_target``: iterations × time per iteration, setup excluded). An m is
    admissible while ``methods[0]``'s memory plan fits ``memory_bytes`` (default: the
    profile's); a baseline that does not fit loses. None where no admissible m of the grid
    wins. Also returns the time ratio baseline / candidate at the largest admissible m.
    ``model``, ``depth``: the network (``predict``, ``fits_memory``). ``world``, ``link``:
    sharded over that many ranks (``predict``; the memory plan is one rank's, ⌈m/P⌉).
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
            share = math.ceil(m / world)  # one rank's neurons
            if not fits_memory(cand, params.get(cand), n, share, d, limit, itemsize, depth,
                               model):
                break
            row["m_max_fits"] = int(m)
            t = {}
            for name in methods:
                if name == base and not fits_memory(base, params.get(base), n, share, d,
                                                    limit, itemsize, depth, model):
                    t[name] = math.inf
                    continue
                t[name] = predict(name, params.get(name), n, m, d, profile,
                                  inner_iters.get(name), dtype=dtype,
                                  kernels_mode=kernels_mode,
                                  refresh_every=refresh_every, depth=depth,
                                  model=model, world=world, link=link)["total"]
            row["ratio_at_max"] = t[base] / t[cand]
            if row["m_per_iteration"] is None and t[cand] < t[base]:
                row["m_per_iteration"] = int(m)
            if (outer_iters is not None and row["m_to_target"] is None
                    and outer_iters[cand] * t[cand] < outer_iters[base] * t[base]):
                row["m_to_target"] = int(m)
        rows.append(row)
    return pd.DataFrame(rows, columns=["n", "m_per_iteration", "m_to_target", "m_max_fits",
                                       "ratio_at_max"], dtype=object)


def render_predictions(prof: Profile, n: int, m: int, d: int, dtype: str | None = None) -> str:
    """Every modelled method's predicted seconds per iteration at (n, m, d), with phases."""
    lines = [f"predicted seconds per outer iteration  n={n} m={m} d={d}  "
             f"({prof.data.get('source')}, {prof.data.get('device_name')})"]
    for name in modelled_methods():
        t = predict(name, {}, n, m, d, prof, dtype=dtype)
        phases = "  ".join(f"{k} {v:.3g}" for k, v in t.items() if k != "total")
        lines.append(f"  {name:<11} {t['total']:10.4g} s   {phases}")
    return "\n".join(lines)
