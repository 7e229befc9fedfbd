"""Validate a command line before Hydra launches anything.

Hydra reports a bad group choice or an ill-typed value as a multi-line message with exit code
1, and in a sweep only when it reaches the bad cell. The pre-flight composes the configuration
of every job the sweep will launch (the preset's dimensions crossed with the command line's,
as Hydra's basic sweeper crosses them), runs the runner's own validation on each (every option,
dataset options included), checks that the store directories each job writes can be written
and that the launcher's settings are usable, and raises a one-line ConfigError at the first
problem. No allocation, nothing written.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from harness.common.errors import ConfigError, unknown
from harness.execution.config import (
    CONF_DIR,
    ResolvedRun,
    RunConfig,
    group_choices,
    register_configs,
    resolve,
    store_path,
)
from harness.execution.hydra_adapter import apply_overrides, parse_overrides, sweep_jobs
from harness.execution.results import cell_name, writable_dir_problem


def sweep_presets() -> list[str]:
    return group_choices("sweep")


def algorithm_choices() -> list[str]:
    """Registered methods and the named variants of harness/conf/algorithm/ (gn_sketch_paper)."""
    return group_choices("algorithm")


#: config group -> what its options are called in an error
_CHOICES = {"algorithm": "algorithm", "data": "dataset", "model": "model",
            "sweep": "sweep preset"}


def _check_choice(key: str, value: str) -> None:
    if key in _CHOICES and value not in group_choices(key):
        raise unknown(_CHOICES[key], value, group_choices(key))


#: OmegaConf's type names, as the allowed values of a setting
_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false",
               "String": "text"}


def _hydra_message(exc: Exception) -> str:
    """One line from Hydra's exception: the underlying cause, prefixed with its key; a value
    of the wrong type says which type is allowed."""
    text = str(exc.__cause__ or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    typed = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", first)
    if typed and key:
        want = _TYPE_WORDS.get(typed.group(2), typed.group(2))
        return f"{key} must be {want}, got {typed.group(1)!r}"
    if "ConfigLoader is not set" in first or "Exception" in first.split(":")[0]:
        first = "Hydra cannot read this command line (a sweep form or a quote)"
    return f"{key}: {first}" if key and key not in first else first


def _dimensions(overrides: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Split overrides into fixed ones and sweep dimensions (prefix+key, string values)."""
    fixed, sweeps = [], []
    for o in parse_overrides(overrides):
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else None
        if o.value() is not None:
            for v in values if values is not None else [o.get_value_element_as_str()]:
                _check_choice(o.key_or_group, str(v))
        if values is None:
            fixed.append(o.input_line)
        else:
            sweeps.append((o.get_key_element(), values))
    return fixed, sweeps


def _schema_keys(prefix: str) -> list[str] | None:
    """The keys RunConfig allows under ``prefix`` ('' for the top level; None: not a group)."""
    schema: type = RunConfig
    for part in [p for p in prefix.split(".") if p]:
        field = next((f for f in dataclasses.fields(schema) if f.name == part), None)
        if field is None or field.default_factory is dataclasses.MISSING:
            return None
        schema = type(field.default_factory())
        if not dataclasses.is_dataclass(schema):
            return None
    return sorted(f.name for f in dataclasses.fields(schema))


def _unknown_param(overrides: list[str], exc: Exception) -> ConfigError | None:
    """``algorithm.foo=1`` for an algorithm without ``foo``, or ``foo=1`` / ``model.foo=1``
    for an option RunConfig does not have: name the allowed ones."""
    cause = str(exc.__cause__ or "")
    if "not in" not in cause:
        return None
    launcher = re.search(r"full_key: hydra\.launcher\.([\w.]+)", cause)
    if launcher:
        rest = [o for o in overrides if not o.lstrip("+~").startswith("hydra.launcher.")]
        try:
            keys = compose(config_name="config", overrides=rest,
                           return_hydra_config=True).hydra.launcher
        except Exception:
            return None
        return ConfigError(f"Unknown launcher option 'hydra.launcher.{launcher.group(1)}'. "
                           f"Available: {sorted(k for k in keys if k != '_target_')}")
    match = re.search(r"full_key: (algorithm|data)\.(\w+)", cause)
    if not match:
        full = re.search(r"full_key: ([\w.]+)", cause)
        if not full:
            return None
        prefix, _, key = full.group(1).rpartition(".")
        allowed = _schema_keys(prefix)
        if allowed is None:
            return None
        dot = f"{prefix}." if prefix else ""
        return ConfigError(f"Unknown option {dot + key!r}. Available: "
                           f"{[dot + k for k in allowed]}")
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


