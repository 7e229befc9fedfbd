"""Issue 24, classes 3 and 5 (report and bench): every bad option of ``nlt-report`` and
``nlt-bench`` is one line naming the value, exit 2, and nothing written (directory trees
compared before and after); a report of any store completes or refuses; ``--out`` is written
whole, holds only what its report produced, and two reports to one ``--out`` never mix."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from harness.execution.results import write_cell
from harness.perf import bench
from harness.reporting import report as R
from harness.reporting.load import load_stores, merged_table
from harness.reporting.metrics import cell_metrics
from harness.reporting.output import MANIFEST
from harness.reporting.text import md_escape


def tree(*roots: Path) -> dict[str, tuple]:
    """Every entry under ``roots`` (hidden ones too): kind, size and a hash of the bytes."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                digest = None
                if p.is_file() and not p.is_symlink():
                    digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[str(p)] = (st.st_mode >> 12, st.st_size if digest else 0, digest)
    return out


def craft(store: Path, alg: str, n: int, seed: int = 0, **extra) -> Path:
    """A small finished cell written by the store's own writer."""
    rows = [{"algorithm": alg, "dataset": "synthetic", "n": n, "m": 32, "d": 4, "seed": seed,
             "device": "cpu", "dtype": "float64", "threads": 1, "git_commit": "abc",
             "iter": it, "loss": 10.0 * 0.1 ** it, "rel_loss": 0.1 ** it,
             "step_time_s": 0.01 if it else 0.0, "time_s": 0.01 * it, "inner_iters": None}
            for it in range(4)]
    run = {"status": "max_iters", "reason": "crafted", "algorithm": alg, "dataset": "synthetic",
           "n": n, "m": 32, "d": 4, "seed": seed, "device": "cpu", "dtype": "float64",
           "iterations": 3, "rows": 4, "total_time_s": 0.03, "setup_time_s": 0.0,
           "config": {"target_rel_loss": 1e-6, "max_iters": 3},
           "identity": {"algorithm": {"name": alg}},
           "provenance": {"git_commit": "abc", "hostname": "h", "threads": 1}, **extra}
    cell = store / alg / f"synthetic_n{n}_s{seed}"
    write_cell(cell, rows, run)
    return cell


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A store with two cells, an existing report directory, and the working directory."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    craft(store, "gd", 16)
    craft(store, "gn_gram", 16)
    (tmp_path / "afile").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "profile_list.json").write_text("[1, 2]")
    (tmp_path / "profile_empty.json").write_text("{}")
    (tmp_path / "profile_bad.json").write_text("{not json")
    (tmp_path / "profile_kernels.json").write_text('{"kernels": [1]}')
    return tmp_path


