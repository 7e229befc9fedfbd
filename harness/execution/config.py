"""Configuration: the run schema, per-plugin Hydra schemas, and validation into plain objects.

``harness/conf/config.yaml`` composes a run from the groups ``algorithm`` and ``data``; this module
registers their schemas with Hydra's ConfigStore (each algorithm's ``Params`` dataclass with a
``name`` field added), and turns a composed config into validated objects the runner uses.
Every error it raises is a ``ConfigError`` naming the bad value and the allowed ones.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from algorithms.base import ALGORITHMS
from harness.common.device import resolve_device, resolve_dtype
from harness.common.errors import ConfigError, unknown
from harness.execution.migrate import identity_without_history
from harness.execution.results import NON_IDENTITY_KEYS, TARGET_REL_LOSS
from harness.execution.sharded_cell import check_distributed
from harness.linalg import kernels
from harness.model import MODELS, STREAMS, TWO_LAYER, stream_seed
from harness.model.data import DATASETS, validate_dataset

#: the Hydra configs, shipped inside the package (package data), so that an installed wheel
#: finds them as well as a source checkout does
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class ModelConfig:
    name: str = "two_layer"  # a registered model (harness.model.MODELS): two_layer | mlp
    m: int = 1024  # width
    depth: int = 1  # trained hidden layers (two_layer: 1)


@dataclass
class SeedsConfig:
    """Per-stream seeds; null derives the stream from the master ``seed``."""

    data: int | None = None
    init: int | None = None
    algorithm: int | None = None  # mini-batch order, sketches, power-iteration start


@dataclass
class TestingConfig:
    """Fault injection for the harness's own tests (not part of a cell's identity)."""

    fail_at_iter: int | None = None
    fail_mode: str = "raise"  # raise | kill
    slow_step_s: float = 0.0  # sleep this long before every step (wall-budget tests)


@dataclass
class DistributedConfig:
    """One cell on P ranks, the width m sharded over them (``distributed=local``;
    harness.execution.sharded_cell, docs/distributed.md)."""

    #: none | local (P processes on this machine) | torchrun (P processes on this machine
    #: under torch's own launcher) | slurm (P tasks over ``nodes`` nodes by srun)
    kind: str = "none"
    world_size: int = 1  # P
    backend: str = "gloo"  # gloo (CPU)
    threads_per_rank: int = 1  # torch threads of each rank
    nodes: int = 1  # slurm: the nodes the P ranks spread over (P a multiple of it)


@dataclass
class RecordConfig:
    """Opt-in diagnostics, computed after each step outside the clock (O(n²(m+d) + n³) each)."""

    # C5 of the spec: once ‖G_0 − H∞‖₂ and λ = λ_min(H∞); per step λ_min(G_t)/λ, ‖W_t − W_0‖_F
    ntk: bool = False


@dataclass
class RunConfig:
    algorithm: Any = None
    data: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"  # float32 | float64
    threads: int | None = None  # torch CPU threads; null keeps torch's default
    tf32: bool = False  # allow TF32 matmuls on CUDA (off: fp32 means fp32)
    # kernel routes of the products with D (harness/linalg/kernels.py): auto = measured on this
    # machine once per process; float | int8 force one route
    kernels: str = "auto"
    # untimed steps of a throw-away copy of the method before the clock starts (first-call
    # costs, kernel calibration); the same for every method, recorded as warmup_time_s
    warmup_steps: int = 1
    # cost-model profile (nlt-bench --calibrate) used to skip, with the prediction as reason,
    # a cell whose one step is predicted to outlast time_budget_s: "auto" = this machine's
    # profile in reports/profiles/ if there is one, a path, or null (never skip)
    cost_profile: str | None = "auto"
    max_iters: int = 100
    target_rel_loss: float = TARGET_REL_LOSS  # ε of the spec
    # cumulative timed seconds (setup + steps, warm-up and evaluation excluded) after which
    # a run stops, recorded as time_budget
    time_budget_s: float | None = None
    # wall-clock cap of the whole cell (data, warm-up, setup, steps, evaluation); a step
    # running when it passes is stopped at its next Python operation and the cell is recorded
    # as time_budget with the steps done so far. null: 3 × time_budget_s + 60 s if a time
    # budget is set, else none
    wall_budget_s: float | None = None
    memory_budget_gb: float | None = None  # null: a safe fraction of free memory
    store: str = "results"
    force: bool = False  # rerun cells that already have results
    progress_interval_s: float = 1.0
    testing: TestingConfig = field(default_factory=TestingConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    # run each cell in a child process, so that a crash or SIGKILL (OOM killer) of the cell is
    # recorded as a failed cell by its job instead of ending the job (harness/execution/app.py)
    isolate: bool = True


_GROUPS = {"algorithm": (ALGORITHMS, lambda obj: obj.Params),
           "data": (DATASETS, lambda obj: obj.Params)}


def _schema(group: str, name: str) -> type:
    """The params dataclass with a leading-default ``name`` field: the Hydra schema.

    A global of this module under a unique name (created on first use, also through the module
    ``__getattr__`` below), so that configs holding it pickle into child processes, joblib and
    submitit jobs.
    """
    qualname = f"_Schema_{group}_{name}"
    if qualname not in globals():
        registry, params_of = _GROUPS[group]
        schema = dataclasses.make_dataclass(
            qualname, [("name", str, dataclasses.field(default=name))],
            bases=(params_of(registry.get(name)),))
        schema.__module__ = __name__
        globals()[qualname] = schema
    return globals()[qualname]


def __getattr__(attr: str) -> type:
    for group in _GROUPS:
        prefix = f"_Schema_{group}_"
        if attr.startswith(prefix):
            return _schema(group, attr[len(prefix):])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def register_configs() -> None:
    """Store the run schema and every algorithm/dataset schema in Hydra's ConfigStore.

    Built-ins have ``conf/<group>/<name>.yaml`` extending ``_schema_<name>``; a third-party
    plugin without a YAML is stored as ``<group>/<name>`` directly, so ``algorithm=<name>``
    works for it too.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="_run_schema", node=RunConfig)
    OmegaConf.register_new_resolver("nlt_help_groups", help_groups, replace=True)
    for group, (registry, _) in _GROUPS.items():
        for name in registry.names():
            schema = _schema(group, name)
            cs.store(group=group, name=f"_schema_{name}", node=schema)
            if not (CONF_DIR / group / f"{name}.yaml").exists():
                cs.store(group=group, name=name, node=schema)
    for name in MODELS.names():  # a plugin model without a YAML: model=<name> selects it
        if not (CONF_DIR / "model" / f"{name}.yaml").exists():
            cs.store(group="model", name=name, node={"name": name})


