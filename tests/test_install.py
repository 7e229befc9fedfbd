"""The package works outside its source tree: a built wheel carries the Hydra configs.

The wheel is built from a copy of the repository (a build leaves ``build/`` behind), installed
with ``--no-deps`` into a fresh virtual environment that sees this environment's packages
through a ``.pth`` line, and its ``nlt-run`` runs one tiny cell from a directory that has no
``harness/`` or ``conf/`` in sight.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what a build needs; results, reports and environments stay behind
SKIP = shutil.ignore_patterns(".venv", ".git", ".asv", "results", "reports", "build", "*.egg-info",
                              "__pycache__", ".pytest_cache", ".ruff_cache", "tests")


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "-w", str(wheels), str(src)], cwd=tmp_path)
    (wheel,) = wheels.glob("nlt_harness-*.whl")

    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    own_site = Path(_run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                         cwd=tmp_path).stdout.strip())
    # the dependencies come from this environment; the harness itself only from the wheel
    (own_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([str(python), "-c", "import harness.execution.config as c; print(c.CONF_DIR)"],
                 cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(own_site), where
    assert (Path(where) / "config.yaml").is_file()
    assert len(list((Path(where) / "sweep").glob("*.yaml"))) > 3

    store = tmp_path / "store"
    _run([str(env_dir / "bin" / "nlt-run"), "algorithm=gd", "data.n=16", "model.m=32",
          "max_iters=2", "device=cpu", f"store={store}"], cwd=elsewhere, env=env)
    (run_json,) = store.glob("gd/*/run.json")
    assert json.loads(run_json.read_text())["status"] in ("converged", "max_iters")
    assert not (elsewhere / "outputs").exists()
