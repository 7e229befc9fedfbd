"""Bad input, refused whole (issue 12): every entry of the table below is refused before
anything runs, with one line naming the value and what is allowed, exit code 2, no traceback
and nothing written. The table is driven in-process through ``validate_command``, the function
``nlt-run`` calls before it launches anything; a representative few go through the real CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.common.errors import ConfigError
from harness.execution.app import validate_command
from harness.reporting.report import main as report_main
from tests.helpers import compose_cfg, nlt_run

ROOT = os.geteuid() == 0
#: a directory no one can create files in, root included
UNWRITABLE = "/proc/nlt-store"

# (command line, words the one-line message must contain: the value, and the allowed ones)
S = ("data.n=16", "model.m=64")
BAD: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    # 1. a sweep is validated whole: every value of every dimension, every part of a suite
    (("-m", "data.target=teacher,bogus", *S), ("'bogus'", "teacher")),
    (("-m", "data.teacher_width=64,0", *S), ("data.teacher_width", "got 0")),
    (("-m", "data=synthetic_hard", "data.kind=clusters,bogus", *S), ("'bogus'", "lowdim")),
    (("-m", "data=synthetic_hard", "data.spread=0.05,0", *S), ("data.spread", "> 0")),
    (("-m", "data=synthetic_hard", "data.clusters=8,0", *S), ("data.clusters", ">= 1")),
    (("-m", "data=synthetic_hard", "data.kind=lowdim", "data.intrinsic_dim=3,17", *S),
     ("data.intrinsic_dim", "got 17")),
    (("data=synthetic_hard", "data.kind=lowdim", "data.intrinsic_dim=0", *S),
     ("data.intrinsic_dim", "got 0")),
    (("-m", "data=synthetic_hard", "data.target=teacher,nope", *S), ("'nope'", "noise")),
    (("-m", "data=digits", "data.digit=0,10"), ("data.digit", "[0, 9]")),
    (("data=digits", "data.digit=-1"), ("data.digit", "got -1")),
    (("-m", "data=digits", "data.target=pm1,bogus"), ("'bogus'", "one_vs_rest")),
    (("-m", "data=digits", "data.n=64,1798"), ("data.n=1798", "1797")),
    (("-m", "data=synthetic,digits", "data.d=8"), ("data.d=8", "64")),
    (("-m", "data=digits,synthetic", "data.n=64,4000", "data.d=64"), ("data.n=4000", "1797")),
    (("-m", "memory_budget_gb=1,0", *S), ("memory_budget_gb", "got 0")),
    (("memory_budget_gb=-1", *S), ("memory_budget_gb", "> 0")),
    (("memory_budget_gb=nan", *S), ("memory_budget_gb", "nan")),
    (("memory_budget_gb=inf", *S), ("memory_budget_gb", "inf")),
    (("-m", "+sweep=paper", "algorithm=gd", *S), ("suite part 5/8", "'damping'", "lr")),
    (("-m", "+sweep=paper", "data.target=bogus"), ("suite part 1/8", "'bogus'", "teacher")),
    (("-m", "+sweep=paper", "seed=-3"), ("suite part 1/8", "got -3")),
    (("-m", "+sweep=smoke", "algorithm=gd,nope"), ("'nope'", "gn_gram")),
    (("-m", "+sweep=smoke", "data.n=16,-1"), ("data.n", "got -1")),
    (("-m", "+sweep=smoke", "data.target=noise,x"), ("'x'", "teacher")),
    (("-m", "+sweep=demo", "memory_budget_gb=0"), ("memory_budget_gb", "got 0")),
    (("-m", "model.m=64,0", "data.n=16"), ("model.m", "got 0")),
    (("-m", "seed=0,-1", *S), ("seed", "got -1")),
    (("-m", "algorithm=gd,gn_gram", "algorithm.lr=0.1", *S), ("'lr'", "damping")),
    (("-m", "dtype=float32,float16", *S), ("'float16'", "float64")),
    (("-m", "device=cpu,tpu", *S), ("'tpu'", "cuda")),
    (("-m", "target_rel_loss=1e-6,2", *S), ("target_rel_loss", "[0, 1)")),
    (("-m", "time_budget_s=1,-1", *S), ("time_budget_s", "got -1")),
    # 5. what used to be tracebacks
    (("seed=-1", *S), ("seed", "got -1")),
    (("seed=9223372036854775808", *S), ("seed", "2**63")),
    (("seeds.data=-5", *S), ("seeds.data", "got -5")),
    (("seeds.init=-1", *S), ("seeds.init", "got -1")),
    (("seeds.algorithm=-2", *S), ("seeds.algorithm", "got -2")),
    (("device=cpu:abc", *S), ("'cpu:abc'", "cuda:<index>")),
    (("device=cpu:0", *S), ("'cpu:0'", "auto")),
    (("device=cuda:x", *S), ("cuda:x", "auto")),
    (("device=gpu", *S), ("'gpu'", "cuda")),
    (("device=''", *S), ("''", "cpu")),
    (("store=@FILE", *S), ("@FILE", "not a directory")),
    (("store=@FILE/sub", *S), ("@FILE", "not a directory")),
    (("store=@FILE_IN_ALG", "algorithm=gd", *S), ("gd", "not a directory")),
    (("store=@FILE_AS_CELL", "algorithm=gd", *S), ("cell directory", "not a directory")),
    ((f"store={UNWRITABLE}", *S), (UNWRITABLE, "not writable")),
    ((f"store={UNWRITABLE}/deeper", *S), (UNWRITABLE, "not writable")),
    (("store=''", *S), ("store", "''")),
    (("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", *S), ("n_jobs", "got 0")),
    (("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=-100", *S), ("n_jobs", "-100")),
    (("-m", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=0", *S),
     ("cpus_per_task", "got 0")),
    (("-m", "hydra.sweep.dir=@FILE/sweep", *S), ("hydra.sweep.dir", "not a directory")),
    # 6. no silent acceptance: unknown keys, non-finite or out-of-range numbers
    (("+foo=1", *S), ("'foo'", "max_iters")),
    (("foo=1", *S), ("'foo'", "max_iters")),
    (("+model.foo=1", *S), ("'model.foo'", "model.m")),
    (("model.foo=1", *S), ("'model.foo'", "model.m")),
    (("+seeds.foo=1", *S), ("'seeds.foo'", "seeds.data")),
    (("+testing.foo=1", *S), ("'testing.foo'", "testing.fail_mode")),
    (("+record.foo=1", *S), ("'record.foo'", "record.ntk")),
    (("~seed", *S), ("'seed'", "deleted")),
    (("~max_iters", *S), ("'max_iters'", "deleted")),
    (("lr=0.1", *S), ("'lr'", "algorithm")),
    (("target_rel_loss=1", *S), ("target_rel_loss", "[0, 1)")),
    (("target_rel_loss=1.5", *S), ("target_rel_loss", "1.5")),
    (("target_rel_loss=nan", *S), ("target_rel_loss", "nan")),
    (("target_rel_loss=inf", *S), ("target_rel_loss", "inf")),
    (("target_rel_loss=-1e-3", *S), ("target_rel_loss", "-0.001")),
    (("time_budget_s=-1", *S), ("time_budget_s", "> 0")),
    (("time_budget_s=0", *S), ("time_budget_s", "> 0")),
    (("time_budget_s=nan", *S), ("time_budget_s", "nan")),
    (("time_budget_s=inf", *S), ("time_budget_s", "inf")),
    (("max_iters=0", *S), ("max_iters", "got 0")),
    (("max_iters=-1", *S), ("max_iters", "got -1")),
    (("max_iters=abc", *S), ("max_iters", "abc")),
    (("max_iters=1.5", *S), ("max_iters", "1.5")),
    (("threads=0", *S), ("threads", "got 0")),
    (("threads=-2", *S), ("threads", "got -2")),
    (("progress_interval_s=-1", *S), ("progress_interval_s", ">= 0")),
    (("progress_interval_s=nan", *S), ("progress_interval_s", "nan")),
    (("testing.fail_mode=bogus", *S), ("'bogus'", "kill")),
    (("testing.fail_at_iter=0", *S), ("testing.fail_at_iter", "got 0")),
    (("tf32=maybe", *S), ("tf32", "maybe")),
    (("record.ntk=maybe", *S), ("record.ntk", "maybe")),
    (("algorithm=gd", "algorithm.lr=inf", *S), ("algorithm.lr", "inf")),
    (("algorithm=gd", "algorithm.lr=nan", *S), ("algorithm.lr", "nan")),
    (("algorithm=gd", "algorithm.lr=-1", *S), ("algorithm.lr", "-1")),
    (("algorithm=gd", "algorithm.lr=0", *S), ("algorithm.lr", "0")),
    (("algorithm=gn_gram", "algorithm.damping=inf", *S), ("algorithm.damping", "inf")),
    (("algorithm=gn_gram", "algorithm.damping=-1", *S), ("algorithm.damping", "-1")),
    (("algorithm=gn_gram", "algorithm.damping=nan", *S), ("algorithm.damping", "nan")),
    (("algorithm=gn_gram", "algorithm.step_size=inf", *S), ("algorithm.step_size", "inf")),
    (("algorithm=gn_gram", "algorithm.step_size=0", *S), ("algorithm.step_size", "0")),
    (("algorithm=gn_sketch", "algorithm.sketch=bogus", *S), ("'bogus'", "tensor_srht")),
    (("algorithm=gn_sketch", "algorithm.sketch_ratio=0", *S), ("sketch_ratio", "0")),
    (("algorithm=gn_sketch", "algorithm.sketch_ratio=inf", *S), ("sketch_ratio", "inf")),
    (("algorithm=gn_sketch", "algorithm.tol=1", *S), ("algorithm.tol", "(0, 1)")),
    (("algorithm=gn_sketch", "algorithm.tol=nan", *S), ("algorithm.tol", "nan")),
    (("algorithm=gn_sketch", "algorithm.max_inner=0", *S), ("max_inner", "0")),
    (("algorithm=gn_sketch", "algorithm.refresh=bogus", *S), ("'bogus'", "adaptive")),
    (("algorithm=gn_sketch", "algorithm.refresh_factor=inf", *S), ("refresh_factor", "inf")),
    (("algorithm=gn_sketch", "algorithm.damping=inf", *S), ("algorithm.damping", "inf")),
    (("algorithm=adam", "algorithm.lr=inf", *S), ("algorithm.lr", "inf")),
    (("algorithm=adam", "algorithm.beta1=1.5", *S), ("algorithm.beta1", "1.5")),
    (("algorithm=adam", "algorithm.eps=nan", *S), ("algorithm.eps", "nan")),
    (("algorithm=sgd", "algorithm.batch_size=0", *S), ("batch_size", "0")),
    (("algorithm=gn_cg", "algorithm.tol=inf", *S), ("algorithm.tol", "inf")),
    (("algorithm=gn_cg", "algorithm.damping=nan", *S), ("algorithm.damping", "nan")),
    (("algorithm=gn_nystrom", "algorithm.rank=0", *S), ("algorithm.rank", "0")),
    (("algorithm=ggn", "algorithm.batch_size=0", *S), ("batch_size", "0")),
    (("algorithm=gd", "algorithm.nope=1", *S), ("'nope'", "power_iters")),
    # names and types
    (("algorithm=nope", *S), ("'nope'", "gn_gram")),
    (("data=nope", *S), ("'nope'", "synthetic_hard")),
    (("-m", "+sweep=nope"), ("'nope'", "demo")),
    (("dtype=float16", *S), ("'float16'", "float64")),
    (("dtype=bfloat16", *S), ("'bfloat16'", "float32")),
    (("data.n=0", "model.m=64"), ("data.n", "got 0")),
    (("data.n=abc", "model.m=64"), ("data.n", "abc")),
    (("data.d=-1", *S), ("data.d", "got -1")),
    (("model.m=abc", "data.n=16"), ("model.m", "abc")),
    (("data.teacher_width=0", *S), ("data.teacher_width", "got 0")),
]


def _materialise(args: tuple[str, ...], tmp: Path) -> list[str]:
    """Replace the @FILE… placeholders by paths in tmp (made here); add a store if none."""
    file = tmp / "a_file"
    file.write_text("not a directory\n")
    out = []
    for a in args:
        if "@FILE_IN_ALG" in a:  # <store>/gd is a file
            (tmp / "s2").mkdir(exist_ok=True)
            (tmp / "s2" / "gd").write_text("x")
            a = a.replace("@FILE_IN_ALG", str(tmp / "s2"))
        elif "@FILE_AS_CELL" in a:  # the cell's own path is a file
            cfg = compose_cfg("algorithm=gd", *S, f"store={tmp / 's3'}")
            from harness.execution.config import resolve, store_path
            from harness.execution.results import cell_name

            cell = store_path(cfg) / cell_name(resolve(cfg).identity)
            cell.parent.mkdir(parents=True)
            cell.write_text("x")
            a = a.replace("@FILE_AS_CELL", str(tmp / "s3"))
        out.append(a.replace("@FILE", str(file)))
    if not any(a.startswith("store=") for a in out):
        out.append(f"store={tmp / 'store'}")
    return out


def _snapshot(tmp: Path) -> set[str]:
    return {str(p) for p in tmp.rglob("*")}


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_refused_in_one_line(args, words, tmp_path):
    argv = _materialise(args, tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError) as exc:
        validate_command(argv)
    message = str(exc.value)
    shown = message.replace(str(tmp_path / "a_file"), "@FILE")
    assert "\n" not in message and message.strip() == message
    for word in words:
        assert word in shown, f"{word!r} not in {message!r}"
    assert _snapshot(tmp_path) == before  # nothing written


def test_table_is_large_enough():
    assert len(BAD) >= 100


@pytest.mark.skipif(ROOT, reason="root writes through permission bits")
def test_non_writable_cell_directory_is_refused(tmp_path):
    cfg = compose_cfg("algorithm=gd", *S, f"store={tmp_path / 's'}")
    from harness.execution.config import resolve, store_path
    from harness.execution.results import cell_name

    cell = store_path(cfg) / cell_name(resolve(cfg).identity)
    cell.mkdir(parents=True)
    cell.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="cell directory .* is not writable"):
            validate_command(["algorithm=gd", *S, f"store={tmp_path / 's'}"])
    finally:
        cell.chmod(0o755)


REPORT_BAD = [
    (["@STORE", "--out", "@FILE"], "not a directory"),
    (["@STORE", "--out", "@FILE/sub"], "not a directory"),
    (["@STORE", "--out", UNWRITABLE], "not writable"),
    (["@MISSING"], "is not a directory"),
    (["@FILE"], "is not a directory"),
    (["@STORE", "--target", "nan"], "--target"),
    (["@STORE", "--target", "inf"], "--target"),
    (["@STORE", "--target", "0"], "--target"),
    (["@STORE", "--target", "abc"], "--target"),
    (["@STORE", "--min-time-s", "-1"], "--min-time-s"),
    (["@STORE", "--min-time-s", "nan"], "--min-time-s"),
    (["@STORE", "--bogus"], "--bogus"),
]


@pytest.mark.parametrize("args,word", REPORT_BAD, ids=[" ".join(a) for a, _ in REPORT_BAD])
def test_report_bad_input_one_line(args, word, tmp_path, capsys):
    (tmp_path / "store").mkdir()
    (tmp_path / "a_file").write_text("x")
    subs = {"@STORE": str(tmp_path / "store"), "@FILE": str(tmp_path / "a_file"),
            "@MISSING": str(tmp_path / "missing")}
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        report_main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("nlt-report: error: ") and word in err
    assert _snapshot(tmp_path) == before


def test_fast_composer_matches_hydra_compose(tmp_path):
    """The pre-flight's cached composition gives what Hydra's compose gives."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from harness.execution.config import CONF_DIR, register_configs
    from harness.execution.preflight import _Composer

    register_configs()
    GlobalHydra.instance().clear()
    jobs = [["+sweep=smoke", "algorithm=gd", "data.n=32", "+foo=1"],
            ["algorithm=gn_sketch", "algorithm.sketch_ratio=2", "data=synthetic_hard",
             "data.kind=lowdim", "seed=3", "~tf32"]]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composer = _Composer()
        for job in jobs:
            assert OmegaConf.to_container(composer(job)) == \
                OmegaConf.to_container(compose(config_name="config", overrides=job))
    GlobalHydra.instance().clear()


# --- a representative few through the real command line ---------------------------------------

CLI = [
    (("-m", "data.target=teacher,bogus", *S), "'bogus'"),
    (("-m", "+sweep=paper", "algorithm=gd", *S), "suite part 5/8"),
    (("seed=-1", "+foo=1", *S), "'foo'"),
    (("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", *S), "n_jobs"),
]


@pytest.mark.parametrize("args,word", [c if i in (0, 1) else
                                       pytest.param(*c, marks=pytest.mark.slow)
                                       for i, c in enumerate(CLI)],
                         ids=[" ".join(a) for a, _ in CLI])
def test_cli_refuses_before_anything_runs(args, word, tmp_path):
    store = tmp_path / "store"
    proc = nlt_run(tmp_path, *args, f"store={store}")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nlt-run: error: ") and word in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not store.exists()  # no job directory, no cell