def refused(capsys, fn, argv, *names):
    """``fn(argv)`` exits 2 with one line on stderr naming ``names``."""
    with pytest.raises(SystemExit) as exc:
        fn(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, (argv, err)
    assert len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, (name, err)
    return err


# --- nlt-report: every option, before anything is read or written ---------------------------

S = "store"
REPORT_CASES = [
    # --target: a relative loss in (0, 1)
    *[([S, "--target", v, "--out", "o"], ("--target",)) for v in
      ("5", "1", "0", "-1", "nan", "inf", "-inf", "1.0", "2", "-0", "1e-400", "1e400")],
    *[([S, "--target", v, "--out", "o"], ("--target", v)) for v in ("abc", "", "0x5")],
    # --min-time-s: finite, >= 0
    *[([S, "--min-time-s", v, "--out", "o"], ("--min-time-s",)) for v in
      ("-1", "nan", "inf", "-inf", "-1e-9")],
    *[([S, "--min-time-s", v, "--out", "o"], ("--min-time-s", v)) for v in ("abc", "")],
    # --out: a directory of its own
    ([S, "--out", ""], ("--out", "''")),
    ([S, "--out", "   "], ("--out",)),
    ([S, "--out", "/"], ("--out", "'/'")),
    ([S, "--out", "."], ("--out", "'.'")),
    ([S, "--out", ".."], ("--out", "'..'")),
    ([S, "--out", "store"], ("--out", "store")),
    ([S, "--out", "store/.."], ("--out", "store/..")),
    ([S, "--out", "afile"], ("--out", "afile")),
    ([S, "--out", "afile/sub"], ("--out", "afile")),
    ([S, "--out", "fifo"], ("--out", "fifo")),
    ([S, "--out", "fifo/sub"], ("--out", "fifo")),
    # stores
    (["nope", "--out", "o"], ("nope",)),
    (["afile", "--out", "o"], ("afile",)),
    (["fifo", "--out", "o"], ("fifo",)),
    (["", "--out", "o"], ("''",)),
    ([S, "nope2", "--out", "o"], ("nope2",)),
    # --profile: a readable profile file, checked before the report is written
    ([S, "--out", "o", "--profile", "missing.json"], ("missing.json",)),
    ([S, "--out", "o", "--profile", "store"], ("--profile", "store")),
    ([S, "--out", "o", "--profile", "fifo"], ("--profile", "fifo")),
    ([S, "--out", "o", "--profile", "profile_list.json"], ("profile_list.json",)),
    ([S, "--out", "o", "--profile", "profile_empty.json"], ("profile_empty.json",)),
    ([S, "--out", "o", "--profile", "profile_bad.json"], ("profile_bad.json",)),
    ([S, "--out", "o", "--profile", "profile_kernels.json"], ("profile_kernels.json",)),
    # argparse's own errors
    ([S, "--bogus"], ("--bogus",)),
    ([S, "--target"], ("--target",)),
    ([S, "--out"], ("--out",)),
]


@pytest.mark.parametrize("argv,names", REPORT_CASES,
                         ids=[" ".join(a)[:60] for a, _ in REPORT_CASES])
def test_report_bad_options_are_one_line_and_write_nothing(world, capsys, argv, names):
    before = tree(world)
    refused(capsys, R.main, argv, *names)
    assert tree(world) == before


def test_report_refusal_leaves_an_existing_report_as_it_was(world, capsys):
    R.build(["store"], world / "o")
    before = tree(world)
    refused(capsys, R.main, ["store", "--out", "o", "--target", "5"], "--target")
    refused(capsys, R.main, ["store", "--out", "o", "--profile", "fifo"], "fifo")
    assert tree(world) == before


# --- nlt-bench: path options checked before the first measurement -----------------------------

BENCH_CASES = [
    *[(["--quick", "--json", v], ("--json",)) for v in
      ("", "  ", ".", "/tmp", "store", "fifo", "afile/x.json", "nodir/x.json", "/proc/x.json")],
    *[(["--quick", "--calibrate", "--out", v], ("--out",)) for v in
      ("", "store", "fifo", "afile/p.json", "nodir/p.json")],
    *[(["--quick", "--predict", v], ("--predict",)) for v in ("", "store", "fifo")],
    (["--quick", "--sections", "bogus"], ("bogus",)),
    (["--quick", "--bogus"], ("--bogus",)),
]


@pytest.mark.parametrize("argv,names", BENCH_CASES,
                         ids=[" ".join(a)[:60] for a, _ in BENCH_CASES])
def test_bench_bad_paths_refused_before_measuring(world, capsys, monkeypatch, argv, names):
    def no_measuring(*a, **k):
        raise AssertionError("measured before refusing")

    monkeypatch.setattr(bench, "run", no_measuring)
    monkeypatch.setattr(bench, "run_calibration", no_measuring)
    before = tree(world)
    refused(capsys, bench.main, argv, *names)
    assert tree(world) == before


def test_bench_json_into_a_directory_leaves_no_stray_file(world, capsys, monkeypatch):
    """The issue's case: ``--json /tmp`` wrote a temporary file into ``/``; now nothing is
    measured or written (the directory's parent, here ``world``, is unchanged)."""
    target = world / "adir"
    target.mkdir()
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("measured"))
    before = tree(world)
    refused(capsys, bench.main, ["--quick", "--json", str(target)], str(target))
    assert tree(world) == before


# --- a report of any store completes or refuses ------------------------------------------------

def _report(store: Path, out: Path):
    rep = R.build([str(store)], out)
    assert (out / "REPORT.md").is_file() and (out / MANIFEST).is_file()
    assert not list(out.parent.glob(f".{out.name}.staging-*"))
    return rep


def test_an_empty_store_gives_a_complete_report(tmp_path):
    (tmp_path / "empty").mkdir()
    rep = _report(tmp_path / "empty", tmp_path / "o")
    assert not len(rep.cells) and not rep.loaded.problems
    assert "## Problems and censored cells" in (tmp_path / "o" / "REPORT.md").read_text()


def test_a_store_of_only_unreadable_cells_lists_each_with_its_reason(tmp_path):
    store = tmp_path / "s"
    for n in (16, 32, 64):
        cell = craft(store, "gd", n)
        (cell / "run.json").write_text("{broken")
    odd = craft(store, "gn_gram", 16)
    (odd / "run.json").unlink()
    os.mkfifo(odd / "run.json")
    rep = _report(store, tmp_path / "o")
    assert not len(rep.cells)
    kinds = sorted(p.kind for p in rep.loaded.problems)
    assert kinds == ["unreadable run.json"] * 4
    text = (tmp_path / "o" / "REPORT.md").read_text()
    assert text.count("unreadable run.json") >= 4 and "FIFO" in text


