"""The runner: statuses, result schema, determinism, stopping, feasibility, resume."""

from __future__ import annotations

import json
import math
import subprocess

import pandas as pd
import pytest
import torch

from harness.common import provenance
from harness.execution.results import COLUMNS, STATUSES, cell_is_complete, time_per_iteration
from tests.helpers import run_in_process

SMALL = ("data.n=32", "model.m=256", "data.d=8")


def test_result_files_match_schema(store):
    outcome, run, rows = run_in_process(store, "algorithm=gn_gram", *SMALL)
    assert outcome.status == "converged"
    assert list(rows.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert {"t_forward", "t_gram", "t_solve", "t_update"} <= set(rows.columns)
    assert rows["iter"].tolist() == list(range(len(rows)))
    assert rows.loc[0, "rel_loss"] == 1.0 and rows.loc[0, "step_time_s"] == 0.0
    assert (rows["step_time_s"].iloc[1:] > 0).all()
    assert rows["time_s"].is_monotonic_increasing
    assert math.isclose(rows["time_s"].iloc[-1], rows["step_time_s"].sum(), rel_tol=1e-9)
    # phase times are parts of the step time
    phases = rows[[c for c in rows.columns if c.startswith("t_")]].iloc[1:].sum(axis=1)
    assert (phases <= rows["step_time_s"].iloc[1:] * 1.05 + 1e-4).all()
    assert run["status"] in STATUSES and run["rows"] == len(rows)
    assert run["iterations"] == len(rows) - 1
    assert run["final_loss"] == pytest.approx(rows["loss"].iloc[-1])
    prov = run["provenance"]
    for key in ("git_commit", "git_dirty", "packages", "threads", "device_name", "utc_time"):
        assert key in prov
    assert prov["packages"]["torch"] == torch.__version__.split("+")[0] or \
        prov["packages"]["torch"].startswith(torch.__version__.split("+")[0])
    assert run["config"]["algorithm"]["name"] == "gn_gram"
    assert rows["device"].unique().tolist() == ["cpu"]
    assert rows["threads"].iloc[0] == torch.get_num_threads()


def test_gn_gram_converges_fast_at_reference_size(store):
    """Issue 2: relative loss 1e-6 in at most 10 iterations at n=64, m=4096, d=16."""
    outcome, run, rows = run_in_process(store, "algorithm=gn_gram", "data.n=64",
                                        "model.m=4096", "data.d=16", "max_iters=10")
    assert outcome.status == "converged", run["reason"]
    assert rows["rel_loss"].iloc[-1] <= 1e-6 and run["iterations"] <= 10


@pytest.mark.parametrize("algorithm", ["gd", "sgd"])
def test_first_order_methods_decrease_the_loss(store, algorithm):
    outcome, run, rows = run_in_process(store, f"algorithm={algorithm}", *SMALL,
                                        "max_iters=50")
    assert outcome.status in ("max_iters", "converged")
    assert rows["loss"].iloc[-1] < 0.5 * rows["loss"].iloc[0]


def test_same_seed_same_trajectory(store, tmp_path):
    args = ("algorithm=sgd", *SMALL, "max_iters=20", "dtype=float64")
    _, _, a = run_in_process(store, *args)
    _, _, b = run_in_process(tmp_path / "other", *args)
    assert a["loss"].tolist() == b["loss"].tolist()


def test_algorithm_seed_changes_batches_not_data_or_init(store):
    args = ("algorithm=sgd", *SMALL, "max_iters=5", "dtype=float64")
    _, _, a = run_in_process(store, *args)
    _, _, b = run_in_process(store, *args, "seeds.algorithm=12345")
    assert a["loss"].iloc[0] == b["loss"].iloc[0]  # same data and init
    assert a["loss"].iloc[1:].tolist() != b["loss"].iloc[1:].tolist()  # other batches
    _, _, c = run_in_process(store, *args, "seed=1")
    assert c["loss"].iloc[0] != a["loss"].iloc[0]


def test_divergence_is_detected(store):
    outcome, run, rows = run_in_process(store, "algorithm=gd", "algorithm.lr=1000.0", *SMALL)
    assert outcome.status == "diverged"
    assert "loss" in run["reason"]


def test_max_iters_and_time_budget(store):
    outcome, run, _ = run_in_process(store, "algorithm=gd", *SMALL, "max_iters=3")
    assert outcome.status == "max_iters" and run["iterations"] == 3
    outcome, run, _ = run_in_process(store, "algorithm=gd", *SMALL, "max_iters=100000",
                                     "target_rel_loss=0", "time_budget_s=0.05")
    assert outcome.status == "time_budget"
    # the budget covers setup and steps
    assert 0.05 <= run["setup_time_s"] + run["total_time_s"] < 5


def test_memory_budget_skips_with_reason(store):
    outcome, run, rows = run_in_process(store, "algorithm=gn_gram", *SMALL,
                                        "memory_budget_gb=1e-6")
    assert outcome.status == "skipped"
    assert "bytes" in run["reason"] and "budget" in run["reason"]
    assert len(rows) == 0


def test_failure_is_recorded_and_resume_reruns_only_failed(store):
    outcome, run, rows = run_in_process(store, "algorithm=gd", *SMALL,
                                        "testing.fail_at_iter=3")
    assert outcome.status == "failed" and "injected fault" in run["reason"]
    assert len(rows) == 3  # iterations 0..2 kept
    assert not cell_is_complete(outcome.cell)
    again, run2, _ = run_in_process(store, "algorithm=gd", *SMALL)
    assert again.cell == outcome.cell and not again.reused  # same cell, rerun
    assert run2["status"] == "max_iters" or run2["status"] == "converged"
    third, _, _ = run_in_process(store, "algorithm=gd", *SMALL)
    assert third.reused
    forced, _, _ = run_in_process(store, "algorithm=gd", *SMALL, "force=true")
    assert not forced.reused


def test_truncated_result_is_not_complete(store):
    outcome, _, _ = run_in_process(store, "algorithm=gn_gram", *SMALL)
    path = outcome.cell / "result.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not cell_is_complete(outcome.cell)
    again, _, rows = run_in_process(store, "algorithm=gn_gram", *SMALL)
    assert not again.reused and len(rows) > 1


def test_cell_identity_ignores_store_but_not_hyperparameters(store, tmp_path):
    a, _, _ = run_in_process(store, "algorithm=gd", *SMALL, "max_iters=2")
    b, _, _ = run_in_process(tmp_path / "s2", "algorithm=gd", *SMALL, "max_iters=2")
    c, _, _ = run_in_process(store, "algorithm=gd", "algorithm.lr=0.5", *SMALL,
                             "max_iters=2")
    assert a.cell.name == b.cell.name
    assert a.cell.name != c.cell.name


def test_float32_and_float64_both_run(store):
    for dtype in ("float32", "float64"):
        outcome, _, rows = run_in_process(store, "algorithm=gn_gram", *SMALL, f"dtype={dtype}")
        assert outcome.status == "converged"
        assert rows["dtype"].iloc[0] == dtype


def test_run_json_is_valid_json_with_config(store):
    outcome, _, _ = run_in_process(store, "algorithm=gd", *SMALL, "max_iters=2")
    run = json.loads((outcome.cell / "run.json").read_text())
    assert run["identity"]["device"] == "cpu"
    assert "store" not in run["identity"]
    frame = pd.read_parquet(outcome.cell / "result.parquet")
    assert frame["git_commit"].iloc[0] == run["provenance"]["git_commit"]


def test_time_per_iteration_counts_every_timed_step():
    # the runner's untimed warm-up step comes first, so step 1 is an ordinary step
    traj = pd.DataFrame({"iter": [0, 1, 2, 3, 4], "step_time_s": [0.0, 9.0, 1.0, 2.0, 7.0]})
    assert time_per_iteration(traj) == 4.5  # median of steps 1..4
    assert time_per_iteration(traj, "amortised") == 4.75  # mean of steps 1..4
    assert time_per_iteration(traj[traj["iter"] == 0]) is None


def test_library_warmup_is_recorded_apart_from_setup(store):
    # without the warm-up step (and with a forced kernel route: no calibration), gn_exact's
    # first torch.func call is its setup's "warmup" phase: process start-up, not the method's
    # cost
    fixed = ("warmup_steps=0", "kernels=float")
    outcome, run, rows = run_in_process(store, "algorithm=gn_exact", *SMALL, *fixed)
    assert outcome.status == "converged"
    assert run["warmup_time_s"] > 0
    assert run["setup_phases_s"]["warmup"] == pytest.approx(run["warmup_time_s"])
    # gn_exact's setup is its warm-up alone: what is left must be far below it
    assert 0 <= run["setup_time_s"] < 0.5 * run["warmup_time_s"]
    _, run_gram, _ = run_in_process(store, "algorithm=gn_gram", *SMALL, *fixed)
    assert run_gram["warmup_time_s"] == 0.0
    # the default: one untimed step of a throw-away copy, for every method alike
    _, run_gram, _ = run_in_process(store, "algorithm=gn_gram", *SMALL)
    assert run_gram["warmup_steps"] == 1 and run_gram["warmup_time_s"] > 0


def test_git_dirty_ignores_regenerated_reports(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "REPORT.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    state = provenance.git_state.__wrapped__
    assert state()[1] is False
    (tmp_path / "reports" / "REPORT.md").write_text("regenerated\n")
    assert state()[1] is False  # an output changed, not the code
    (tmp_path / "code.py").write_text("x = 2\n")
    assert state()[1] is True
