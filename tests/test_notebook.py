"""The notebook API (``harness.reporting.api``): docs/examples/notebook_example.py runs as
written (tiny sizes), and each function answers bad input with a one-line ConfigError."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.common.errors import ConfigError
from harness.reporting import api

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "notebook_example.py"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    work = tmp_path_factory.mktemp("notebook")
    argv = sys.argv
    sys.argv = [str(EXAMPLE), str(work)]
    try:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        sys.argv = argv
    return work


def test_the_example_runs_cells_loads_them_draws_a_figure_and_writes_the_report(example):
    res = api.load(example / "results")
    assert len(res.cells) == 4 and not res.problems
    assert set(res.cells["algorithm"]) == {"gd", "gn_gram"}
    assert {"cell", "iter", "rel_loss", "step_time_s"} <= set(res.rows.columns)
    assert (example / "loss_n64.png").stat().st_size > 1000
    assert (example / "report" / "REPORT.md").is_file()
    assert (example / "report" / "report.html").is_file()


def test_a_finished_cell_is_reused(example):
    again = api.run("algorithm=gd", "data.n=32", "model.m=128", "max_iters=5",
                    store=example / "results")
    assert list(again["reused"]) == [True]


def test_figures_are_named_by_number_file_name_or_slug(example):
    res = api.load(example / "results")
    by_number = api.figure(3, res.cells, res.rows)
    by_slug = api.figure("loss_vs_iter", res.cells, res.rows)
    by_name = api.figure("fig03_loss_vs_iter", res.cells, res.rows)
    assert len(by_number) == len(by_slug) == len(by_name) == 1
    assert by_number[0].caption.startswith("Relative loss")
    assert list(api.figures()["number"]) == sorted(api.figures()["number"])


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="not registered; registered: 1 "):
        api.figure(99, pd.DataFrame({"cell": ["x"]}))
    with pytest.raises(ConfigError) as err:
        api.run("algorithm=no_such_method", store=tmp_path / "store")
    assert "no_such_method" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "store").exists()
    with pytest.raises(api.NotDrawn):
        api.figure(1, pd.DataFrame())
