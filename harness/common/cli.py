"""Command-line plumbing shared by the console scripts: one-line errors with exit code 2, and a
pre-flight check that validates every value of a sweep before any job starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from harness.common.errors import ConfigError

EXIT_BAD_INPUT = 2


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def guarded(prog: str, fn: Callable[[], object]) -> object:
    """Run ``fn``; a ConfigError becomes one line on stderr and exit code 2."""
    try:
        return fn()
    except ConfigError as exc:
        fail(prog, str(exc))


# Hydra flags that make the app print instead of run: skip the pre-flight for them.
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve",
               "--shell-completion", "-sc", "--version"}
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
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
        if head in _INFO_FLAGS:
            return None
        if head in _FLAGS_WITH_VALUE:
            custom = True
            skip_next = "=" not in arg
            continue
        if arg.startswith("-") and not arg.startswith("--") and "=" not in arg:
            continue  # -m and friends
        if arg.startswith("--"):
            continue
        overrides.append(arg)
    return overrides, custom
