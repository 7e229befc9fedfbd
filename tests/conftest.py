"""Shared fixtures (small float64 problems, a temporary results store), the GPU skip, and the
test tiers: a test that runs a whole command end to end — it starts processes (the CLIs,
launchers, pip, asv, git, ranks) or runs a full command in-process (a calibration, the
committed sweeps' pre-flight, a whole report) — is marked ``cli`` and left out of
``make test-fast``; ``make test`` runs it."""

from __future__ import annotations

import inspect
import os

import pytest
import torch

from harness.model import make_problem

# Measurement hygiene off (harness/execution/hygiene.py): a loaded test machine must not mark
# the tests' cells disturbed and leave them out of their reports. tests/test_hygiene.py turns
# it back on. Processes the tests start inherit it.
os.environ["NLT_HYGIENE"] = "0"

#: modules whose every test drives processes or whole sweeps (launchers, signals to a sweep,
#: faults of a store mid-sweep, ranks of one cell, reports raced against each other)
CLI_MODULES = {"test_cli_help", "test_sweeps", "test_faults", "test_install", "test_asv_suite",
               "test_plugins", "test_signals", "test_io_faults",
               "test_distributed", "test_report_robust"}
#: in-process tests that run a whole command: a calibration, the committed sweeps'
#: pre-flight, a whole report or every figure of one (3–35 s each on 2 cores)
WHOLE_COMMANDS = {"test_cli_calibrate_quick_writes_a_valid_profile",
                  "test_the_committed_cells_keep_their_identity",
                  "test_quick_writes_every_section",
                  "test_every_figure_passes_the_check",
                  "test_every_figure_is_drawn_as_pdf_and_300_dpi_png_within_the_page_width",
                  "test_a_two_layer_store_has_no_depth_section",
                  "test_report_decides_claims_per_depth_and_tabulates_time_to_target",
                  "test_sketch_runs_pair_only_with_exact_runs_of_the_same_depth",
                  "test_figures_are_named_by_number_file_name_or_slug",
                  "test_the_example_runs_cells_loads_them_draws_a_figure_and_writes_the_report",
                  "test_a_report_rebuilds_from_its_own_table",
                  "test_report_builds_from_a_real_store",
                  "test_report_survives_failed_skipped_and_truncated_runs"}
#: (module, fixture) of module-scoped fixtures that run a whole command once for the tests
#: that use them (every figure of a synthetic report; nlt-bench --quick; the notebook example)
WHOLE_FIXTURES = {("test_figures", "drawn"), ("test_bench", "quick_report"),
                  ("test_notebook", "example")}
#: what a test's own source calls when it starts a process
STARTS_PROCESSES = ("subprocess", "Popen", "nlt_run(", "_nlt_run(", "_cmd()", "_asv(",
                    "_run([", "spawn_ranks(", "run_cli(")


def _module(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1]


def _uses_fixture_of(item, pairs: set[tuple[str, str]]) -> bool:
    """Whether ``item`` uses one of the (module, fixture) ``pairs`` of its module."""
    return any((_module(item), f) in pairs for f in getattr(item, "fixturenames", ()))


def _starts_processes(item) -> bool:
    if _module(item) in CLI_MODULES or item.originalname in WHOLE_COMMANDS or \
            _uses_fixture_of(item, WHOLE_FIXTURES):
        return True
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        return False
    return any(token in source for token in STARTS_PROCESSES)


