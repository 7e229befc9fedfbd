"""The results store's schema, versioned, and its one upgrade path.

Every run.json written by this code carries ``schema_version`` (``SCHEMA_VERSION``). A cell
written by an earlier version is upgraded when it is read (``upgrade_run``, ``upgrade_rows``,
called by ``harness.execution.results.load_run`` and the report's loader), so that nothing
downstream knows about history:

========  ==================================================================================
version   what changed
========  ==================================================================================
1         (no ``schema_version``) cells written before the model group have no ``model`` or
          ``depth``: they are the two-layer model, depth 1
2         ``schema_version`` written; ``model`` and ``depth`` in run.json and every row
========  ==================================================================================

A cell's identity (its hash and directory name) must not change when an option is added:
``LATER_OPTIONS`` lists the options added after the first stores, each with the value every
cell had before it existed. Such an option enters the identity only when it differs from
that value, so every committed cell keeps its hash.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

SCHEMA_VERSION = 2

#: option (a top-level key of the identity) → its value before it existed: a dict of
#: sub-keys dropped together when all equal it, or a value that drops the key
LATER_OPTIONS: dict[str, Any] = {
    "record": {"ntk": False},  # opt-in diagnostics
    "wall_budget_s": None,  # the wall-clock cap
    "model": {"name": "two_layer", "depth": 1},  # the model group
    # one cell on P ranks (harness.execution.sharded_cell)
    "distributed": {"kind": "none", "world_size": 1, "backend": "gloo", "threads_per_rank": 1},
    # a sub-key added after its option: "<option>.<key>" dropped alone where at this value
    "distributed.nodes": 1,
}

#: what a version-1 cell without these fields was
_V1_DEFAULTS = {"model": "two_layer", "depth": 1}


def identity_without_history(identity: dict[str, Any]) -> dict[str, Any]:
    """``identity`` with every ``LATER_OPTIONS`` entry left out where it holds the value all
    cells had before the option existed."""
    out = dict(identity)
    for key, before in LATER_OPTIONS.items():
        if "." in key:  # after the options: a sub-key at its first value is dropped alone
            option, sub = key.split(".", 1)
            if isinstance(out.get(option), dict) and out[option].get(sub, before) == before:
                out[option] = {k: v for k, v in out[option].items() if k != sub}
                if not out[option]:
                    del out[option]
            continue
        if key not in out:
            continue
        value = out[key]
        if isinstance(before, dict) and isinstance(value, dict):
            if before == value:
                del out[key]
            elif all(value.get(k) == v for k, v in before.items()):
                out[key] = {k: v for k, v in value.items() if k not in before}
        elif value == before:
            del out[key]
    return out


def version_of(run: dict[str, Any]) -> int:
    v = run.get("schema_version", 1)
    return v if isinstance(v, int) and not isinstance(v, bool) else 1


def upgrade_run(run: dict[str, Any]) -> dict[str, Any]:
    """run.json of any version, as the current version reads it (a new dict)."""
    run = dict(run)
    if version_of(run) < 2:
        for key, value in _V1_DEFAULTS.items():
            if run.get(key) is None:
                run[key] = value
    run["schema_version"] = max(version_of(run), SCHEMA_VERSION)
    return run


def upgrade_rows(rows: pd.DataFrame, run: dict[str, Any]) -> pd.DataFrame:
    """A cell's result rows with the columns the current version has (from its upgraded
    ``run``): a version-1 cell's rows gain ``model`` and ``depth``."""
    missing = [k for k in _V1_DEFAULTS if k not in rows.columns]
    if not missing:
        return rows
    rows = rows.copy()
    for key in missing:
        rows[key] = run.get(key, _V1_DEFAULTS[key])
    return rows
