"""Plugins of every kind from outside the repository: a method, a sketch, a dataset and a
model, each one file of ``tests/plugins/nlt_toys/`` made discoverable through its entry-point
group (``nlt.algorithms``, ``nlt.sketches``, ``nlt.datasets``, ``nlt.models``) with no YAML and
no edit of the harness. In a fresh interpreter that sees them as an installed distribution (a
``.dist-info`` with ``entry_points.txt`` on ``PYTHONPATH``, what ``pip install`` leaves), each
must be listed by ``nlt-list``, run as a cell, be priced by the cost model, and appear in a
report; the method also keeps the contract of ``tests/test_contract.py`` and gets a C2 fit
with a theory slope."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOYS = Path(__file__).resolve().parent / "plugins" / "nlt_toys"

ENTRY_POINTS = """[nlt.algorithms]
toy_damped_gd = nlt_toys.toy_method:DampedGD

[nlt.sketches]
toy_sparse_sign = nlt_toys.toy_sketch:SparseSignSketch

[nlt.datasets]
toy_circle = nlt_toys.toy_dataset:Circle

[nlt.models]
toy_random_features = nlt_toys.toy_model:RandomFeatures
"""

#: Run in the fresh interpreter: every check prints into one JSON line.
DRIVER = '''
import json, subprocess, sys, tempfile
from pathlib import Path

from algorithms import ALGORITHMS
from harness import costmodel
from harness.model import MODELS
from harness.model.data import DATASETS
from harness.reporting import fits
from harness.reporting.report import build
from harness.sketches import SKETCHES
from tests import test_contract as contract
from tests.helpers import run_in_process

listing = subprocess.run([sys.executable, "-m", "harness.execution.listing"],
                         capture_output=True, text=True, check=True).stdout
store = Path(tempfile.mkdtemp())
small = ("data.n=32", "model.m=128", "data.d=8", "max_iters=3")
cells = {
    "method": ("algorithm=toy_damped_gd",),
    "sketch": ("algorithm=gn_sketch", "algorithm.sketch=toy_sparse_sign"),
    "dataset": ("algorithm=gn_gram", "data=toy_circle"),
    "model": ("algorithm=gn_cg", "model=toy_random_features"),
}
out = {"modules": {k: r.get(n).__module__ for k, r, n in (
    ("method", ALGORITHMS, "toy_damped_gd"), ("sketch", SKETCHES, "toy_sparse_sign"),
    ("dataset", DATASETS, "toy_circle"), ("model", MODELS, "toy_random_features"))},
       "listed": [name in listing for name in ("toy_damped_gd", "toy_sparse_sign",
                                                "toy_circle", "toy_random_features")],
       "cells": {}}
for kind, args in cells.items():
    outcome, run, rows = run_in_process(store, *small, *args)
    out["cells"][kind] = {"status": outcome.status, "rows": len(rows),
                          "loss_fell": float(rows["loss"].iloc[-1]) < float(rows["loss"].iloc[0])}
cls = ALGORITHMS.get("toy_damped_gd")
for check in contract.CHECKS.values():
    check(cls)
table = fits.scaling_fits(contract.synthetic_cells(cls), "n", min_time_s=0.0)
out["fits"] = table[["algorithm", "term", "theory", "agrees"]].to_dict("records")
prof = costmodel.Profile.synthetic(flops=1e9, elements=1e9)
out["predicted"] = {
    "method": costmodel.predict("toy_damped_gd", {}, 64, 256, 8, prof)["total"],
    "sketch": costmodel.predict("gn_sketch", {"sketch": "toy_sparse_sign"}, 64, 256, 8,
                                prof)["sketch"],
    "model": costmodel.predict("gn_gram", {}, 64, 256, 8, prof,
                               model="toy_random_features")["total"],
}
profile = prof.save(store / "profile.json")
report = build([str(store)], store / "report", profiles=[str(profile)])
text = (store / "report" / "REPORT.md").read_text()
out["in_report"] = {k: k_name in text for k, k_name in (
    ("method", "toy_damped_gd"), ("sketch", "toy_sparse_sign"), ("dataset", "toy_circle"),
    ("model", "toy_random_features"))}
out["report_cells"] = len(report.cells)
print(json.dumps(out))
'''


def _install(site: Path) -> None:
    """The package and the record ``pip install`` would leave: nlt_toys/ and its dist-info."""
    shutil.copytree(TOYS, site / "nlt_toys", ignore=shutil.ignore_patterns("__pycache__"))
    info = site / "nlt_toys-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nlt-toys\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def test_a_plugin_of_each_kind_is_listed_run_priced_and_reported(tmp_path):
    site = tmp_path / "site"
    _install(site)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["modules"] == {"method": "nlt_toys.toy_method", "sketch": "nlt_toys.toy_sketch",
                              "dataset": "nlt_toys.toy_dataset", "model": "nlt_toys.toy_model"}
    assert all(got["listed"]), got["listed"]
    for kind, cell in got["cells"].items():
        # three steps: the Gauss–Newton cells may reach ε before the cap
        assert cell["status"] in ("max_iters", "converged") and 2 <= cell["rows"] <= 4, \
            (kind, cell)
        assert cell["loss_fell"], kind
    (fit,) = got["fits"]
    assert fit["algorithm"] == "toy_damped_gd" and fit["term"] == "nmd"
    assert abs(fit["theory"] - 1.0) < 1e-9 and fit["agrees"]
    assert all(v > 0 for v in got["predicted"].values()), got["predicted"]
    assert all(got["in_report"].values()), got["in_report"]
    assert got["report_cells"] == 4