#: Tests over ~10 s whose behaviour a faster test of the default run already covers (a
#: representative of each kind stays there): run them with `make test-all` (or `-m slow`).
SLOW = {
    "test_costmodel.py::test_cli_calibrate_quick_writes_a_valid_profile",
    "test_asv_suite.py::test_asv_quick_run_records_one_benchmark",
    "test_install.py::test_wheel_installs_and_runs_outside_the_source_tree",
    "test_sweeps.py::test_smoke_submitit_local_gives_the_same_cells",
    "test_signals.py::test_sigterm_and_sighup_of_a_basic_sweep_act_like_ctrl_c[1]",
    "test_signals.py::test_sigint_of_a_joblib_sweep_leaves_no_worker",
    "test_signals.py::test_sigkill_of_a_suite_ends_its_part_and_cells",
    "test_signals.py::test_a_finished_joblib_sweep_leaves_no_process_behind",
    "test_signals.py::test_sigterm_to_the_process_group_stops_the_sweep_cleanly",
    "test_faults.py::test_sigint_stops_a_sweep_started_with_sigint_ignored",
    # kept in the default run by a test of the same kind (named after each)
    "test_figure_check.py::test_every_figure_passes_the_check[deep_demo]",  # [two_layer_demo]
    "test_figure_check.py::test_every_figure_passes_the_check[two_layer_paper]",
    "test_sweeps.py::test_smoke_joblib_gives_the_same_cells",  # test_signals' joblib sweeps
    "test_sweeps.py::test_truncated_result_is_detected_and_rerun",  # test_faults' damaged
    "test_faults.py::test_concurrent_sweeps_keep_their_own_tables_and_exit_codes",  # two writers
    "test_signals.py::test_sigkill_of_a_joblib_sweep_takes_workers_and_cells_along",  # SIGTERM
    "test_signals.py::test_sigterm_of_a_suite_stops_its_running_part_with_its_table",  # basic
    "test_io_faults.py::test_cell_directory_replaced_by_a_file_before_its_job",  # ... mid_cell
    "test_io_faults.py::test_store_made_immutable_mid_sweep_keeps_the_sweep_and_its_table",
    "test_io_faults.py::test_sweep_directory_made_immutable_stops_in_one_line_with_the_table",
    "test_distributed.py::test_every_shardable_method_follows_the_unsharded_trajectory[4]",
    "test_models.py::test_cli_deep_run_and_unknown_model",  # the MLP in-process, test_mlp
    "test_migrate.py::test_the_committed_cells_keep_their_identity[cpu]",  # [deep]
    "test_sweeps.py::test_every_grid_preset_passes_the_preflight",  # the README's commands
    "test_report_robust.py::test_report_cli_one_line_through_the_real_command",  # bench json
    "test_io_faults.py::test_full_disk_for_a_single_run_is_one_failed_line",  # ... mid_sweep
    "test_distributed.py::test_killing_a_rank_under_torchrun_fails_the_cell_cleanly",  # local
    "test_plugins.py::test_a_plugin_of_each_kind_is_listed_run_priced_and_reported",  # api
    "test_signals.py::test_sigterm_and_sighup_of_a_basic_sweep_act_like_ctrl_c[15]",  # SIGINT
    "test_cli.py::test_single_run_prints_status_and_result_path",  # the failed single run
}
#: (module, fixture) of module fixtures whose tests all run with `make test-all`: the notebook
#: example (the API in-process: test_report), nlt-bench --quick whole (its parts in-process)
SLOW_FIXTURES = {("test_notebook", "example"), ("test_bench", "quick_report")}


def pytest_collection_modifyitems(config, items):
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.nodeid.split("/")[-1] in SLOW or _uses_fixture_of(item, SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
        if skip is not None and "gpu" in item.keywords:
            item.add_marker(skip)
        if _starts_processes(item):
            item.add_marker(pytest.mark.cli)


@pytest.fixture
def small_problem():
    """n=24, m=64, d=5, float64: small enough for dense references."""
    return make_problem("synthetic", n=24, d=5, m=64, seed=3, dtype=torch.float64)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "results"


@pytest.fixture
def no_figures(monkeypatch):
    """Reports built without their figures, for tests that check tables, verdicts and the
    text only (drawing every figure costs ~10 s a report on 2 cores; tests/test_figures.py,
    tests/test_figure_check.py and test_report_builds_from_a_real_store draw them)."""
    import harness.reporting.report as report

    monkeypatch.setattr(report, "all_figures", lambda *a, **k: [])
