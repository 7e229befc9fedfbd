"""Errors a user can cause and fix, and how every console script reports them: one line on
stderr naming the bad value and the allowed ones, and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

#: The exit code of bad input (a refused command line, option or file).
EXIT_BAD_INPUT = 2


class ConfigError(ValueError):
    """A bad configuration value: the message names the value and the allowed ones."""


def unknown(kind: str, value, allowed) -> ConfigError:
    """``Unknown algorithm 'foo'. Available: ['gd', 'gn_gram']`` in curvlinops' wording."""
    return ConfigError(f"Unknown {kind} {value!r}. Available: {sorted(allowed)}")


def fail(prog: str, message: str) -> NoReturn:
    """``prog: error: message`` on stderr, exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def guarded(prog: str, fn: Callable[[], object]) -> object:
    """Run ``fn``; a ConfigError becomes one line on stderr and exit code 2."""
    try:
        return fn()
    except ConfigError as exc:
        fail(prog, str(exc))
