"""Validate a command line before Hydra launches anything.

Hydra reports a bad group choice or an ill-typed value as a multi-line message with exit code
1, and in a sweep only when it reaches the bad cell. The pre-flight composes the configuration
for the first value of every sweep dimension and then for every other value of each dimension
(one at a time), runs the runner's own validation on each, and raises a one-line ConfigError
at the first problem. Cheap: a few milliseconds a composition, no allocation.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from algorithms.base import ALGORITHMS
from harness.config import CONF_DIR, register_configs, resolve
from harness.data import DATASETS
from harness.errors import ConfigError, unknown


def sweep_presets() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml"))


def algorithm_choices() -> list[str]:
    """Registered methods and the named variants of conf/algorithm/ (``gn_sketch_paper``)."""
    return sorted(set(ALGORITHMS.names())
                  | {p.stem for p in (CONF_DIR / "algorithm").glob("*.yaml")})


def _check_choice(key: str, value: str) -> None:
    if key == "algorithm" and value not in algorithm_choices():
        raise unknown("algorithm", value, algorithm_choices())
    if key == "data" and value not in DATASETS:
        raise unknown("dataset", value, DATASETS.names())
    if key == "sweep" and value not in sweep_presets():
        raise unknown("sweep preset", value, sweep_presets())


def _hydra_message(exc: Exception) -> str:
    """One line from Hydra's exception: the underlying cause, prefixed with its key."""
    text = str(exc.__cause__ or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    return f"{key}: {first}" if key and key not in first else first


def _dimensions(overrides: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Split overrides into fixed ones and sweep dimensions (prefix+key, string values)."""
    fixed, sweeps = [], []
    for o in OverridesParser.create().parse_overrides(overrides):
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else None
        if o.value() is not None:
            for v in values if values is not None else [o.get_value_element_as_str()]:
                _check_choice(o.key_or_group, str(v))
        if values is None:
            fixed.append(o.input_line)
        else:
            sweeps.append((o.get_key_element(), values))
    return fixed, sweeps


def _unknown_param(overrides: list[str], exc: Exception) -> ConfigError | None:
    """``algorithm.foo=1`` for an algorithm without ``foo``: name the allowed parameters."""
    match = re.search(r"full_key: (algorithm|data)\.(\w+)", str(exc.__cause__ or ""))
    if not match or "not in" not in str(exc.__cause__):
        return None
    group, key = match.groups()
    rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{group}.{key}=")]
    try:
        node = compose(config_name="config", overrides=rest)[group]
    except Exception:
        return None
    return ConfigError(f"Unknown {node.name} parameter {key!r}. Available: "
                       f"{[k for k in node if k != 'name']}")


def _compose(overrides: list[str], with_hydra: bool = False):
    try:
        return compose(config_name="config", overrides=overrides,
                       return_hydra_config=with_hydra)
    except ConfigError:
        raise
    except Exception as exc:
        raise (_unknown_param(overrides, exc) or ConfigError(_hydra_message(exc))) from None


def preflight(overrides: list[str]) -> int:
    """Validate every value of the command line's sweep; returns the number of cells checked."""
    try:
        fixed, sweeps = _dimensions(overrides)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(_hydra_message(exc)) from None
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(CONF_DIR)), version_base="1.3"):
        first = fixed + [f"{k}={v[0]}" for k, v in sweeps]
        hydra_cfg = _compose(first, with_hydra=True).hydra
        params = hydra_cfg.sweeper.get("params")
        preset = OmegaConf.to_container(params, resolve=False) if params else {}
        given = {k.lstrip("+~") for k, _ in sweeps} | {o.split("=", 1)[0].lstrip("+~")
                                                      for o in fixed}
        extra = [f"{k}={v}" for k, v in (preset or {}).items() if k.lstrip("+~") not in given]
        if extra:
            _, preset_sweeps = _dimensions(extra)
            fixed_preset = [f"{k}={v[0]}" for k, v in preset_sweeps]
            sweeps += preset_sweeps
            first = first + fixed_preset
        combos = [first]
        for i, (key, values) in enumerate(sweeps):
            for value in values[1:]:
                combo = list(first)
                combo[len(fixed) + i] = f"{key}={value}"
                combos.append(combo)
        for combo in combos:
            resolve(_compose(combo))
    GlobalHydra.instance().clear()
    return len(combos)
