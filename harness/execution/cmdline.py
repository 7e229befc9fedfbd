"""The command line of ``nlt-run`` as Hydra reads it, checked before anything is composed.

The pre-flight (``harness.execution.preflight``) composes and validates every job; this module
refuses what composing would silently get wrong or report as parser internals: an override
Hydra cannot read, a key given twice, a sweep without ``-m``, a sweep value listed twice, a
sweep of sweep presets, deletions (``~model``), interpolations (``${...}``), ``glob()`` and
``interval()`` sweeps, Hydra settings that move or replace what nlt-run relies on
(``hydra.job.chdir``, ``_target_``, callbacks, the sweeper), an unknown ``--config-name``, and
a SLURM launcher where ``sbatch`` is missing. Each refusal is one ConfigError line naming the
value and what is allowed.
"""

from __future__ import annotations

import re
import shutil

from harness.common.errors import ConfigError, unknown
from harness.execution.config import CONF_DIR, group_choices
from harness.execution.hydra_adapter import FLAGS_WITH_VALUE, parse_overrides, split_argv

PROG = "nlt-run"

#: the forms of an override, for a refusal of one that cannot be read
FORMS = ("key=value (quote text with spaces: key='a b'), +key=value for a key the config "
         "lacks, and with -m a sweep key=a,b, key=range(a,b) or key=choice(a,b)")

#: Hydra settings a command line may change (exact keys), and key prefixes
HYDRA_KEYS = ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.run.dir", "hydra.job.chdir",
              "hydra.verbose", "hydra.output_subdir", "hydra.mode", "hydra.job.name")
HYDRA_PREFIXES = ("hydra.launcher.", "hydra.job.env_set.")
#: Hydra config groups a command line may choose
HYDRA_GROUPS = ("hydra/launcher", "hydra/job_logging", "hydra/hydra_logging")
#: keys whose value may hold an interpolation (Hydra resolves them itself)
INTERPOLATED = ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.run.dir")
#: deletions a command line may make (docs of harness/conf/hydra/launcher/slurm.yaml)
DELETABLE = ("hydra.launcher.additional_parameters.",)
#: launchers that submit to SLURM with sbatch
SLURM_LAUNCHERS = ("slurm", "slurm_gpu", "submitit_slurm")
_KEY = re.compile(r"[A-Za-z_][\w\-]*([./][A-Za-z_][\w\-]*)*")


def is_multirun(argv: list[str]) -> bool:
    return any(a in ("-m", "--multirun") or a.replace(" ", "") == "hydra.mode=MULTIRUN"
               for a in argv)


def launcher_choices() -> list[str]:
    """``hydra/launcher`` options: Hydra's basic one, the plugins' and harness/conf's."""
    from hydra.core.config_store import ConfigStore

    from harness.execution.config import register_configs

    register_configs()
    names = {"basic"} | {p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")}
    try:
        import hydra_plugins.hydra_joblib_launcher.config  # noqa: F401  (registers joblib)
        import hydra_plugins.hydra_submitit_launcher.config  # noqa: F401
    except ImportError:
        pass
    try:
        names |= {n.removesuffix(".yaml") for n in ConfigStore.instance().list("hydra/launcher")}
    except OSError:
        pass
    return sorted(names)


def _config_names() -> list[str]:
    return sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


def check_flags(argv: list[str]) -> None:
    """``--config-name`` must name a config of harness/conf/ (unless ``--config-dir`` or
    ``--config-path`` names another place, which Hydra then checks)."""
    values: dict[str, str] = {}
    for i, arg in enumerate(argv):
        head, eq, value = arg.partition("=")
        if head in FLAGS_WITH_VALUE:
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else ""
            values[head] = value
    if any(k in values for k in ("--config-path", "-cp", "--config-dir", "-cd")):
        return
    for flag in ("--config-name", "-cn"):
        if flag in values and values[flag] not in _config_names():
            raise unknown(f"{flag} config", values[flag], _config_names())


def _read(line: str):
    """Hydra's Override of one command-line override, or a one-line refusal."""
    try:
        (override,) = parse_overrides([line])
    except Exception:
        raise ConfigError(f"cannot read the override {line!r}; allowed forms: {FORMS}") from None
    key = override.key_or_group
    if not isinstance(key, str) or not _KEY.fullmatch(key) or override.package is not None:
        raise ConfigError(f"{line!r} does not name a setting (got key {key!r}); allowed "
                          f"forms: {FORMS}")
    return override


def _check_sweep(line: str, override, multirun: bool) -> None:
    key = override.key_or_group
    if not multirun:
        raise ConfigError(f"{line} is a sweep and needs -m (nlt-run -m ... {line}); without "
                          "-m give one value")
    value = line.split("=", 1)[1].strip()
    if value.startswith("glob("):
        choices = group_choices(key) if "." not in key else []
        hint = f" (available: {choices})" if choices else ""
        raise ConfigError(f"{line}: glob() is not supported; list the values, "
                          f"{key}=a,b{hint}")
    if not override.is_discrete_sweep():
        raise ConfigError(f"{line}: the basic sweeper expands lists, range() and choice(), "
                          "not interval()")
    try:
        values = list(override.sweep_string_iterator())
    except Exception as exc:
        raise ConfigError(f"{line}: {exc}; allowed: a,b or range(start,stop[,step]) with "
                          "step != 0, or choice(a,b)") from None
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{line} lists {', '.join(map(str, repeated))} more than once; "
                          "each value of a sweep once")
    if key == "sweep" and len(values) > 1:
        raise ConfigError(f"{line}: one sweep preset per command; run "
                          + " and ".join(f"'{PROG} -m +sweep={v}'" for v in values)
                          + f" (presets: {group_choices('sweep')})")


