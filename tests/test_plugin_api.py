"""The plugin API is public and documented: every name a method may rely on
(``algorithms.base.__all__``, ``algorithms.solvers.__all__``) exists, has a docstring, and is
listed in docs/extending.md; the entry-point table there names every registry group."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import algorithms.base as base
import algorithms.solvers as solvers
from harness.common.registry import GROUPS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()


@pytest.mark.parametrize("module", [base, solvers], ids=lambda m: m.__name__)
def test_every_public_name_is_documented(module):
    section = DOC[DOC.index("### The plugin API"):]
    for name in module.__all__:
        obj = getattr(module, name)
        assert f"`{name}" in section or f", `{name}`" in section, name
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"


def test_the_entry_point_table_names_every_group():
    for group in GROUPS.values():
        assert f'[project.entry-points."{group}"]' in DOC
