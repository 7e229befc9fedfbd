"""A method added from outside the repository: one file in a package of its own, made
discoverable through the ``nlt.algorithms`` entry-point group, with no YAML (its Params
dataclass is its Hydra config, harness/execution/config.py ``register_configs``). In a fresh
interpreter
that sees the package as an installed distribution (a ``.dist-info`` with ``entry_points.txt``
on ``PYTHONPATH``, which is what ``pip install`` leaves), it must be listed by ``nlt-list``,
run as a cell, get a C2 fit with a theory slope, and keep the contract of
``tests/test_contract.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TOY = '''
r"""Damped gradient descent (a toy): W ← W − η/(1 + μ) · Jᵀr."""

from dataclasses import dataclass

from algorithms.base import Algorithm, StepInfo, register, require
from harness.common.flops import monomial


@dataclass
class ToyParams:
    lr: float = 0.5  # η
    damping: float = 1.0  # μ

    def __post_init__(self):
        require(self.lr > 0, "lr", "positive", self.lr)
        require(self.damping >= 0, "damping", ">= 0", self.damping)


@register
class DampedGD(Algorithm):
    """Damped gradient descent, W ← W − η/(1 + μ) Jᵀr (a plugin)."""

    name = "toy_damped_gd"
    Params = ToyParams
    references = ("A toy for the plugin test",)
    cost_text = "4nmd"

    @classmethod
    def cost_terms(cls, n, m, d, params, inner, refresh):
        return [monomial("nmd", 4, n, m, d, 1, 1, 1)]

    def step(self, phase):
        with phase("forward"):
            lin = self.problem.linearize()
        with phase("update"):
            self.problem.update(lin.jacobian.rmatvec(lin.residual),
                                self.params.lr / (1 + self.params.damping))
        return StepInfo()
'''

#: Run in the fresh interpreter: every check prints one JSON line.
DRIVER = '''
import json, subprocess, sys, tempfile
from pathlib import Path

from algorithms.base import ALGORITHMS
from harness.reporting import fits
from tests import test_contract as contract
from tests.helpers import run_in_process

cls = ALGORITHMS.get("toy_damped_gd")
listing = subprocess.run([sys.executable, "-m", "harness.execution.listing", "algorithms"],
                         capture_output=True, text=True, check=True).stdout
store = Path(tempfile.mkdtemp())
outcome, run, rows = run_in_process(store, "algorithm=toy_damped_gd", "data.n=32",
                                    "model.m=256", "data.d=8", "max_iters=3")
for check in contract.CHECKS.values():
    check(cls)
table = fits.scaling_fits(contract.synthetic_cells(cls), "n", min_time_s=0.0)
print(json.dumps({"module": cls.__module__, "listed": "toy_damped_gd" in listing,
                  "status": outcome.status, "rows": len(rows),
                  "loss_fell": float(rows["loss"].iloc[-1]) < float(rows["loss"].iloc[0]),
                  "fits": table[["algorithm", "term", "theory", "agrees"]].to_dict("records")}))
'''


def _install(site: Path) -> None:
    """The package and the record ``pip install`` would leave: nlt_toy/ and its dist-info."""
    (site / "nlt_toy").mkdir(parents=True)
    (site / "nlt_toy" / "__init__.py").write_text("")
    (site / "nlt_toy" / "damped_gd.py").write_text(textwrap.dedent(TOY))
    info = site / "nlt_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nlt-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[nlt.algorithms]\ntoy_damped_gd = nlt_toy.damped_gd:DampedGD\n")


def test_a_plugin_method_is_listed_run_fitted_and_keeps_the_contract(tmp_path):
    site = tmp_path / "site"
    _install(site)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["module"] == "nlt_toy.damped_gd" and got["listed"]
    assert got["status"] == "max_iters" and got["rows"] == 4 and got["loss_fell"]
    (fit,) = got["fits"]
    assert fit["algorithm"] == "toy_damped_gd" and fit["term"] == "nmd"
    assert abs(fit["theory"] - 1.0) < 1e-9 and fit["agrees"]