def _check_hydra(line: str, key: str, value: str) -> None:
    if "/" in key:
        if key not in HYDRA_GROUPS:
            raise ConfigError(f"{line}: the config group {key} cannot be chosen; allowed: "
                              f"{list(HYDRA_GROUPS)}")
        if key == "hydra/launcher" and value not in launcher_choices():
            raise unknown("launcher", value, launcher_choices())
        if key == "hydra/launcher" and value in SLURM_LAUNCHERS and not shutil.which("sbatch"):
            raise ConfigError(f"{line} submits with SLURM's sbatch, which is not on PATH; on "
                              "this machine use hydra/launcher=basic or hydra/launcher=joblib")
        return
    if key.endswith("._target_") or key == "hydra.callbacks" or \
            key.startswith("hydra.callbacks."):
        raise ConfigError(f"{line}: nlt-run's launcher classes and callbacks are fixed; choose "
                          f"a launcher with hydra/launcher=NAME and set its options with "
                          f"hydra.launcher.KEY=value")
    if key not in HYDRA_KEYS and not key.startswith(HYDRA_PREFIXES):
        raise ConfigError(f"{line}: nlt-run does not let the command line change {key}; "
                          f"allowed: {[*HYDRA_KEYS, *(p + '*' for p in HYDRA_PREFIXES)]}")
    if key == "hydra.job.chdir" and value.strip().lower() not in ("false", "null", ""):
        raise ConfigError(f"{line}: a job must not change directory (cells would be written "
                          "where neither nlt-report nor a resume looks); allowed: "
                          "hydra.job.chdir=false")


def check_command_line(argv: list[str]) -> None:
    """Refuse, with one line, what Hydra would read differently from what the user meant;
    see the module's docstring. Commands that only print (``--help``) pass."""
    check_flags(argv)
    split = split_argv(argv)
    if split is None:
        return
    multirun = is_multirun(argv)
    seen: dict[str, str] = {}
    for line in split[0]:
        override = _read(line)
        key = override.key_or_group
        value = line.split("=", 1)[1] if "=" in line else ""
        if key in seen:
            raise ConfigError(f"{key} is given twice ({seen[key]} and {line}); give it once")
        seen[key] = line
        if override.is_delete():
            if not key.startswith(DELETABLE):
                raise ConfigError(f"{line}: {key!r} cannot be deleted; set it instead "
                                  f"({key}=VALUE)")
            continue
        if "${" in value and key not in INTERPOLATED:
            raise ConfigError(f"{line}: interpolations (${{...}}) are not accepted on the "
                              "command line; give the value itself")
        if override.is_sweep_override():
            _check_sweep(line, override, multirun)
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            _check_hydra(line, key, value)
