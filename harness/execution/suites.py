"""Suites: a sweep preset that is a list of sweeps (``harness/conf/sweep/paper.yaml``), each
run as its own ``nlt-run`` process in order, after every part was validated."""

from __future__ import annotations

import shlex
import signal
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


def _stop_part(child: subprocess.Popen, signum: int) -> None:
    """The suite was interrupted: the running part stops the same way. Ctrl-C reached the
    whole process group already, so SIGINT is passed on only if the part is still running
    after a while (a ``kill -INT`` of the suite alone); any other signal at once."""
    if signum == signal.SIGINT:
        try:
            child.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        child.send_signal(signum)
    except OSError:
        pass
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP of ``nlt-run``: handled as Ctrl-C (the table, exit 128 + signum)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, frame: object) -> None:
    """The handler of ``STOP_SIGNALS``: the first one raises ``Interrupted``; the ones after it
    are ignored, so that stopping the cell and printing the table are not cut short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


#: the signals ``nlt-run`` stops on as on Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_suite(parts: list[list[str]]) -> int:
    """Each part as its own ``nlt-run`` process, in order (``validate_command`` has checked
    every part first); exit code 1 if any part failed, 128 + the signal on Ctrl-C or SIGTERM
    (the running part prints its table)."""
    worst = 0
    for i, args in enumerate(parts, 1):
        print(f"\n[suite {i}/{len(parts)}] {PROG} {' '.join(args)}", flush=True)
        child = subprocess.Popen([sys.executable, "-m", "harness.execution.app", *args])
        try:
            code = child.wait()
        except KeyboardInterrupt as exc:  # let the part stop, print its table, and end
            signum = getattr(exc, "signum", signal.SIGINT)
            _stop_part(child, signum)
            print(f"\n{PROG}: interrupted ({signal.Signals(signum).name}) in suite part "
                  f"{i}/{len(parts)}; rerun the command to resume", file=sys.stderr, flush=True)
            return 128 + signum
        if code < 0:  # the part was killed by a signal: a failure, as a shell reports it
            print(f"\n{PROG}: suite part {i}/{len(parts)} was killed by signal {-code}",
                  file=sys.stderr, flush=True)
            code = 128 - code
        if code == 2 or code in {128 + s for s in STOP_SIGNALS}:
            return code
        worst = max(worst, code)
    print(f"\n[suite] {len(parts)} sweeps done, exit code {worst}", flush=True)
    return worst


#: the exit code of a sweep stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130
