"""Everything the harness needs of Hydra beyond its public ``compose``/``main``, in one place.

Hydra's command-line grammar (``OverridesParser``), its basic sweeper's expansion of a sweep
into jobs and its order of applying value overrides are what ``nlt-run`` validates against
before a job starts; the last two live in Hydra's private modules (``hydra._internal``). They
are used here and nowhere else, and ``HYDRA_WRITTEN_FOR`` names the Hydra release this module
was written for: a test fails when the installed one differs, so an upgrade is checked here
first instead of surfacing as a wrong pre-flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: The Hydra release (major.minor) whose private APIs this module calls.
HYDRA_WRITTEN_FOR = "1.3"

#: Hydra flags that make the app print instead of run: no pre-flight for them.
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve",
              "--shell-completion", "-sc", "--version"}
#: Hydra flags followed by a value (``--config-name NAME``).
FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                    "--package", "-p", "--experimental-rerun"}


def split_argv(argv: list[str]) -> tuple[list[str], bool] | None:
    """(overrides, custom_config) from Hydra's argv; None when the app will only print."""
    overrides, custom = [], False
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        head = arg.split("=", 1)[0]
        if head in INFO_FLAGS:
            return None
        if head in FLAGS_WITH_VALUE:
            custom = True
            skip_next = "=" not in arg
            continue
        if arg.startswith("-") and not arg.startswith("--") and "=" not in arg:
            continue  # -m and friends
        if arg.startswith("--"):
            continue
        overrides.append(arg)
    return overrides, custom


def parse_overrides(lines: Iterable[str]) -> list:
    """Hydra's ``Override`` objects of command-line override strings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(lines))


def key_of(line: str) -> str:
    """The key an override sets, without its ``+``/``~``/``++`` prefix."""
    return line.split("=", 1)[0].lstrip("+~")


def sweep_jobs(preset: Mapping[str, object], overrides: Iterable[str]) -> list[list[str]]:
    """The override list of every job Hydra's basic sweeper launches for a sweep preset's
    ``hydra.sweeper.params`` crossed with the command line's overrides (a command-line key
    replaces the preset's dimension of the same key), in the sweeper's own order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    overrides = list(overrides)
    given = {key_of(o) for o in overrides}
    lines = [f"{k}={v}" for k, v in preset.items() if key_of(str(k)) not in given] + overrides
    parsed = parse_overrides(lines)
    for o in parsed:
        if o.is_sweep_override() and not o.is_discrete_sweep():
            raise ValueError(f"the basic sweeper does not expand {o.input_line}")
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def apply_overrides(cfg, lines: Iterable[str]) -> None:
    """Apply plain value overrides to a composed config in place, in Hydra's order and with
    its rules (``+key`` adds, ``~key`` deletes, ``key`` sets an existing key)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(parse_overrides(lines), cfg)


def tolerate_unwritable_job_records(report) -> None:
    """Hydra writes each job's ``.hydra/*.yaml`` before the job runs, and a write that fails
    (a full disk) would end the whole sweep with a traceback. Wrapped here (Hydra's private
    ``hydra.core.utils._save_config``): a failed write removes what it left, is reported with
    ``report(path, exc)`` and the job goes on to record its cell as failed."""
    import os

    import hydra.core.utils as hydra_utils

    original = hydra_utils._save_config
    if getattr(original, "nlt_tolerant", False):
        return

    def save_config(cfg, filename, output_dir) -> None:
        try:
            original(cfg, filename, output_dir)
        except OSError as exc:
            path = os.path.join(str(output_dir), filename)
            try:
                os.unlink(path)
            except OSError:
                pass
            report(path, exc)

    save_config.nlt_tolerant = True  # type: ignore[attr-defined]
    hydra_utils._save_config = save_config