#: config groups: the folders of harness/conf/ (a key with a slash, hydra/launcher, is a
#: group too)
_GROUP_KEYS = tuple(sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir()))


class _Composer:
    """``compose(job)`` for many jobs, fast: Hydra composes the defaults list (the group
    choices and hydra.* settings) and then applies the plain value overrides to the merged
    config in order (``ConfigLoaderImpl._apply_overrides_to_config``). The first part is
    cached per distinct choice of groups; the second is applied here the same way."""

    def __init__(self) -> None:
        self.bases: dict[tuple[str, ...], object] = {}

    @staticmethod
    def _is_base(line: str) -> bool:
        key = line.split("=", 1)[0].lstrip("+~")
        return key in _GROUP_KEYS or "/" in key or key.startswith("hydra.")

    def __call__(self, job: list[str]):
        base_lines = tuple(o for o in job if self._is_base(o))
        if base_lines not in self.bases:
            self.bases[base_lines] = _compose(list(base_lines))
        cfg = copy.deepcopy(self.bases[base_lines])
        try:
            apply_overrides(cfg, [o for o in job if not self._is_base(o)])
        except ConfigError:
            raise
        except Exception as exc:
            raise (_unknown_param(job, exc) or ConfigError(_hydra_message(exc))) from None
        return cfg


def _jobs(fixed: list[str], sweeps: list[tuple[str, list[str]]],
          preset: dict[str, object]) -> list[list[str]]:
    """The override lists of every job Hydra's basic sweeper will launch: the preset's
    dimensions, then the command line's (``hydra_adapter.sweep_jobs``)."""
    return sweep_jobs(preset, fixed + [f"{k}={','.join(v)}" for k, v in sweeps])


def _check_launcher(hydra_cfg) -> None:
    """Launcher settings that would otherwise fail inside the launcher, after the sweep
    started (joblib's n_jobs=0). Its ``nodes``, which depend on each job's cell, are
    checked per job (``_check_job_nodes``)."""
    launcher = hydra_cfg.get("launcher") or {}
    if "n_jobs" in launcher:
        n_jobs = launcher.get("n_jobs")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or \
                cores + 1 + n_jobs < 1:
            raise ConfigError(f"hydra.launcher.n_jobs must be a positive number of jobs, or "
                              f"-k for all cores but k-1 (k <= {cores}), got {n_jobs!r}")
    for key in ("cpus_per_task", "timeout_min", "array_parallelism"):
        value = launcher.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"hydra.launcher.{key} must be a positive integer, got {value!r}")
    target = str(launcher.get("_target_", ""))
    # each job is one cell in processes of its own, and nlt-run's signal handling and
    # isolation assume so: joblib's loky processes, one task per cell
    fixed = {"backend": (None, "loky"), "prefer": (None, "processes"), "require": (None,)} \
        if "joblib" in target else {"tasks_per_node": (1,)} if "submitit" in target else {}
    for key, allowed in fixed.items():
        if key in launcher and launcher.get(key) not in allowed:
            raise ConfigError(f"hydra.launcher.{key} must be one of "
                              f"{[a if a is not None else 'null' for a in allowed]}, got "
                              f"{launcher.get(key)!r}")
    for key in ("mem_gb", "gpus_per_node", "gpus_per_task", "cpus_per_gpu", "mem_per_cpu",
                "mem_per_gpu"):
        value = launcher.get(key)
        if value is None or not key.startswith(("mem", "gpus", "cpus")):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or \
                (key.startswith("mem") and value == 0):
            raise ConfigError(f"hydra.launcher.{key} must be a positive number (or null), "
                              f"got {value!r}")


