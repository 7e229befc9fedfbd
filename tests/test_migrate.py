"""The store's schema version and its upgrade path (harness.execution.migrate), the cell
identities of the committed stores, and the Hydra release the adapter was written for."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import hydra
import pandas as pd
import pytest

from harness.execution import hydra_adapter, migrate
from harness.execution.hydra_adapter import split_argv
from harness.execution.preflight import preflight
from harness.execution.results import cell_name, load_run
from harness.execution.suites import suite_parts
from harness.reporting.load import load_stores
from tests.helpers import run_in_process

ROOT = Path(__file__).resolve().parent.parent


def test_the_adapter_pins_the_hydra_release_it_was_written_for():
    major_minor = ".".join(hydra.__version__.split(".")[:2])
    assert major_minor == hydra_adapter.HYDRA_WRITTEN_FOR, (
        f"Hydra {hydra.__version__} is installed; harness/execution/hydra_adapter.py calls "
        f"Hydra's private APIs as of {hydra_adapter.HYDRA_WRITTEN_FOR}: check them, then "
        f"update HYDRA_WRITTEN_FOR")


def test_identity_leaves_out_options_at_their_value_before_they_existed():
    base = {"seed": 0, "max_iters": 5}
    assert migrate.identity_without_history(
        {**base, "record": {"ntk": False}, "wall_budget_s": None,
         "model": {"name": "two_layer", "m": 64, "depth": 1}}) == {**base, "model": {"m": 64}}
    kept = {**base, "record": {"ntk": True}, "wall_budget_s": 30.0,
            "model": {"name": "mlp", "m": 64, "depth": 1}}
    assert migrate.identity_without_history(kept) == kept


def test_a_version_1_cell_is_upgraded_when_read(tmp_path):
    outcome, run, rows = run_in_process(tmp_path / "s", "algorithm=gd", "data.n=16",
                                        "model.m=32", "max_iters=2")
    assert run["schema_version"] == migrate.SCHEMA_VERSION
    # rewrite it as a cell from before the model group and the schema version
    old = {k: v for k, v in run.items() if k not in ("model", "depth", "schema_version")}
    (outcome.cell / "run.json").write_text(json.dumps(old))
    frame = pd.read_parquet(outcome.cell / "result.parquet").drop(columns=["model", "depth"])
    read, why = load_run(outcome.cell)
    assert why is None and read["model"] == "two_layer" and read["depth"] == 1
    assert read["schema_version"] == migrate.SCHEMA_VERSION
    up = migrate.upgrade_rows(frame, read)
    assert list(up["model"].unique()) == ["two_layer"] and list(up["depth"].unique()) == [1]
    # the report reads the old cell as the current version reads it
    loaded = load_stores([tmp_path / "s"])
    assert loaded.runs["model"].tolist() == ["two_layer"]
    assert loaded.runs["depth"].tolist() == [1]


def _readme_commands() -> list[list[str]]:
    """The ``nlt-run`` commands the README gives for the committed stores."""
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "reports.md").read_text()
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("nlt-run -m") and "store=results/" in line:
            out.append(shlex.split(line.split("#")[0])[1:])
    return out


@pytest.mark.parametrize("report", ["cpu", "deep"])
def test_the_committed_cells_keep_their_identity(report):
    """Every cell of a committed report is a cell the README's commands would write today:
    the same directory name, so the same configuration hash."""
    cells = pd.read_csv(ROOT / "reports" / report / "cells.csv")
    stores = {Path(s).name: s for s in cells["store"]}
    planned: dict[str, set[str]] = {name: set() for name in stores}
    for argv in _readme_commands():
        store = next((a.split("=", 1)[1] for a in argv if a.startswith("store=")), None)
        name = Path(store).name if store else None
        if name not in planned:
            continue
        for part in suite_parts(argv) or [argv]:
            preflight(split_argv(part)[0],
                      visit=lambda cfg, run, name=name: planned[name].add(
                          cell_name(run.identity)))
    for name, store in stores.items():
        # a report of several stores names a cell <store>/<cell>, of one store <cell>
        committed = {c.removeprefix(f"{name}/") if len(stores) > 1 else c
                     for c in cells.loc[cells["store"] == store, "cell"]}
        missing = sorted(committed - planned[name])
        assert planned[name] and not missing, (name, len(missing), missing[:3])
