"""The package tree tells the architecture: imports run one way (``harness.LAYERS``), and no
module imports itself back through others, counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness import LAYERS

ROOT = Path(__file__).resolve().parent.parent
#: files of a package larger than this are split (figure drawing excepted)
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("harness", "algorithms"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    matches = [i for i, prefix in enumerate(LAYERS)
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer of harness.LAYERS"
    return max(matches)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the harness's own code in ``path``, at any depth;
    ``from pkg import mod`` counts as an import of ``pkg.mod`` where that is a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((node.lineno, sub if sub in MODULES else node.module))
    return [(line, m) for line, m in out if m.split(".")[0] in ("harness", "algorithms")]


def test_every_module_belongs_to_a_layer():
    for module in MODULES:
        if module != "harness":
            _layer(module)


def test_imports_only_go_down_the_layers():
    bad = []
    for module, path in MODULES.items():
        if module == "harness":
            continue
        mine = _layer(module)
        for line, target in _imports(path):
            if target != "harness" and _layer(target) > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[mine]}) "
                           f"imports {target} ({LAYERS[_layer(target)]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    graph = {m: {t for _, t in _imports(p) if t in MODULES and t != m}
             for m, p in MODULES.items()}
    # a package's __init__ that imports its own modules is how a package exposes them: the
    # edge from a module to its own package's __init__ is the only one left out
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles[:10])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_the_size_limit(module):
    path = MODULES[module]
    if "figures" in path.parts:  # figure drawing is long by nature
        return
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES})"