HUGE = 10**40


@pytest.mark.parametrize("edit", [
    {"n": HUGE}, {"m": -HUGE}, {"seed": HUGE}, {"n": 2**60}, {"rows": 2**54},
    {"total_time_s": HUGE}, {"config": {"max_iters": HUGE}}, {"extra_field": HUGE},
    {"provenance": {"threads": [1, {"x": HUGE}]}}, {"peak_memory_bytes": 2**63},
], ids=lambda e: json.dumps(e)[:40])
def test_integers_beyond_the_store_make_the_cell_unreadable_not_the_report(tmp_path, edit):
    store = tmp_path / "s"
    craft(store, "gd", 32)
    cell = craft(store, "gd", 16)
    run = json.loads((cell / "run.json").read_text())
    run.update(edit)
    (cell / "run.json").write_text(json.dumps(run))
    loaded = load_stores([store])  # where the report crashed: the tables and their parquet
    assert len(loaded.runs) == 1
    assert [p.kind for p in loaded.problems] == ["unreadable run.json"]
    merged_table(loaded).to_parquet(tmp_path / "merged.parquet")
    cell_metrics(loaded)


def test_a_huge_integer_gives_a_complete_report(tmp_path):
    store = tmp_path / "s"
    craft(store, "gd", 32)
    cell = craft(store, "gd", 16)
    run = json.loads((cell / "run.json").read_text())
    run["n"] = HUGE
    (cell / "run.json").write_text(json.dumps(run))
    rep = _report(store, tmp_path / "o")
    assert len(rep.cells) == 1
    assert [p.kind for p in rep.loaded.problems] == ["unreadable run.json"]


def test_deep_nesting_and_oversize_run_json_are_unreadable(tmp_path):
    store = tmp_path / "s"
    deep = craft(store, "gd", 16)
    (deep / "run.json").write_text("[" * 100000 + "]" * 100000)
    big = craft(store, "gd", 32)
    with open(big / "run.json", "wb") as fh:  # sparse: 17 MiB of zeros
        fh.truncate(17 << 20)
    dev = craft(store, "gd", 64)
    (dev / "run.json").unlink()
    (dev / "run.json").symlink_to("/dev/zero")
    rep = _report(store, tmp_path / "o")
    assert [p.kind for p in rep.loaded.problems] == ["unreadable run.json"] * 3
    details = " ".join(p.detail for p in rep.loaded.problems)
    assert "above the" in details and "device" in details


def test_strings_from_a_store_are_escaped_in_report_md(tmp_path):
    store = tmp_path / "s"
    evil = "<script>alert(1)</script> **bold** [link](http://x) | pipe `code` _em_"
    cell = craft(store, "gd", 16, reason=evil)
    run = json.loads((cell / "run.json").read_text())
    run["status"] = "failed"
    run["provenance"]["hostname"] = evil
    (cell / "run.json").write_text(json.dumps(run))
    craft(store, "gd", 32)
    rep = _report(store, tmp_path / "o")
    text = (tmp_path / "o" / "REPORT.md").read_text()
    assert "<script>" not in text and "**bold**" not in text and "[link](" not in text
    assert md_escape(evil)[:60] in text
    assert len(rep.cells) == 2


@pytest.mark.parametrize("text,escaped", [
    ("gn_sketch_paper", "gn_sketch_paper"), ("_x_", "\\_x\\_"), ("a|b", "a\\|b"),
    ("<b>", "\\<b\\>"), ("a\nb", "a b"), ("**", "\\*\\*"), ("[x](y)", "\\[x\\](y)"),
    ("&amp;", "\\&amp;"), ("`c`", "\\`c\\`"), ("~~s~~", "\\~\\~s\\~\\~"), ("\\", "\\\\"),
])
def test_md_escape(text, escaped):
    assert md_escape(text) == escaped


# --- --out: whole or not at all, only this report's files, never mixed -------------------------

