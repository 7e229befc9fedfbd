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
                                  ["--json", "/no/such/dir/x.json"],
                                  ["--calibrate", "--calibrate-dtypes", "float16"],
                                  ["--calibrate", "--calibrate-dtypes", "float32,float32"],
                                  ["--calibrate", "--calibrate-dtypes", ","]])
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


# --- the targets file: the same rows as the measurements give, graded the same way --------

def _fake_report(quick: bool = False) -> dict:
    """A report with every section, shaped as the sections write it: some targets met, some
    missed, one figure absent, and a crossover that no size reached."""
    from harness.perf.bench.methods import crossover_verdict

    rows = [{"n": 256, "gram_over_sketch": 0.5}, {"n": 512, "gram_over_sketch": 0.9},
            {"n": 1024, "gn_gram": {"note": "out of memory"}}]
    return {
        "meta": {"quick": quick},
        "kernels": {"worst_chosen_over_fastest": 1.04,
                    "gram_vs_plain": {"n": 1024, "m": 8192, "d": 16, "gn_gram": {"seconds": 0.1},
                                      "gn_gram_over_plain": 1.5},
                    "fresh_jt": {"n": 1024, "m": 65536, "d": 16, "auto_over_best": 1.0}},
        "roofline": {"gp_over_floor": 1.25},
        "per_iteration": {"methods": {"gn_sketch": {"amortised_units": 9.0, "steps": 3}},
                          "sketch_default_over_paper": 0.5},
        "sketches": {"sketches": {}},
        "sketch_choice": {"variants": {}},
        "crossover": {"rows": rows, **crossover_verdict(rows)},
        "practice": {"vs_exact": {"gn_sketch": {}, "gn_exact": {"note": "skipped: too big"}},
                     "to_target": {"best_gauss_newton": "gn_gram", "gd_over_best": 180.0,
                                   "gd_over_best_is_lower_bound": True,
                                   "adam_over_best": 40.0,
                                   "adam_over_best_is_lower_bound": False}},
    }


#: (label, value, limit, met, note) of every target for ``_fake_report()``.
EXPECTED_ROWS = [
    ("kernel route chosen / fastest route (worst product and size)", 1.04, 1.1, True, ""),
    ("gn_gram / plain-torch float32 step (n=1024, m=8192, d=16)", 1.5, 1.3, False, ""),
    ("Jᵀr on a fresh D, kernels=auto / best forced route (n=1024, m=65536)", 1.0, 1.1, True,
     ""),
    ("CG product G·p / memory floor (fp32 D read twice)", 1.25, 1.3, True, ""),
    ("gn_sketch (defaults) X@Wᵀ-units per outer iteration, amortised", 9.0, 8, False,
     "mean of the first 3 steps, sketch included"),
    ("gn_sketch defaults / paper variant per iteration, amortised", 0.5, 0.6, True, ""),
    ("crossover: smallest n where gn_sketch beats gn_gram (m=16n)", None, 2048, False,
     "not reached up to n=1024"),
    ("gn_exact / gn_sketch per iteration", None, 20, None, "skipped: too big"),
    ("time to 1e-6: gd / best GN (gn_gram)", 180.0, 100, True, "lower bound (did not converge)"),
    ("time to 1e-6: adam / best GN (gn_gram)", 40.0, 100, False, ""),
]

EXPECTED_LINES = [
    "targets",
    "  kernel route chosen / fastest route (worst product and size)     1.04  (limit 1.1)  met",
    "  gn_gram / plain-torch float32 step (n=1024, m=8192, d=16)       1.5  (limit 1.3)  MISSED",
    "  Jᵀr on a fresh D, kernels=auto / best forced route (n=1024, m=65536)        1  "
    "(limit 1.1)  met",
    "  CG product G·p / memory floor (fp32 D read twice)              1.25  (limit 1.3)  met",
    "  gn_sketch (defaults) X@Wᵀ-units per outer iteration, amortised        9  (limit 8)  "
    "MISSED  mean of the first 3 steps, sketch included",
    "  gn_sketch defaults / paper variant per iteration, amortised      0.5  (limit 0.6)  met",
    "  crossover: smallest n where gn_sketch beats gn_gram (m=16n)        -  (limit 2048)  "
    "MISSED  not reached up to n=1024",
    "  gn_exact / gn_sketch per iteration                                -  (limit 20)  -  "
    "skipped: too big",
    "  time to 1e-6: gd / best GN (gn_gram)                            180  (limit 100)  met  "
    "lower bound (did not converge)",
    "  time to 1e-6: adam / best GN (gn_gram)                           40  (limit 100)  MISSED",
]


def test_targets_file_gives_the_expected_rows_and_table():
    from harness.perf.bench import render_targets, targets

    rows = targets(_fake_report())
    assert [(r["target"], r["value"], r["limit"], r["met"], r["note"]) for r in rows] == \
        EXPECTED_ROWS
    assert all(type(r["limit"]) is type(e[2]) for r, e in zip(rows, EXPECTED_ROWS))  # 8, not 8.0
    assert render_targets(rows) == EXPECTED_LINES


