"""Suites: a sweep preset that is a list of sweeps (``harness/conf/sweep/paper.yaml``), each
run as its own ``nlt-run`` process in order, after every part was validated."""

from __future__ import annotations

import shlex
import subprocess
import sys

from omegaconf import OmegaConf

from harness.execution.config import CONF_DIR

PROG = "nlt-run"

def suite_parts(argv: list[str]) -> list[list[str]] | None:
    """The sweeps of a suite preset named by ``+sweep=<name>`` in ``argv``, else None.

    A suite (``harness/conf/sweep/paper.yaml``) has a ``suite:`` list instead of sweep
    settings; each entry is the arguments of one sweep (``+sweep=sample_scaling data.n=...``).
    The rest of the command line is appended to every entry, so ``store=...`` or a launcher
    applies to all and wins over the entry.
    """
    for arg in argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+") == "sweep" and name:
            path = CONF_DIR / "sweep" / f"{name}.yaml"
            if not path.is_file():
                return None
            parts = OmegaConf.load(path).get("suite")
            if parts is None:
                return None
            rest = [a for a in argv if a != arg and a != "-m" and a != "--multirun"]
            # Hydra refuses a key given twice: the command line replaces the entry's value
            given = {a.split("=", 1)[0].lstrip("+~") for a in rest if "=" in a}
            return [["-m", *[a for a in shlex.split(str(entry))
                             if a.split("=", 1)[0].lstrip("+~") not in given], *rest]
                    for entry in parts]
    return None


def run_suite(parts: list[list[str]]) -> int:
    """Each part as its own ``nlt-run`` process, in order (``validate_command`` has checked
    every part first); exit code 1 if any part failed, 130 on Ctrl-C (the running part
    prints its table)."""
    worst = 0
    for i, args in enumerate(parts, 1):
        print(f"\n[suite {i}/{len(parts)}] {PROG} {' '.join(args)}", flush=True)
        child = subprocess.Popen([sys.executable, "-m", "harness.execution.app", *args])
        try:
            code = child.wait()
        except KeyboardInterrupt:  # the part got the same Ctrl-C: let it print its table
            code = child.wait()
            print(f"\n{PROG}: interrupted in suite part {i}/{len(parts)}; rerun the command "
                  "to resume", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        if code < 0:  # the part was killed by a signal: a failure, as a shell reports it
            print(f"\n{PROG}: suite part {i}/{len(parts)} was killed by signal {-code}",
                  file=sys.stderr, flush=True)
            code = 128 - code
        if code in (2, EXIT_INTERRUPTED):
            return code
        worst = max(worst, code)
    print(f"\n[suite] {len(parts)} sweeps done, exit code {worst}", flush=True)
    return worst


#: the exit code of a sweep stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130