def _yaml_stems(*parts: str) -> set[str]:
    return {p.stem for p in CONF_DIR.joinpath(*parts).glob("*.yaml")}


#: config group -> the registry whose plugins are options beside the group's YAMLs
_GROUP_REGISTRIES = {"algorithm": ALGORITHMS, "data": DATASETS, "model": MODELS}


def group_choices(group: str) -> list[str]:
    """The options of a config group (``algorithm``, ``data``, ``model``, ``sweep``): its
    YAMLs, named variants such as ``gn_sketch_paper`` included, and every registered plugin."""
    registry = _GROUP_REGISTRIES.get(group)
    return sorted(_yaml_stems(group) | (set(registry.names()) if registry else set()))


def help_groups() -> str:
    """The config groups of ``nlt-run --help`` (hydra/help/nlt.yaml), with the choices a user
    has: Hydra's own listing would also offer the ``_schema_*`` configs, which are internal."""
    from hydra.core.config_store import ConfigStore

    launchers = {"basic"} | _yaml_stems("hydra", "launcher")
    launchers |= {name.removesuffix(".yaml")
                  for name in ConfigStore.instance().list("hydra/launcher")}
    groups = [
        ("algorithm", group_choices("algorithm"),
         "the method; its parameters as algorithm.<param>=value (nlt-list)"),
        ("data", group_choices("data"),
         "the dataset; data.n, data.d and its options as data.<param>=value"),
        ("model", group_choices("model"),
         "the network; model.m (width), model.depth (mlp: trained hidden layers)"),
        ("distributed", sorted(_yaml_stems("distributed")),
         "one cell on P processes, the width sharded: distributed.world_size=P "
         "(docs/distributed.md)"),
        ("+sweep", group_choices("sweep"),
         "a preset sweep, with -m only (docs/sweeps.md)"),
        ("hydra/launcher", sorted(launchers),
         "how a sweep's cells run: one at a time, in parallel, on SLURM (docs/sweeps.md)"),
    ]
    return "\n".join(f"{name}: {', '.join(choices)}\n    {what}"
                     for name, choices, what in groups) + "\n"