def test_crossover_reached_is_graded_on_its_n_and_notes_give_way():
    from harness.perf.bench import targets
    from harness.perf.bench.methods import crossover_verdict

    report = _fake_report()
    rows = [{"n": 256, "gram_over_sketch": 0.5}, {"n": 512, "gram_over_sketch": 1.2},
            {"n": 1024, "gram_over_sketch": 3.0}]
    report["crossover"] = {"rows": rows, **crossover_verdict(rows)}
    assert "not_reached_up_to_n" not in report["crossover"]
    report["per_iteration"]["methods"]["gn_sketch"] = {"note": "skipped: too big"}
    report["practice"]["vs_exact"]["gn_exact"] = {}
    report["practice"]["vs_exact"]["gn_sketch"] = {"note": "failed: boom"}
    by_label = {r["target"]: r for r in targets(report)}
    cross = by_label["crossover: smallest n where gn_sketch beats gn_gram (m=16n)"]
    assert (cross["value"], cross["met"], cross["note"]) == (512, True, "")
    sketch = by_label["gn_sketch (defaults) X@Wᵀ-units per outer iteration, amortised"]
    assert (sketch["value"], sketch["met"], sketch["note"]) == (None, None, "skipped: too big")
    assert by_label["gn_exact / gn_sketch per iteration"]["note"] == "failed: boom"
    # no size compared at all: the crossover is ungraded, not missed
    report["crossover"] = {"rows": [{"n": 256}], **crossover_verdict([{"n": 256}])}
    cross = {r["target"]: r for r in targets(report)}[cross["target"]]
    assert (cross["value"], cross["met"], cross["note"]) == (None, None, "")


def test_quick_report_shows_every_figure_and_grades_none():
    from harness.perf.bench import render_targets, targets
    from harness.perf.bench.grading import QUICK_NOTE

    rows = targets(_fake_report(quick=True))
    assert [(r["target"], r["value"], r["limit"]) for r in rows] == \
        [e[:3] for e in EXPECTED_ROWS]
    assert all(r["met"] is None and r["note"] == QUICK_NOTE for r in rows)
    lines = render_targets(rows)
    assert "MISSED" not in "\n".join(lines) and " met" not in "\n".join(lines)
    assert lines[4] == ("  CG product G·p / memory floor (fp32 D read twice)              1.25  "
                        "(limit 1.3)  -  not graded: --quick runs toy sizes, the target is "
                        "stated at the full ones")


_GOOD_ENTRY = ("  - section: roofline\n    label: \"G·p / floor (n={n})\"\n"
               "    value: gp_over_floor\n    limit: 1.3\n    better: lower\n")


@pytest.mark.parametrize("text, words", [
    ("targets:\n" + _GOOD_ENTRY.replace("roofline", "roofs"),
     ["entry 1", "'section'", "'roofs'", "kernels"]),
    ("targets:\n" + _GOOD_ENTRY + _GOOD_ENTRY.replace("lower", "lowest"),
     ["entry 2", "'better'", "'lowest'", "higher"]),
    ("targets:\n" + _GOOD_ENTRY.replace("1.3", "fast"), ["entry 1", "'limit'", "'fast'"]),
    ("targets:\n" + _GOOD_ENTRY.replace("    better: lower\n", ""),
     ["entry 1", "'better'", "missing"]),
    ("targets:\n" + _GOOD_ENTRY + "    limt: 2\n", ["entry 1", "'limt'", "unknown"]),
    ("targets:\n" + _GOOD_ENTRY.replace("{n}", "{n"), ["entry 1", "'label'", "brace"]),
    ("targets:\n" + _GOOD_ENTRY.replace("gp_over_floor", "a..b"), ["entry 1", "'value'"]),
    ("targets:\n" + _GOOD_ENTRY + "    note: [1]\n", ["entry 1", "'note'"]),
    ("targets:\n  - 3\n", ["entry 1", "mapping"]),
    ("target:\n" + _GOOD_ENTRY, ["'targets'"]),
    ("targets: [\n", ["not valid YAML"]),
])
def test_bad_targets_file_is_one_line_naming_entry_and_key(tmp_path, text, words):
    from harness.common.errors import ConfigError
    from harness.perf.bench import SECTIONS
    from harness.perf.bench.grading import load_targets

    path = tmp_path / "targets.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_targets(SECTIONS, path)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, (word, message)


def test_shipped_targets_file_loads_and_grades_only_measured_sections():
    from harness.perf.bench import SECTIONS
    from harness.perf.bench.grading import TARGETS_FILE, load_targets

    specs = load_targets(SECTIONS)
    assert TARGETS_FILE.is_file() and len(specs) == len(EXPECTED_ROWS)
    assert {s.section for s in specs} == {"kernels", "roofline", "per_iteration", "crossover",
                                          "practice"}


def test_python_dash_m_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "harness.perf.bench", "--sections", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("nlt-bench: error:"), out.stderr
    assert "'nope'" in out.stderr