def _check_job_nodes(nodes, cfg, job: list[str]) -> None:
    """A job on one node, or (submitit's ``nodes`` > 1) one ``distributed=slurm`` cell over
    exactly that many nodes, one task on each (the first runs the cell)."""
    if nodes == 1:
        return
    node = cfg.distributed
    allowed = [1, nodes] if node.kind == "slurm" and node.nodes == nodes else [1]
    if nodes not in allowed:
        raise ConfigError(
            f"hydra.launcher.nodes must be one of {allowed}, got {nodes!r}: more than one "
            f"node is for one cell over as many, and every job needs distributed=slurm "
            f"distributed.nodes={nodes}; got distributed={node.kind} "
            f"distributed.nodes={node.nodes} ({' '.join(job)})")


class _Writable:
    """Writability of the directories a sweep will write, each probed once."""

    def __init__(self) -> None:
        self.seen: set[Path] = set()

    def check(self, path: Path, what: str) -> None:
        if path in self.seen:
            return
        self.seen.add(path)
        problem = writable_dir_problem(path, what)
        if problem:
            raise ConfigError(problem)

    def cell(self, cfg, run) -> None:
        if not str(cfg.store).strip():
            raise ConfigError("store must be a directory path, got ''")
        store = store_path(cfg)
        self.check(store, "store")
        cell = store / cell_name(run.identity)
        self.check(cell.parent, "store directory")  # the lock and a rerun's directory
        if cell.exists():
            self.check(cell, "cell directory")


def preflight(overrides: list[str], visit: Callable[[object, ResolvedRun], None] | None = None
              ) -> int:
    """Validate every job of the command line's sweep (each value of each dimension, in every
    combination the sweeper will launch), the store directories they write and the launcher's
    settings; returns the number of jobs checked. Raises a one-line ConfigError.
    ``visit(cfg, run)`` is called with each job's composed config and validated run."""
    try:
        fixed, sweeps = _dimensions(overrides)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(_hydra_message(exc)) from None
    register_configs()
    GlobalHydra.instance().clear()
    writable = _Writable()
    try:
        with initialize_config_dir(config_dir=str(Path(CONF_DIR)), version_base="1.3"):
            first = fixed + [f"{k}={v[0]}" for k, v in sweeps]
            full = _compose(first, with_hydra=True)
            hydra_cfg = full.hydra
            _check_launcher(hydra_cfg)
            job_nodes = OmegaConf.select(hydra_cfg, "launcher.nodes", default=1)
            params = hydra_cfg.sweeper.get("params")
            preset = OmegaConf.to_container(params, resolve=False) if params else {}
            if preset:  # the preset's own values: named errors for bad choices there too
                _dimensions([f"{k}={v}" for k, v in preset.items()])
            try:
                jobs = _jobs(fixed, sweeps, preset or {})
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(_hydra_message(exc)) from None
            composer = _Composer()
            seen: dict[str, list[str]] = {}
            for job in jobs:
                cfg = composer(job)
                key = json.dumps(OmegaConf.to_container(cfg, resolve=False), sort_keys=True,
                                 default=str)
                if key in seen:
                    raise ConfigError(f"two jobs of this sweep are the same ({' '.join(seen[key])}"
                                      f" and {' '.join(job)}); give each value of a "
                                      "sweep once")
                seen[key] = job
                run = resolve(cfg)
                _check_job_nodes(job_nodes, cfg, job)
                writable.cell(cfg, run)
                if visit is not None:
                    visit(cfg, run)
            try:
                sweep_dir = OmegaConf.select(hydra_cfg, "sweep.dir", default=None)
            except Exception as exc:
                message = _hydra_message(exc).removeprefix("hydra.sweep.dir: ")
                raise ConfigError(f"hydra.sweep.dir: {message}; allowed: a path, "
                                  "which may use ${store} or ${now:...}") from None
            if sweep_dir:
                writable.check(Path(str(sweep_dir)).parent, "hydra.sweep.dir")
    finally:
        GlobalHydra.instance().clear()
    return len(jobs)
