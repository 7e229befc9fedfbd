"""The pre-flight against what Hydra can do (issue 24, class 4 and the run options of class 5):
every entry of the table is refused by ``validate_command`` (what ``nlt-run`` calls before it
writes anything) with one line that names the value and what is allowed, without Hydra's
parser internals, and nothing is written; a few go through the real CLI (exit code 2, one line
on stderr, the directory tree unchanged)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.common.errors import ConfigError
from harness.execution.app import _defer_group_options, validate_command
from harness.execution.cmdline import launcher_choices
from tests.helpers import nlt_run

S = ("data.n=16", "model.m=64")
SMOKE = ("-m", "+sweep=smoke")
JOBLIB = (*SMOKE, "hydra/launcher=joblib")
LOCAL = (*SMOKE, "hydra/launcher=submitit_local")
FORMS = "key=value"  # the allowed forms of an override, named in every parse refusal
#: what Hydra's own messages would show instead of the value and the allowed ones
INTERNALS = ("LexerNoViableAltException", "ConfigLoader is not set", "mismatched input",
             "no viable alternative", "Traceback", "ValueType.", "Error parsing override",
             "object_type=", "reference_type=")

# (command line, words the one-line message must contain: the value, and the allowed ones)
BAD: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    # sweeps of presets, sweeps without -m, repeated values
    (("-m", "+sweep=smoke,demo"), ("+sweep=smoke,demo", "nlt-run -m +sweep=smoke")),
    (("-m", "+sweep=smoke,paper"), ("+sweep=smoke,paper", "presets:")),
    (("+sweep=smoke,demo",), ("+sweep=smoke,demo", "needs -m")),
    (("seed=range(0,3)", *S), ("seed=range(0,3)", "needs -m")),
    (("seed=0,1", *S), ("seed=0,1", "needs -m")),
    (("algorithm=gd,sgd", *S), ("algorithm=gd,sgd", "needs -m")),
    (("data.n=choice(16,32)", "model.m=64"), ("data.n=choice(16,32)", "needs -m")),
    (("model.m=range(64,128,32)", "data.n=16"), ("model.m=range(64,128,32)", "needs -m")),
    (("-m", "data.n=64,64", "model.m=64"), ("data.n=64,64", "lists 64", "once")),
    (("-m", "algorithm=gd,gd", *S), ("algorithm=gd,gd", "lists gd", "once")),
    (("-m", "seed=0,1,0", *S), ("seed=0,1,0", "lists 0", "once")),
    (("-m", "data.n=64,064", "model.m=64"), ("data.n=064", "data.n=64", "once")),
    (("-m", "seed=choice(1,1)", *S), ("seed=choice(1,1)", "lists 1")),
    (("-m", "data.n=interval(1,2)", "model.m=64"), ("interval(1,2)", "range()")),
    (("-m", "seed=range(1,3,0)", *S), ("seed=range(1,3,0)", "step != 0")),
    (("-m", "algorithm=glob(*)", *S), ("glob(*)", "gn_gram")),
    (("-m", "algorithm=glob(g*)", *S), ("glob(g*)", "available")),
    (("-m", "data=glob(*)", *S), ("glob(*)", "synthetic")),
    # the same key twice
    (("data.n=64", "data.n=128", "model.m=64"), ("data.n=64", "data.n=128", "once")),
    (("-m", "data.n=64,128", "data.n=32", "model.m=64"), ("data.n=64,128", "data.n=32")),
    (("seed=1", "seed=2", *S), ("seed=1", "seed=2", "once")),
    (("seed=1", "+seed=2", *S), ("seed=1", "+seed=2", "once")),
    (("algorithm=gd", "algorithm=sgd", *S), ("algorithm=gd", "algorithm=sgd")),
    (("-m", "+sweep=smoke", "+sweep=demo"), ("+sweep=smoke", "+sweep=demo", "once")),
    (("store=/tmp/a", "store=/tmp/b", *S), ("store=/tmp/a", "store=/tmp/b")),
    (("-m", "hydra.launcher.n_jobs=1", "hydra.launcher.n_jobs=2", "hydra/launcher=joblib",
      *S), ("hydra.launcher.n_jobs=1", "hydra.launcher.n_jobs=2")),
    # deletions
    (("~model", *S), ("~model", "model=VALUE")),
    (("~data", *S), ("~data", "data=VALUE")),
    (("~algorithm", *S), ("~algorithm", "algorithm=VALUE")),
    (("~data.n", "model.m=64"), ("~data.n", "data.n=VALUE")),
    (("~store", *S), ("~store", "store=VALUE")),
    (("~hydra.sweep.dir", *S), ("~hydra.sweep.dir", "hydra.sweep.dir=VALUE")),
    (("-m", "~seed=0", *S), ("~seed=0", "seed=VALUE")),
    # interpolations
    (("data.n=${model.m}", "model.m=64"), ("data.n=${model.m}", "the value itself")),
    (("model.m='${oc.env:HOME}'", "data.n=16"), ("${oc.env:HOME}", "the value itself")),
    (("store=${oc.env:HOME}/x", *S), ("store=${oc.env:HOME}/x", "the value itself")),
    (("seed=${now:%s}", *S), ("seed=${now:%s}", "the value itself")),
    (("+foo=${bar}", *S), ("+foo=${bar}", "the value itself")),
    (("-m", "hydra.sweep.dir=/tmp/x/${nope}", *S), ("hydra.sweep.dir", "'nope'", "a path")),
    # overrides Hydra cannot read: no parser internals
    (("data.n=[1", "model.m=64"), ("'data.n=[1'", FORMS)),
    (("data.n=1)", "model.m=64"), ("'data.n=1)'", FORMS)),
    (("data.n='abc", "model.m=64"), ("data.n='abc", FORMS)),
    (("data.n=1=2", "model.m=64"), ("'data.n=1=2'", FORMS)),
    (("model.m=${", "data.n=16"), ("'model.m=${'", FORMS)),
    (("algorithm=gd,", *S), ("'algorithm=gd,'", FORMS)),
    (("data.n=choice()", "model.m=64"), ("'data.n=choice()'", FORMS)),
    (("=5", *S), ("'=5'", FORMS)),
    (("@foo=1", *S), ("'@foo=1'", FORMS)),
    (("seed@pkg=1", *S), ("'seed@pkg=1'", FORMS)),
    (("data.n=\"x", "model.m=64"), ("data.n=\"x", FORMS)),
    (("data.n={a:", "model.m=64"), ("'data.n={a:'", FORMS)),
    # values of the wrong type
    (("data.n=abc", "model.m=64"), ("data.n", "'abc'", "an integer")),
    (("data.n=", "model.m=64"), ("data.n", "''", "an integer")),
    (("model.m=1.5", "data.n=16"), ("model.m", "'1.5'", "an integer")),
    (("data.n={a:1}", "model.m=64"), ("data.n", "an integer")),
    # Hydra settings that move or replace what nlt-run relies on
    (("hydra.job.chdir=true", *S), ("hydra.job.chdir=true", "hydra.job.chdir=false")),
    (("-m", "+sweep=smoke", "hydra.job.chdir=True"), ("hydra.job.chdir=True", "=false")),
    (("hydra.foo=1", *S), ("hydra.foo", "hydra.sweep.dir")),
    (("hydra.runtime.cwd=/", *S), ("hydra.runtime.cwd", "hydra.launcher.*")),
    (("hydra.searchpath=[pkg://x]", *S), ("hydra.searchpath", "hydra.run.dir")),
    (("-m", "hydra.sweeper._target_=os.system", *S), ("hydra.sweeper._target_",
                                                     "hydra/launcher=NAME")),
    (("-m", "hydra.sweeper.max_batch_size=1", *S), ("hydra.sweeper.max_batch_size",
                                                   "hydra.launcher.*")),
    ((*JOBLIB, "hydra.launcher._target_=os.system"), ("hydra.launcher._target_",
                                                      "hydra.launcher.KEY=value")),
    ((*SMOKE, "+hydra.callbacks.x._target_=os.system"), ("hydra.callbacks",
                                                         "hydra/launcher=NAME")),
    ((*SMOKE, "~hydra.callbacks.summary"), ("~hydra.callbacks.summary", "=VALUE")),
    ((*SMOKE, "hydra/sweeper=basic"), ("hydra/sweeper", "hydra/launcher")),
    ((*SMOKE, "hydra/callbacks=x"), ("hydra/callbacks", "hydra/launcher")),
    # launchers and their options
    ((*SMOKE, "hydra/launcher=bogus"), ("'bogus'", "joblib")),
    (("hydra/launcher=ray", *S), ("'ray'", "submitit_local")),
    ((*JOBLIB, "hydra.launcher.prefer=threads"), ("prefer", "'threads'", "processes")),
    ((*JOBLIB, "hydra.launcher.backend=threading"), ("backend", "'threading'", "loky")),
    ((*JOBLIB, "hydra.launcher.backend=multiprocessing"), ("'multiprocessing'", "loky")),
    ((*JOBLIB, "hydra.launcher.backend=bogus"), ("backend", "'bogus'", "loky")),
    ((*JOBLIB, "hydra.launcher.require=sharedmem"), ("require", "'sharedmem'", "null")),
    ((*JOBLIB, "hydra.launcher.foo=1"), ("hydra.launcher.foo", "n_jobs")),
    ((*JOBLIB, "hydra.launcher.n_jobs=abc"), ("hydra.launcher.n_jobs", "an integer")),
    ((*JOBLIB, "hydra.launcher.n_jobs=0"), ("n_jobs", "got 0")),
    ((*LOCAL, "hydra.launcher.tasks_per_node=4"), ("tasks_per_node", "got 4", "[1]")),
    ((*LOCAL, "hydra.launcher.nodes=2"), ("nodes", "got 2", "[1]")),
    ((*LOCAL, "hydra.launcher.mem_gb=-1"), ("mem_gb", "got -1", "positive")),
    ((*LOCAL, "hydra.launcher.mem_gb=0"), ("mem_gb", "got 0", "positive")),
    ((*LOCAL, "hydra.launcher.gpus_per_node=-1"), ("gpus_per_node", "got -1")),
    ((*LOCAL, "hydra.launcher.timeout_min=0"), ("timeout_min", "got 0")),
    ((*LOCAL, "hydra.launcher.cpus_per_task=-2"), ("cpus_per_task", "got -2")),
    ((*LOCAL, "hydra.launcher.bogus=1"), ("hydra.launcher.bogus", "cpus_per_task")),
    # --config-name
    (("--config-name=bogus", *S), ("'bogus'", "['config']")),
    (("--config-name", "bogus", *S), ("'bogus'", "['config']")),
    (("-cn", "nope", *S), ("'nope'", "['config']")),
    # cost_profile: refused before anything is written, whatever the file holds
    (("cost_profile=@MISSING", *S), ("cost_profile", "@MISSING", "nlt-bench --calibrate")),
    (("cost_profile=@DIR", *S), ("cost_profile", "@DIR", "'auto'")),
    (("cost_profile=@GARBAGE", *S), ("@GARBAGE", "unreadable", "'auto'")),
    (("cost_profile=@NOKERNELS", *S), ("@NOKERNELS", "kernels", "'auto'")),
    (("cost_profile=@FIFO", *S), ("@FIFO", "not a file", "'auto'")),
    ((*SMOKE, "cost_profile=@GARBAGE"), ("@GARBAGE", "unreadable", "nlt-bench")),
    # suites: every part sees the same checks
    (("-m", "+sweep=paper", "hydra.job.chdir=true"), ("hydra.job.chdir=true", "=false")),
    (("-m", "+sweep=paper", "~model"), ("~model", "model=VALUE")),
    (("-m", "+sweep=paper", "seed=0,0"), ("seed=0,0", "lists 0")),
    (("-m", "+sweep=paper", "cost_profile=@GARBAGE"), ("@GARBAGE", "nlt-bench")),
]

if shutil.which("sbatch") is None:
    BAD += [
        ((*SMOKE, "hydra/launcher=slurm"), ("hydra/launcher=slurm", "sbatch",
                                            "hydra/launcher=joblib")),
        ((*SMOKE, "hydra/launcher=slurm_gpu"), ("slurm_gpu", "sbatch", "basic")),
        ((*SMOKE, "hydra/launcher=submitit_slurm"), ("submitit_slurm", "sbatch")),
        (("-m", "+sweep=paper", "hydra/launcher=slurm"), ("sbatch", "joblib")),
    ]


def _materialise(args: tuple[str, ...], tmp: Path) -> list[str]:
    """Fill in the @… placeholders with files made in tmp; add a store if none."""
    (tmp / "garbage.json").write_text("not json\n")
    (tmp / "nokernels.json").write_text('{"schema": "x"}\n')
    if not (tmp / "fifo").exists():
        os.mkfifo(tmp / "fifo")
    names = {"@MISSING": tmp / "missing.json", "@DIR": tmp, "@GARBAGE": tmp / "garbage.json",
             "@NOKERNELS": tmp / "nokernels.json", "@FIFO": tmp / "fifo"}
    out = []
    for a in args:
        for name, path in names.items():
            a = a.replace(name, str(path))
        out.append(a)
    if not any(a.startswith("store=") for a in out):
        out.append(f"store={tmp / 'store'}")
    return out


def _shown(message: str, tmp: Path) -> str:
    names = {"missing.json": "@MISSING", "garbage.json": "@GARBAGE",
             "nokernels.json": "@NOKERNELS", "fifo": "@FIFO"}
    for name, word in names.items():
        message = message.replace(str(tmp / name), word)
    return message.replace(str(tmp), "@DIR")


def _tree(tmp: Path) -> dict[str, float]:
    return {str(p): p.lstat().st_mtime for p in tmp.rglob("*")}


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_hydra_path_refused_in_one_line(args, words, tmp_path):
    argv = _materialise(args, tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(ConfigError) as exc:
        validate_command(argv)
    message = str(exc.value)
    shown = _shown(message, tmp_path)
    assert "\n" not in message and message.strip() == message
    for word in words:
        assert word in shown, f"{word!r} not in {message!r}"
    assert not any(word in message for word in INTERNALS), message
    assert _tree(tmp_path) == before  # nothing written


def test_table_is_large_enough():
    assert len(BAD) >= 60


@pytest.mark.parametrize("args", [
    ("-m", "+sweep=smoke"),
    ("-m", "+sweep=smoke", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
     "hydra.launcher.backend=loky", "hydra.launcher.prefer=processes"),
    ("-m", "+sweep=smoke", "hydra.job.chdir=false"),
    ("-m", "+sweep=smoke", "hydra.sweep.dir=@DIR/sweeps/${now:%H}"),
    ("-m", "+sweep=smoke", "hydra/launcher=submitit_local", "hydra.launcher.mem_gb=2",
     "hydra.launcher.tasks_per_node=1"),
    ("-m", "algorithm=gn_sketch,gn_cg", "algorithm.tol=1e-4", *S),
    ("-m", "seed=range(0,3)", *S),
    ("seed=3", *S),
])
def test_good_command_lines_pass(args, tmp_path):
    """What the docs show still passes the pre-flight, and nothing is written."""
    argv = _materialise(args, tmp_path)
    before = _tree(tmp_path)
    from harness.execution.app import _defer_group_options

    validate_command(_defer_group_options(argv))
    assert _tree(tmp_path) == before


def test_slurm_launchers_are_offered_when_sbatch_exists(tmp_path, monkeypatch):
    """With sbatch on PATH the SLURM launchers pass the command-line check."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\nexit 0\n")
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    from harness.execution.cmdline import check_command_line

    check_command_line(["-m", "+sweep=smoke", "hydra/launcher=slurm"])
    assert {"basic", "joblib", "slurm", "submitit_local"} <= set(launcher_choices())