def build_params(kind: str, params_cls: type, values: dict[str, Any]):
    """Instantiate a params dataclass, naming unknown keys and the allowed ones."""
    allowed = [f.name for f in dataclasses.fields(params_cls)]
    bad = sorted(set(values) - set(allowed))
    if bad:
        raise ConfigError(f"Unknown {kind} parameter {bad[0]!r}. Available: {allowed}")
    return params_cls(**values)


@dataclass
class ResolvedRun:
    """A validated run: plain objects plus the identity dict that names its cell."""

    algorithm: Any  # the Algorithm class
    params: Any
    dataset: str
    data_params: dict[str, Any]
    n: int
    d: int
    m: int
    seed: int
    seeds: dict[str, int]
    device: torch.device
    dtype: torch.dtype
    cfg: DictConfig
    identity: dict[str, Any]
    model: str = "two_layer"
    depth: int = 1

    @property
    def label(self) -> str:
        """How logs name the cell: variant, data, sizes, seed (and the model unless two_layer)."""
        model = "" if self.model == "two_layer" else f"{self.model}{self.depth} "
        return (f"{self.variant} {model}{self.dataset} n={self.n} m={self.m} d={self.d} "
                f"seed={self.seed}")

    @property
    def variant(self) -> str:
        """The one name of the method variant, in progress lines, the summary, the report and
        its figures: the named configuration it runs (gn_sketch_paper), else the method."""
        return preset_for(self.algorithm.name, self.identity["algorithm"]) or \
            self.algorithm.name

    def facts(self) -> dict[str, Any]:
        """The cell's coordinates as run.json and every result row record them."""
        return {"algorithm": self.algorithm.name, "dataset": self.dataset, "model": self.model,
                "depth": self.depth, "n": self.n, "m": self.m, "d": self.d, "seed": self.seed}


#: How a cell is run, not what it computes: outside the cell hash.
_RUNTIME_KEYS = ("isolate",)


#: Seeds must fit torch's generator and numpy's SeedSequence.
MAX_SEED = 2**63 - 1


def _positive_int(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def _seed(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key} must be an integer in [0, 2**63 - 1], got {value!r}")
    return value


def _number(key: str, value, lo: float, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = True, nullable: bool = False) -> None:
    """A finite number in [lo, hi) (the bounds' openness as given), or null where allowed."""
    if value is None and nullable:
        return
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and \
        math.isfinite(value) and (value > lo if lo_open else value >= lo)
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        rule = f"{'>' if lo_open else '>='} {lo:g}" if hi is None else \
            f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"{key} must be a finite number {rule}"
                          f"{' or null' if nullable else ''}, got {value!r}")


