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
    return [exe] if exe else [sys.executable, "-m", "harness.bench"]


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
    assert {"meta", "roofline", "per_iteration", "sketches", "crossover", "practice",
            "targets"} <= set(report)
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
    from harness.bench import QUICK, time_per_iteration

    res = time_per_iteration("no_such_method", 8, 32, 4, "cpu", None, QUICK)
    assert res == {"note": "not registered"}


def test_bad_option_exits_2_with_one_line_in_a_subprocess():
    out = subprocess.run([*_cmd(), "--quick", "--dtype", "float16"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlt-bench: error:"), out.stderr
    assert "float16" in lines[0] and out.stdout == ""


@pytest.mark.parametrize("args", [["--device", "tpu"], ["--bogus"],
                                  ["--json", "/no/such/dir/x.json"]])
def test_bad_option_exits_2_with_one_line(args, capsys):
    from harness.bench import main

    with pytest.raises(SystemExit) as exc:
        main(["--quick", *args])
    assert exc.value.code == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlt-bench: error:"), out.err
    assert out.out == ""


def test_integer_pattern_kernels_match_float64():
    """The CPU float32 kernels of harness.problem (int8 pattern, integer GEMMs): D Dᵀ is exact,
    G·p is as accurate as a float32 GEMM (checked against float64)."""
    import torch

    from harness.problem import _int_route, make_problem, pattern_gram

    p = make_problem("synthetic", n=64, d=6, m=65536, seed=4)  # n·m above the int route's floor
    lin = p.linearize()
    D = lin.jacobian.D
    assert _int_route(D)
    assert torch.equal(pattern_gram(D), (D.double() @ D.double().T).float())
    v = torch.randn(64, generator=torch.Generator().manual_seed(0))
    Dd, Xd = D.double(), p.X.double()
    ref = ((Dd @ (Dd.T @ (v.double()[:, None] * Xd))) * Xd).sum(1) / p.m
    got = lin.gram_operator() @ v
    assert float((got.double() - ref).norm() / ref.norm()) < 1e-6
    P = torch.stack([v, 2 * v], 1)
    assert torch.allclose(lin.gram_operator() @ P, torch.stack([got, 2 * got], 1), rtol=1e-5)