# --- a representative few through the real CLI: exit 2, one line, nothing written -------------


CLI = [
    ("-m", "+sweep=smoke,demo"),
    ("~data", *S),
    ("data.n=${model.m}", "model.m=64"),
    ("-m", "+sweep=smoke", "hydra/launcher=joblib", "hydra.launcher.backend=threading"),
    ("--config-name=bogus", *S),
    ("seed=range(0,3)", *S),
    ("-m", "+sweep=smoke", "cost_profile=@GARBAGE"),
]
#: in the default run: a preset sweep, a custom config and a bad file; the others (each in
#: BAD above, in-process) through the command with `make test-all`
CLI_DEFAULT = (0, 4, 6)


@pytest.mark.parametrize("args", [a if i in CLI_DEFAULT else
                                  pytest.param(a, marks=pytest.mark.slow)
                                  for i, a in enumerate(CLI)],
                         ids=[" ".join(a) for a in CLI])
def test_cli_refuses_with_one_line_and_exit_2(args, tmp_path):
    argv = _materialise(args, tmp_path)
    before = _tree(tmp_path)
    out = nlt_run(tmp_path, *argv, timeout=120)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlt-run: error: "), out.stderr
    assert not any(word in out.stderr for word in INTERNALS)
    assert _tree(tmp_path) == before


def test_a_job_over_several_nodes_is_only_for_one_slurm_cell_over_them(tmp_path,
                                                                       monkeypatch):
    """hydra.launcher.nodes > 1 holds nodes for a distributed=slurm cell with as many
    distributed.nodes, in every job of the sweep; anything else is refused in one line."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    base = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.nodes=2", "algorithm=gd",
            "data.n=16", "model.m=64", "distributed=slurm", "distributed.world_size=4"]
    validate_command(_defer_group_options([*base, "distributed.nodes=2"]))
    with pytest.raises(ConfigError, match="nodes must be one of"):
        validate_command(_defer_group_options([*base, "distributed.nodes=4"]))
    with pytest.raises(ConfigError, match="every job needs distributed=slurm"):
        validate_command(_defer_group_options([*base, "distributed.nodes=2,4"]))
