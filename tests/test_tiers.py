"""The test tiers name real tests: an entry of conftest's SLOW or WHOLE_COMMANDS that no
longer matches a test (renamed, deleted) would silently move nothing."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import CLI_MODULES, SLOW, SLOW_FIXTURES, WHOLE_COMMANDS, WHOLE_FIXTURES

TESTS = Path(__file__).resolve().parent


def _defined(module: str) -> str:
    return (TESTS / f"{module}.py").read_text()


def test_every_slow_entry_names_a_test_that_exists():
    for entry in SLOW:
        module, name = entry.split(".py::")
        base = re.sub(r"\[.*\]$", "", name)
        assert f"def {base}(" in _defined(module), entry


def test_every_whole_command_and_fixture_exists():
    sources = {p.stem: p.read_text() for p in TESTS.glob("test_*.py")}
    for name in WHOLE_COMMANDS:
        assert any(f"def {name}(" in text for text in sources.values()), name
    for module, fixture in WHOLE_FIXTURES | SLOW_FIXTURES:
        assert f"def {fixture}(" in sources[module], (module, fixture)
    assert all(m in sources for m in CLI_MODULES)
