"""Errors a user can cause and fix; the command line turns them into one line and exit code 2."""


class ConfigError(ValueError):
    """A bad configuration value: the message names the value and the allowed ones."""


def unknown(kind: str, value, allowed) -> ConfigError:
    """``Unknown algorithm 'foo'. Available: ['gd', 'gn_gram']`` in curvlinops' wording."""
    return ConfigError(f"Unknown {kind} {value!r}. Available: {sorted(allowed)}")