def _check_keys(node: dict[str, Any], schema: type, prefix: str = "") -> None:
    """Keys of ``node`` against the dataclass ``schema`` (nested dataclasses recursively):
    an unknown key (``+foo=1``) or a deleted one (``~seed``) is refused with the allowed ones.
    The allowed keys come from the schema, so a new RunConfig field is accepted as it lands."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown_keys = sorted(set(node) - set(fields))
    if unknown_keys:
        raise ConfigError(f"Unknown option {prefix + unknown_keys[0]!r}. Available: "
                          f"{[prefix + k for k in sorted(fields)]}")
    missing = sorted(set(fields) - set(node))
    if missing:
        raise ConfigError(f"Missing option {prefix + missing[0]!r}: it cannot be deleted")
    for name, f in fields.items():
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            if not isinstance(node[name], dict):
                raise ConfigError(f"{prefix + name} must be a group of options, got "
                                  f"{node[name]!r}")
            _check_keys(node[name], type(sub), f"{prefix}{name}.")


def _check_finite(node: Any, key: str = "") -> None:
    """Every number of the configuration is finite (NaN or ±inf nowhere)."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{key} must be a finite number, got {node!r}")
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, f"{key}[{i}]")


def _check_run_options(container: dict[str, Any]) -> None:
    """The run's own options (budgets, threads, kernels, profile, warm-up, fault injection)."""
    _positive_int("max_iters", container["max_iters"])
    _number("target_rel_loss", container["target_rel_loss"], 0.0, 1.0)
    _number("time_budget_s", container["time_budget_s"], 0.0, lo_open=True, nullable=True)
    _number("wall_budget_s", container["wall_budget_s"], 0.0, lo_open=True, nullable=True)
    _number("testing.slow_step_s", container["testing"]["slow_step_s"], 0.0)
    _number("memory_budget_gb", container["memory_budget_gb"], 0.0, lo_open=True,
            nullable=True)
    _number("progress_interval_s", container["progress_interval_s"], 0.0)
    if container["threads"] is not None:
        _positive_int("threads", container["threads"])
    kernels.check_mode(container["kernels"])
    profile = container.get("cost_profile")
    if profile not in (None, "auto"):
        _check_profile(str(profile))
    warmup = container["warmup_steps"]
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup_steps must be a non-negative integer, got {warmup!r}")
    if container["testing"]["fail_at_iter"] is not None:
        _positive_int("testing.fail_at_iter", container["testing"]["fail_at_iter"])
    if container["testing"]["fail_mode"] not in ("raise", "kill"):
        raise ConfigError(f"Unknown testing.fail_mode {container['testing']['fail_mode']!r}. "
                          "Available: ['kill', 'raise']")


def _check_profile(profile: str) -> None:
    """``cost_profile=<path>``: a readable profile, checked before any cell runs (the runner
    loads it only when a cell has a time budget)."""
    path = Path(os.path.expanduser(profile))
    allowed = "use 'auto', null or a profile written by nlt-bench --calibrate"
    if not path.is_file():
        raise ConfigError(f"cost_profile {profile!r} is not a file; {allowed}")
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"cost_profile {profile!r} is unreadable ({exc.strerror}); "
                          f"{allowed}") from None
    _loaded_profile(str(path), stamp)


@functools.lru_cache(maxsize=8)
def _loaded_profile(path: str, stamp: int) -> None:
    from harness.costmodel.profile import Profile

    try:
        Profile.load(path)
    except ConfigError as exc:
        raise ConfigError(f"cost_profile: {exc}; use 'auto', null or a profile written by "
                          "nlt-bench --calibrate") from None


