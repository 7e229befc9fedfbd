"""Measurement hygiene: was the machine quiet while a cell was timed?

Every cell takes a ``Snapshot`` at its start and at its end (outside the clock): the 1-minute
load average, the number of runnable threads of *other* processes (``/proc/stat``'s
``procs_running`` less this process's own running threads, the median of a few samples), and
the best time of a fixed reference kernel (a 256 × 256 float64 matrix product on the cell's
threads, best of ``REFERENCE_REPEATS`` after 20 ms of the same product untimed). ``assess``
compares the two and marks the cell ``disturbed`` when

- the reference kernel's time moved by more than ``DRIFT_LIMIT`` (25 %) between start and
  end: the machine's speed changed under the cell (another job, frequency scaling); or
- at start or at end, the other runnable threads plus the cell's own threads exceeded the
  CPUs this process may use (``os.sched_getaffinity``): the cell's threads had to share cores.

The load average is recorded but decides nothing: it lags a minute and counts the previous
cell's own work. A cell measured before these fields existed has no ``disturbed`` field and
is read as *not measured*, not as disturbed.

``NLT_HYGIENE=0`` in the environment turns the probes off (cells are then *not measured*):
the test suite sets it, so that its results do not depend on how loaded the test machine is.

``busy_warning`` is the one line ``nlt-run`` prints at start when the machine is already busy.
Pyperf's system checks, Google Benchmark's CPU-scaling warning and torch.utils.benchmark's
IQR were the models; the thresholds are stated here and in docs/performance.md.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

#: a cell whose reference kernel time moved by more than this share is disturbed
DRIFT_LIMIT = 0.25
#: timings of the reference kernel; the best one counts
REFERENCE_REPEATS = 7
#: the reference kernel's matrix size (float64, on the cell's CPU threads), and how long it
#: runs untimed first (from an idle CPU, the clock frequency needs a few ms to come back up)
REFERENCE_SIZE, REFERENCE_WARM_S = 256, 0.02
#: samples of /proc/stat per snapshot (their median counts), and the pause between them
RUNNABLE_SAMPLES, SAMPLE_PAUSE_S = 5, 0.01
#: nlt-run warns at start when the load average or the other runnable threads reach this
#: share of the usable CPUs
BUSY_SHARE = 0.5


@dataclass(frozen=True)
class Snapshot:
    """The machine at one moment: load average (1 min), other runnable threads, and the best
    seconds of the reference kernel (None where the platform does not tell)."""

    load_1m: float | None
    runnable: int | None
    reference_s: float | None


def enabled() -> bool:
    """False when ``NLT_HYGIENE=0``: no probe, the cells are recorded as not measured."""
    return os.environ.get("NLT_HYGIENE", "1").strip() not in ("0", "off", "false", "no")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity: a SLURM allocation, taskset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def _procs_running() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _own_running() -> int:
    """This process's threads in state R (they are counted in procs_running)."""
    count = 0
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return 1
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        # pid (comm) S ...: the state follows the last ')'
        if stat[stat.rfind(")") + 2:stat.rfind(")") + 3] == "R":
            count += 1
    return max(count, 1)


def other_runnable(samples: int = RUNNABLE_SAMPLES, pause: float = SAMPLE_PAUSE_S) -> int | None:
    """Runnable threads of other processes: the median over ``samples`` reads of /proc/stat."""
    seen = []
    for i in range(samples):
        running = _procs_running()
        if running is None:
            return None
        seen.append(max(running - _own_running(), 0))
        if i + 1 < samples:
            time.sleep(pause)
    return int(statistics.median(seen))


def reference_seconds(repeats: int = REFERENCE_REPEATS, size: int = REFERENCE_SIZE,
                      warm_s: float = REFERENCE_WARM_S) -> float:
    """Best seconds of a fixed CPU kernel: ``size`` × ``size`` float64 matrix product, after
    ``warm_s`` seconds of the same product (thread pool, allocator, and the clock frequency
    back up from idle), best of at least ``repeats`` timings."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, dtype=torch.float64, generator=gen)
    b = torch.randn(size, size, dtype=torch.float64, generator=gen)
    end = time.perf_counter() + warm_s
    torch.mm(a, b)
    while time.perf_counter() < end:
        torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return best


def snapshot() -> Snapshot:
    """The machine now (the runner calls it at a cell's start and end; tests replace it)."""
    runnable = other_runnable()  # before the kernel: its pool threads may still spin after it
    return Snapshot(load_average(), runnable, reference_seconds())


def _crowded(s: Snapshot, threads: int, cpus: int) -> bool:
    return s.runnable is not None and s.runnable + threads > cpus


def assess(start: Snapshot, end: Snapshot, threads: int, cpus: int | None = None) -> dict:
    """The hygiene fields of a cell (run.json and every row): the two snapshots, the drift of
    the reference kernel, ``disturbed`` and the reason in ``disturbed_reason`` ('' if quiet)."""
    cpus = cpus or usable_cpus()
    threads = max(int(threads), 1)
    drift = None
    if start.reference_s and end.reference_s:
        drift = abs(end.reference_s - start.reference_s) / min(start.reference_s,
                                                               end.reference_s)
    why = []
    if drift is not None and drift > DRIFT_LIMIT:
        why.append(f"reference kernel {start.reference_s * 1e3:.2f} ms -> "
                   f"{end.reference_s * 1e3:.2f} ms ({drift:.0%} > {DRIFT_LIMIT:.0%})")
    for when, s in (("start", start), ("end", end)):
        if _crowded(s, threads, cpus):
            why.append(f"{s.runnable} other runnable thread(s) at {when} + {threads} "
                       f"thread(s) > {cpus} CPU(s)")
    fields = {f"hygiene_{k}_start": v for k, v in asdict(start).items()}
    fields.update({f"hygiene_{k}_end": v for k, v in asdict(end).items()})
    fields.update(hygiene_cpus=cpus, hygiene_reference_drift=drift, disturbed=bool(why),
                  disturbed_reason="; ".join(why))
    return fields


def busy_warning(s: Snapshot | None = None, cpus: int | None = None) -> str | None:
    """One line when the machine is busy before a sweep starts, else None."""
    cpus = cpus or usable_cpus()
    if s is None:
        s = Snapshot(load_average(), other_runnable(), None)
    limit = max(BUSY_SHARE * cpus, 1.0)
    load_busy = s.load_1m is not None and s.load_1m >= limit
    run_busy = s.runnable is not None and s.runnable >= limit
    if not (load_busy or run_busy):
        return None
    load = "?" if s.load_1m is None else f"{s.load_1m:.1f}"
    return (f"warning: the machine is busy (load average {load}, {s.runnable} other runnable "
            f"thread(s) on {cpus} CPU(s)); timings will be noisy and cells may be marked "
            f"disturbed (docs/performance.md, 'A quiet machine')")
