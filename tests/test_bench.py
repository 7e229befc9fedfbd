"""``nlt-bench``: the quick mode runs end to end and writes every section; bad options exit 2
with one line."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest


def _cmd() -> list[str]:
    exe = shutil.which("nlt-bench")
    return [exe] if exe else [sys.executable, "-m", "harness.perf.bench"]


def _numbers(obj):
    """Every float or int (not bool) anywhere in a JSON tree."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    out = subprocess.run([*_cmd(), "--quick", "--json", str(path)], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    return json.loads(path.read_text()), out.stdout


def test_quick_writes_every_section(quick_report):
    report, stdout = quick_report
    assert {"meta", "kernels", "roofline", "per_iteration", "sketches", "crossover",
            "practice", "targets"} <= set(report)
    meta = report["meta"]
    assert meta["device"] == "cpu" and meta["dtype"] == "float32" and meta["threads"] >= 1
    assert "git_commit" in meta
    assert "roofline" in stdout and "targets" in stdout


def test_quick_numbers_are_positive_and_finite(quick_report):
    report, _ = quick_report
    rf = report["roofline"]
    for key in ("gp_s", "copy_bandwidth_GBps", "floor_fp32_s", "two_matmuls_s",
                "gp_over_floor", "gp_over_two_matmuls"):
        assert math.isfinite(rf[key]) and rf[key] > 0, key
    pi = report["per_iteration"]
    assert pi["unit_s"] > 0
    timed = {k: v for k, v in pi["methods"].items() if "seconds" in v}
    assert {"gd", "gn_gram"} <= set(timed)  # the core methods always run
    for name, res in timed.items():
        assert math.isfinite(res["units"]) and res["units"] > 0, name
    for row in report["crossover"]["rows"]:
        assert row["gn_gram"]["seconds"] > 0
    tt = report["practice"]["to_target"]
    assert tt["best_gauss_newton"] is not None  # some GN method reaches 1e-6 in quick mode
    assert all(x >= 0 for x in _numbers(report["per_iteration"]))


def test_unregistered_method_is_a_note_not_a_crash():
    from harness.perf.bench import QUICK, time_per_iteration

    res = time_per_iteration("no_such_method", 8, 32, 4, "cpu", None, QUICK)
    assert res == {"note": "not registered"}


def test_bad_option_exits_2_with_one_line_in_a_subprocess():
    out = subprocess.run([*_cmd(), "--quick", "--dtype", "float16"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlt-bench: error:"), out.stderr
    assert "float16" in lines[0] and out.stdout == ""


def test_quick_kernel_table_times_every_route(quick_report):
    report, stdout = quick_report
    kn = report["kernels"]
    assert {r["product"] for r in kn["rows"]} == {"pattern_gram", "pattern_mm", "pattern_rmm"}
    for row in kn["rows"]:
        assert set(row["times_s"]) == {"float", "int8"}  # float32 on CPU: both routes run
        assert row["chosen"] in row["times_s"] and row["chosen_over_fastest"] >= 1.0
    assert kn["cpu"]["cpu_capability"] and report["meta"]["cpu"] == kn["cpu"]
    gp = kn["gram_vs_plain"]
    assert gp["plain_s"] > 0 and gp["gn_gram_over_plain"] > 0
    labels = [t["target"] for t in report["targets"]]
    assert any("chosen / fastest" in t for t in labels)
    assert any("plain-torch" in t for t in labels)
    assert "kernel routes" in stdout


def test_sections_option_runs_a_subset(tmp_path):
    from harness.perf.bench import parse_sections, run

    assert parse_sections("roofline,kernels") == ("kernels", "roofline")
    report = run("cpu", "float32", True, None, ("roofline",))
    assert "roofline" in report and "kernels" not in report and "practice" not in report
    assert [t["target"] for t in report["targets"]] == [
        "CG product G·p / memory floor (fp32 D read twice)"]


@pytest.mark.parametrize("args", [["--device", "tpu"], ["--bogus"], ["--sections", "nope"],
                                  ["--sections", ","],
                                  ["--json", "/no/such/dir/x.json"]])
def test_bad_option_exits_2_with_one_line(args, capsys):
    from harness.perf.bench import main

    with pytest.raises(SystemExit) as exc:
        main(["--quick", *args])
    assert exc.value.code == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlt-bench: error:"), out.err
    assert out.out == ""


def test_quick_mode_grades_no_target(quick_report):
    """Targets are stated at the full sizes: --quick shows the figures, grades none."""
    report, stdout = quick_report
    assert report["targets"] and all(t["met"] is None for t in report["targets"])
    assert "MISSED" not in stdout and " met" not in stdout.split("targets")[-1]


def test_full_mode_grades_each_way():
    from harness.perf.bench import targets

    report = {"meta": {"quick": False}, "roofline": {"gp_over_floor": 1.2}}
    assert [t["met"] for t in targets(report)] == [True]
    report["roofline"]["gp_over_floor"] = 1.4
    assert [t["met"] for t in targets(report)] == [False]
