"""Command lines: one-line errors with exit code 2, nlt-list, a run and a small sweep."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import nlt_run, nlt_run_refusal

SMALL = ("data.n=16", "model.m=64", "data.d=4", "device=cpu")

BAD_INPUTS = [
    (["algorithm=nope"], "Unknown algorithm 'nope'", "gn_gram"),
    (["data=nope"], "Unknown dataset 'nope'", "synthetic_hard"),
    (["data.n=0"], "data.n must be a positive integer, got 0", None),
    (["model.m=-5"], "model.m must be a positive integer, got -5", None),
    (["data.d=abc"], "data.d", "abc"),
    (["dtype=float16"], "Unknown dtype 'float16'", "float64"),
    (["device=tpu"], "Unknown device 'tpu'", "cuda"),
    (["algorithm=gd", "algorithm.nope=1"], "Unknown gd parameter 'nope'", "power_iters"),
    (["-m", "algorithm=gd,nope"], "Unknown algorithm 'nope'", "gn_gram"),
    (["-m", "+sweep=nope"], "Unknown sweep preset 'nope'", "demo"),
    (["-m", "data.n=16,0"], "data.n must be a positive integer, got 0", None),
    (["data=digits", "data.d=8"], "digits has d=64", "64"),
    (["model=resnet"], "resnet", "two_layer"),
]


def _one_line(code: int, lines: list[str], message: str, allowed: str | None) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("nlt-run: error: ") and message in lines[0]
    if allowed:
        assert allowed in lines[0]


@pytest.mark.parametrize("args,message,allowed", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message, allowed):
    store = tmp_path / "results"
    _one_line(*nlt_run_refusal(capsys, *args, f"store={store}"), message, allowed)
    assert not store.exists()


#: BAD_INPUTS through the real command: a run and a sweep in the default run, the rest with
#: `make test-all` (each costs a process start with its torch import, ~4 s on 2 cores)
CLI_BAD = [case if i in (0, 10) else pytest.param(*case, marks=pytest.mark.slow)
           for i, case in enumerate(BAD_INPUTS)]


@pytest.mark.parametrize("args,message,allowed", CLI_BAD)
def test_bad_input_through_the_command_is_one_line_and_exit_2(tmp_path, args, message,
                                                              allowed):
    proc = nlt_run(tmp_path, *args, f"store={tmp_path / 'results'}")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    _one_line(proc.returncode, lines, message, allowed)
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_input_loses_nothing_already_written(tmp_path):
    store = tmp_path / "results"
    ok = nlt_run(tmp_path, "algorithm=gd", "max_iters=2", *SMALL, f"store={store}")
    assert ok.returncode == 0, ok.stderr
    before = sorted(p.relative_to(store) for p in store.rglob("*.json") if "_hydra" not in
                    p.parts)
    bad = nlt_run(tmp_path, "algorithm=gd", "max_iters=2", *SMALL, "dtype=half",
                  f"store={store}")
    assert bad.returncode == 2
    after = sorted(p.relative_to(store) for p in store.rglob("*.json") if "_hydra" not in
                   p.parts)
    assert before == after and len(before) == 1


def test_single_run_prints_status_and_result_path(tmp_path):
    proc = nlt_run(tmp_path, "algorithm=gn_gram", *SMALL, f"store={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    assert "converged" in proc.stdout
    path = proc.stdout.strip().splitlines()[-1].split("results: ", 1)[1]
    run = json.loads((tmp_path / path / "run.json").read_text())
    assert run["status"] == "converged"


def test_failed_single_run_exits_1(tmp_path):
    proc = nlt_run(tmp_path, "algorithm=gd", *SMALL, "testing.fail_at_iter=2",
                   f"store={tmp_path / 'r'}")
    assert proc.returncode == 1
    assert "failed" in proc.stdout


def test_small_sweep_prints_summary(tmp_path):
    proc = nlt_run(tmp_path, "-m", "algorithm=gd,gn_gram", "data.n=16,32", "model.m=64",
                   "data.d=4", "device=cpu", "max_iters=30", f"store={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = max(i for i, ln in enumerate(lines) if ln.split()[:2] == ["algorithm", "dataset"])
    rows = lines[header + 1:header + 5]
    assert sorted(r.split()[0] for r in rows) == ["gd", "gd", "gn_gram", "gn_gram"]
    assert lines[header + 5].startswith("cells by status")


def test_nlt_list_shows_methods_datasets_and_params():
    proc = subprocess.run([sys.executable, "-m", "harness.execution.listing"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for word in ("gd", "sgd", "gn_gram", "synthetic", "synthetic_hard", "digits",
                 "step_size=1.0", "batch_size=32", "ref:"):
        assert word in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "harness.execution.listing", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Unknown section 'nope'" in bad.stderr


def test_sweep_size_crosses_preset_and_command_line_values():
    from omegaconf import OmegaConf

    from harness.execution.app import count_jobs

    def config(params: dict, task: list[str]):
        return OmegaConf.create({"hydra": {"sweeper": {"params": params},
                                           "overrides": {"task": task}}})

    # the command line's data.n replaces the preset's; seed adds a third factor
    cfg = config({"algorithm": "gd,gn_gram", "data.n": "16,32,64"}, ["data.n=16,32", "seed=0,1,2"])
    assert count_jobs(cfg) == 2 * 2 * 3
    assert count_jobs(config({}, ["data.n=range(16,20)", "model.m=64"])) == 4
    assert count_jobs(config({}, [])) == 1
    with pytest.raises(ValueError, match="interval"):
        count_jobs(config({}, ["lr=interval(0,1)"]))


def test_each_sweep_summary_keeps_its_own_state(tmp_path):
    from harness.execution.app import SweepState, SweepSummary

    first, second = SweepSummary(SweepState()), SweepSummary(SweepState())
    first.state.sweep_dir = tmp_path
    first.state.report()  # no job directories yet: nothing to print, but reported once
    assert first.state.reported and not second.state.reported and second.state.sweep_dir is None
    assert SweepSummary().state is not SweepSummary().state  # outside nlt-run: one each


def test_options_of_a_swept_group_apply_per_job():
    """``-m algorithm=gn_sketch,gn_cg algorithm.tol=1e-4`` would otherwise be refused: Hydra
    composes the multirun's base config with the default algorithm, which has no ``tol``."""
    from harness.execution.app import _defer_group_options

    argv = ["-m", "algorithm=gn_sketch,gn_cg", "algorithm.tol=1e-4", "data.n=64",
            "data=digits", "model.depth=2", "algorithm.max_inner=choice(5,10)"]
    assert _defer_group_options(argv) == [
        "-m", "algorithm=gn_sketch,gn_cg", "algorithm.tol=choice(1e-4)", "data.n=64",
        "data=digits", "model.depth=2", "algorithm.max_inner=choice(5,10)"]
    # not a multirun, or the group is not swept: unchanged
    assert _defer_group_options(argv[1:]) == argv[1:]
    fixed = ["-m", "algorithm=gn_sketch", "algorithm.tol=1e-4", "data.n=64,128"]
    assert _defer_group_options(fixed) == fixed
