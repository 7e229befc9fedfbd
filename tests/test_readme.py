"""The README a newcomer reads in five minutes: at most 150 lines, its links lead somewhere,
its quickstart is the Makefile's, and every harness command in it is accepted as written (the
``nlt-run`` commands pass the pre-flight that runs before any job; ``nlt-report``'s flags
parse)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.execution.app import validate_command
from harness.reporting import report

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands(prog: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    out = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(prog + " "):
                out.append(shlex.split(line)[1:])
    return out


def test_readme_is_short_and_keeps_the_quickstart():
    assert len(README.splitlines()) <= 150
    make = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^make {target}   # ", README, flags=re.M)
        assert re.search(rf"^{target}:", make, flags=re.M)


def test_readme_links_exist():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_readme_nlt_run_commands_pass_the_preflight(tmp_path, monkeypatch):
    commands = _commands("nlt-run")
    assert commands
    monkeypatch.chdir(tmp_path)  # stores are created relative to here, never in the clone
    # a SLURM command is checked as on a cluster: sbatch and srun on PATH (the rest as here)
    import shutil

    from harness.execution import cmdline

    which = shutil.which
    monkeypatch.setattr(cmdline.shutil, "which",
                        lambda name, *a, **k: f"/usr/bin/{name}" if name in ("sbatch", "srun")
                        else which(name, *a, **k))
    for argv in commands:
        if "--help" in argv:
            continue
        validate_command(argv)


@pytest.mark.parametrize("argv", _commands("nlt-report"), ids=" ".join)
def test_readme_nlt_report_flags_parse(argv, monkeypatch):
    seen = {}
    monkeypatch.setattr(report, "build", lambda *a, **k: seen.update(a=a, k=k) or
                        (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.setattr(report, "guarded", lambda prog, go: go())
    with pytest.raises(SystemExit) as exc:
        report.main(argv)
    assert exc.value.code == 0 and seen