def resolve(cfg: DictConfig) -> ResolvedRun:
    """Validate a composed config; nothing is allocated."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    _check_keys(container, RunConfig)
    _check_finite(container)
    alg_cfg = dict(container.get("algorithm") or {})
    data_cfg = dict(container.get("data") or {})
    algorithm = ALGORITHMS.get(alg_cfg.pop("name", None))
    params = build_params(f"{algorithm.name}", algorithm.Params, alg_cfg)
    spec = DATASETS.get(data_cfg.get("name"))
    data_params = {k: v for k, v in data_cfg.items() if k not in ("name", "n", "d")}
    build_params(f"{spec.name}", spec.Params, {**data_params, "n": 1, "d": 1})
    n = _positive_int("data.n", data_cfg.get("n"))
    d = _positive_int("data.d", data_cfg.get("d"))
    validate_dataset(spec.name, n, d, data_params)
    model_cfg = container["model"]
    m = _positive_int("model.m", model_cfg["m"])
    depth = _positive_int("model.depth", model_cfg["depth"])
    model = MODELS.get(model_cfg["name"])
    reason = model.check_sizes(m, depth)
    if reason:
        raise ConfigError(reason)
    if container["record"]["ntk"] and TWO_LAYER not in model.features:
        raise ConfigError(f"record.ntk compares G with the two-layer NTK limit H∞; it needs "
                          f"model=two_layer, got model={model.name}")
    device = resolve_device(container["device"])
    dtype = resolve_dtype(container["dtype"])
    _check_run_options(container)
    check_distributed(container["distributed"], device, model.name)
    _seed("seed", container["seed"])
    for stream in STREAMS:
        if container["seeds"][stream] is not None:
            _seed(f"seeds.{stream}", container["seeds"][stream])
    seed = container["seed"]
    seeds = {s: (container["seeds"][s] if container["seeds"][s] is not None
                 else stream_seed(seed, s)) for s in STREAMS}
    identity = {k: v for k, v in container.items()
                if k not in NON_IDENTITY_KEYS and k not in _RUNTIME_KEYS}
    identity["algorithm"] = {"name": algorithm.name, **dataclasses.asdict(params)}
    identity["device"] = device.type
    identity["seeds"] = seeds
    identity["model"] = {"name": model.name, "m": m, "depth": depth}
    # options added since the first stores count only where set: every cell keeps its hash
    identity = identity_without_history(identity)
    return ResolvedRun(algorithm, params, spec.name, data_params, n, d, m, seed, seeds, device,
                       dtype, cfg, identity, model=model.name, depth=depth)


def store_path(cfg: DictConfig) -> Path:
    return Path(os.path.expanduser(str(cfg.store)))


def algorithm_preset(preset: str) -> tuple[str, dict[str, Any]]:
    """(algorithm name, parameters) of ``conf/algorithm/<preset>.yaml`` — a registered method or
    a named variant of one, such as ``gn_sketch_paper`` — without composing a whole run."""
    path = CONF_DIR / "algorithm" / f"{preset}.yaml"
    if not path.exists():
        raise unknown("algorithm preset", preset,
                      [p.stem for p in (CONF_DIR / "algorithm").glob("*.yaml")])
    values = dict(OmegaConf.to_container(OmegaConf.load(path)))
    defaults = values.pop("defaults", [])
    schema = next((d for d in defaults if isinstance(d, str) and d.startswith("_schema_")), None)
    name = values.pop("name", schema[len("_schema_"):] if schema else preset)
    return name, values


@functools.lru_cache(maxsize=1)
def _presets() -> tuple[tuple[str, str, str], ...]:
    """(preset stem, algorithm name, its parameters as sorted JSON) of conf/algorithm/*.yaml."""
    out = []
    for path in sorted((CONF_DIR / "algorithm").glob("*.yaml")):
        name, values = algorithm_preset(path.stem)
        out.append((path.stem, name, json.dumps(values, sort_keys=True, default=str)))
    return tuple(out)


def preset_for(algorithm: str, params: dict[str, Any]) -> str | None:
    """The named configuration (``conf/algorithm/<stem>.yaml``) that runs ``algorithm`` with
    exactly these parameters: ``gn_sketch`` for its defaults, ``gn_sketch_paper`` for the
    paper's variant; None for any other choice of parameters."""
    for stem, name, blob in _presets():
        if name != algorithm:
            continue
        values = json.loads(blob)
        if all(json.dumps(params.get(k), default=str) == json.dumps(v, default=str)
               for k, v in values.items()):
            return stem
    return None