def test_rerun_into_out_removes_stale_figures_and_keeps_user_files(tmp_path):
    full, empty, out = tmp_path / "full", tmp_path / "empty", tmp_path / "o"
    for n in (16, 32, 64):
        craft(full, "gd", n)
        craft(full, "gn_gram", n)
    empty.mkdir()
    rep = _report(full, out)
    figures = {f for fig in rep.figures for f in fig.files}
    assert figures and all((out / f).exists() for f in figures)
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    _report(empty, out)
    names = {p.name for p in out.iterdir()}
    assert not figures & names and "cells.csv" not in names
    assert {"REPORT.md", "results.parquet", MANIFEST, "notes.txt", "mine"} <= names
    assert (out / "notes.txt").read_text() == "mine"


def test_an_out_written_before_the_manifest_loses_only_report_named_files(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "o"
    out.mkdir()
    for name in ("REPORT.md", "cells.csv", "fig01_old.png", "fig02_old.pdf", "keep.png",
                 "figure_mine.png"):
        (out / name).write_text("old")
    _report(tmp_path / "empty", out)
    names = {p.name for p in out.iterdir()}
    assert {"keep.png", "figure_mine.png"} <= names
    assert not {"fig01_old.png", "fig02_old.pdf", "cells.csv"} & names
    assert (out / "REPORT.md").read_text() != "old"


def test_a_report_that_fails_midway_leaves_out_as_it_was(tmp_path, monkeypatch):
    store = tmp_path / "s"
    craft(store, "gd", 16)
    out = tmp_path / "o"
    _report(store, out)
    before = tree(tmp_path)

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(R, "render", broken)
    with pytest.raises(RuntimeError):
        R.build([str(store)], out)
    assert tree(tmp_path) == before


def test_a_report_killed_mid_swap_is_put_right_by_the_next(tmp_path):
    from harness.reporting import output

    store = tmp_path / "s"
    craft(store, "gd", 16)
    out = tmp_path / "o"
    _report(store, out)
    (out / "notes.txt").write_text("mine")
    # killed after moving the old report aside, before the new one was renamed into place
    old = tmp_path / ".o.old-20260101T000000000000-1"
    os.rename(out, old)
    stage = tmp_path / ".o.staging-dead"
    stage.mkdir()
    (stage / "REPORT.md").write_text("half")
    output.recover(out)
    assert (out / "notes.txt").read_text() == "mine" and (out / "REPORT.md").exists()
    assert not old.exists() and not stage.exists()
    # killed after the swap, before the user's files came back
    os.rename(out, old)
    out.mkdir()
    (out / "REPORT.md").write_text("new")
    output.recover(out)
    assert (out / "notes.txt").read_text() == "mine" and not old.exists()


def test_concurrent_reports_to_one_out_never_mix(tmp_path):
    stores = []
    for k in range(2):
        store = tmp_path / f"store{k}"
        for n in (16, 32):
            craft(store, "gd" if k == 0 else "gn_gram", n)
        stores.append(store)
    out = tmp_path / "o"
    errors = []

    def one(store):
        try:
            R.build([str(store)], out)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors
    cells = pd.read_csv(out / "cells.csv")
    merged = pd.read_parquet(out / "results.parquet")
    text = (out / "REPORT.md").read_text()
    (store_used,) = set(cells["store"])
    assert set(merged["store"]) == {store_used}
    assert f"`{store_used}`" in text
    other = [s for s in stores if str(s) != store_used][0]
    assert f"`{other}`" not in text
    assert not list(tmp_path.glob(".o.staging-*")) and not list(tmp_path.glob(".o.old-*"))


def test_report_cli_one_line_through_the_real_command(tmp_path):
    """A representative few through the installed console script."""
    import subprocess

    (tmp_path / "s").mkdir()
    for argv, name in ((["s", "--target", "5"], "--target"), (["s", "--out", ""], "--out")):
        before = tree(tmp_path)
        proc = subprocess.run([sys.executable, "-m", "harness.reporting.report", *argv],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
        assert name in proc.stderr and tree(tmp_path) == before


def test_out_through_a_symlink_replaces_the_directory_it_names(tmp_path):
    (tmp_path / "empty").mkdir()
    real = tmp_path / "real"
    real.mkdir()
    (real / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real)
    _report(tmp_path / "empty", link)
    assert link.is_symlink() and (real / "REPORT.md").is_file()
    assert (real / "notes.txt").read_text() == "mine"


def test_bench_json_directory_through_the_real_command(tmp_path):
    """``nlt-bench --json <a directory>``: one line, exit 2, before measuring, no stray file
    beside or inside the directory."""
    import subprocess

    (tmp_path / "d").mkdir()
    before = tree(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "from harness.perf.bench import main; main()",
                           "--quick", "--json", "d"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--json 'd'" in proc.stderr and not proc.stdout.strip()
    assert tree(tmp_path) == before
