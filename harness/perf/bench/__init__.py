r"""``nlt-bench``: every method and kernel side by side, in one process and one run.

Sections (each a table of ratios, all written to ``--json PATH``):

* **kernels**: every route of every multi-route product of ``harness.linalg.kernels`` (D Dᵀ,
  D Z, Dᵀ Y) timed side by side at standard sizes, with the route ``kernels=auto`` chose and
  its slowdown against the fastest; Jᵀr on a fresh linearisation under each kernel policy; and
  ``gn_gram``'s step against the same step written by hand in plain torch float32 (forward,
  ``D @ D.T``, Cholesky, update);
* **roofline**: one CG product G·p = J(Jᵀp) = rowsum(X ⊙ D (Dᵀ (p ⊙ X))) / m against

  - the memory floor t_floor = (bytes G·p must read) / B, with B the copy bandwidth measured
    in the same run (STREAM convention: B = 2·bytes / t_copy, a copy reads and writes); the
    bytes are those of D read twice as float32 (the issue's reference floor), and
  - two plain products Aᵀ Y, A Z with a dense n×m float32 A: what a GEMM library does with
    the same shapes;

* **per_iteration**: each registered method's time per outer iteration in units of one
  ``X @ Wᵀ`` product at the same sizes (the pre-activations Z; spec §2's cost unit, measured
  here, so the figure is machine-independent);
* **sketches**: the time to form S Jᵀ at s = 2n for every registered sketch;
* **sketch_choice**: the gn_sketch variants its defaults were chosen from, amortised over a
  run's length;
* **crossover**: ``gn_sketch`` against ``gn_gram`` per iteration over n at m = 16n, d = 16, and
  the smallest n where the sketch is faster;
* **practice**: ``gn_sketch`` against ``gn_exact`` per iteration at n=2048, m=8192, d=32, and
  time to relative loss 1e-6 (setup included) of the best Gauss–Newton-family method against
  ``gd`` (``lr=auto``) and ``adam`` (best of a small lr grid) at n=1024, m=16384, d=16;
* **targets**: the figures the issue sets a limit on, met or missed; the list is data,
  ``harness/perf/bench/targets.yaml`` (``grading``).

A method refused by its feasibility check (memory), out of memory or failing appears in the
table with a note instead of a number; so does a sketch that refuses the size.

    nlt-bench                       # the issue's sizes; tens of minutes on 2 CPU cores
    nlt-bench --quick --json b.json # small sizes, seconds (what the tests run)
    nlt-bench --calibrate           # cost-model profile of this machine (harness.costmodel)
    nlt-bench --predict PROFILE     # per-iteration predictions and frontier from a profile

Modules: ``common`` (sizes, problems, the two measurements of a method), ``kernels``
(roofline, routes, fresh Jᵀr, plain Gram step), ``methods`` (per-iteration, sketches, sketch
choice, crossover, practice), ``grading`` (the targets file); this one holds the section
table, the report and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness import costmodel
from harness.common.device import device_name, resolve_device, resolve_dtype
from harness.common.errors import ConfigError, fail, guarded
from harness.common.io import write_json
from harness.common.provenance import cpu_facts, git_commit
from harness.common.timing import Stopwatch
from harness.execution.results import regular_file_problem, writable_dir_problem
from harness.perf.bench.common import (
    FULL,
    QUICK,
    Sizes,
    fmt,
    time_per_iteration,
    time_to_target,
)
from harness.perf.bench.grading import TARGETS_FILE, grade, load_targets
from harness.perf.bench.kernels import kernel_routes, render_kernels, render_roofline, roofline
from harness.perf.bench.methods import (
    crossover,
    per_iteration,
    practice,
    render_crossover,
    render_per_iteration,
    render_practice,
    render_sketch_choice,
    render_sketches,
    sketch_choice,
    sketch_times,
)
from harness.perf.calibrate import run_calibration

__all__ = ["FULL", "PROG", "QUICK", "SECTIONS", "Section", "Sizes", "cost_model_main", "main",
           "parse_sections", "render", "render_targets", "run", "targets",
           "time_per_iteration", "time_to_target"]

PROG = "nlt-bench"


@dataclass(frozen=True)
class Section:
    """A section: what it measures (sizes, device, dtype → its result) and how it prints."""

    measure: Callable[[Sizes, Any, Any], dict[str, Any]]
    render: Callable[[dict[str, Any]], list[str]]


#: The sections in the order they run and print; ``--sections`` picks a subset.
SECTIONS: dict[str, Section] = {
    "kernels": Section(kernel_routes, render_kernels),
    "roofline": Section(roofline, render_roofline),
    "per_iteration": Section(per_iteration, render_per_iteration),
    "sketches": Section(sketch_times, render_sketches),
    "sketch_choice": Section(sketch_choice, render_sketch_choice),
    "crossover": Section(crossover, render_crossover),
    "practice": Section(practice, render_practice),
}


def targets(report: dict[str, Any], path: Path | str = TARGETS_FILE) -> list[dict[str, Any]]:
    """The targets of ``path`` whose sections ran, each with its figure, met or missed.

    The targets are stated at the full sizes: at ``--quick``'s toy sizes the figures are
    shown but not graded (met = None), since no verdict about them can come from there.
    """
    return grade(report, load_targets(SECTIONS, path))


def render_targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["targets"]
    for row in rows:
        mark = {True: "met", False: "MISSED", None: "-"}[row["met"]]
        lines.append(f"  {row['target']:<58} {fmt(row['value']):>8}  (limit {row['limit']:g})"
                     f"  {mark}" + (f"  {row['note']}" if row["note"] else ""))
    return lines


def render(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [f"nlt-bench  device={meta['device']} ({meta['device_name']})  dtype={meta['dtype']}"
             f"  threads={meta['threads']}  commit={meta['git_commit']}"
             f"  mode={'quick' if meta['quick'] else 'full'}", ""]
    for key, section in SECTIONS.items():
        if key in report:
            lines += section.render(report[key]) + [""]
    lines += render_targets(report["targets"])
    return "\n".join(lines)


def run(device_name_: str, dtype_name: str, quick: bool,
        json_path: Path | None = None, sections: tuple[str, ...] = tuple(SECTIONS)
        ) -> dict[str, Any]:
    device = resolve_device(device_name_)
    dtype = resolve_dtype(dtype_name)
    specs = load_targets(SECTIONS)  # a bad targets file fails before an hour of measuring
    sizes = QUICK if quick else FULL
    report: dict[str, Any] = {"meta": {
        "device": str(device), "device_name": device_name(device), "dtype": dtype_name,
        "threads": torch.get_num_threads(), "git_commit": git_commit(),
        "torch": torch.__version__, "python": platform.python_version(), "quick": quick,
        "cpu": cpu_facts(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sizes": dataclasses.asdict(sizes), "loadavg": _loadavg(),
        "sections": list(sections)}}
    for key in sections:
        with Stopwatch(device) as sw:
            report[key] = SECTIONS[key].measure(sizes, device, dtype)
        report["meta"][f"{key}_wall_s"] = sw.seconds
        if json_path is not None:  # sections so far: a long run that is cut keeps its numbers
            write_json(json_path, report, indent=2)
    report["targets"] = grade(report, specs)
    return report


def parse_sections(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SECTIONS]
    if bad or not names:
        raise ConfigError(f"Unknown section {(bad or [text])[0]!r}. Available: "
                          f"{list(SECTIONS)}")
    return tuple(s for s in SECTIONS if s in names)  # the canonical order


def _loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def output_path_problem(option: str, text: str) -> str | None:
    """Why the file ``text`` cannot be written whole (by a rename in its directory), or
    None: empty, a directory or other non-file, a missing or unwritable directory. Writes
    nothing (the probe is removed at once)."""
    if not text.strip():
        return f"{option} {text!r} is empty: name a file"
    path = Path(os.path.expanduser(text))
    if os.path.lexists(path):
        try:
            odd = regular_file_problem(path)
        except OSError as exc:
            odd = exc.strerror or str(exc)
        if odd:
            return f"{option} {text!r}: {odd}; name a file"
    parent = path.parent
    if not parent.is_dir():
        return f"{option} {text!r}: directory {str(parent)!r} does not exist"
    return writable_dir_problem(parent, f"{option}'s directory")


def input_path_problem(option: str, text: str) -> str | None:
    """Why ``text`` cannot be read as a file without blocking, or None (a missing file is
    left to the reader, which says how to make one)."""
    if not text.strip():
        return f"{option} {text!r} is empty: name a file"
    try:
        odd = regular_file_problem(Path(os.path.expanduser(text)))
    except FileNotFoundError:
        return None
    except OSError as exc:
        odd = exc.strerror or str(exc)
    return f"{option} {text!r}: {odd}; name a file" if odd else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="float32 or float64")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the report as JSON to PATH")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (seconds): checks that everything runs")
    parser.add_argument("--sections", default=",".join(SECTIONS), metavar="LIST",
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this machine's kernel rates for the cost model "
                             "(harness.costmodel) and write them as a JSON profile")
    parser.add_argument("--calibrate-dtypes", default=None, metavar="LIST",
                        help="--calibrate: comma-separated dtypes to measure (default: --dtype, "
                             f"then the rest of {','.join(costmodel.DTYPES)}); one dtype halves "
                             "the time, and the profile then prices that dtype only")
    parser.add_argument("--out", default=None, metavar="PATH",
                        help="--calibrate: where the profile goes (default: reports/profiles/"
                             "<device model>_<device>[_<threads>t].json)")
    parser.add_argument("--predict", default=None, metavar="PROFILE",
                        help="print the cost model's per-iteration predictions from PROFILE "
                             "at this mode's sizes, and the crossover frontier")
    # argparse's own errors are multi-line; one line and exit 2 like every nlt command
    parser.error = lambda message: fail(PROG, message)  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    # every path option checked before the first measurement: nothing is measured or written
    # for a command that would fail at its end
    for option, value, check in (("--json", args.json, output_path_problem),
                                 ("--out", args.out, output_path_problem),
                                 ("--predict", args.predict, input_path_problem)):
        problem = value is not None and check(option, value)
        if problem:
            fail(PROG, problem)
    args.json, args.out, args.predict = (None if v is None else Path(v) for v in (
        args.json, args.out, args.predict))
    if args.calibrate or args.predict is not None:
        cost_model_main(args)
        return
    sections = guarded(PROG, lambda: parse_sections(args.sections))
    report = guarded(PROG, lambda: run(args.device, args.dtype, args.quick, args.json,
                                       sections))
    if args.json is not None:
        write_json(args.json, report, indent=2)
    print(render(report))
    sys.stdout.flush()


def cost_model_main(args: argparse.Namespace) -> None:
    """``--calibrate`` (write a profile) and ``--predict PROFILE`` (print from one)."""
    if args.calibrate:
        dtypes = (args.dtype, *[d for d in costmodel.DTYPES if d != args.dtype])
        if args.calibrate_dtypes is not None:
            dtypes = tuple(d.strip() for d in args.calibrate_dtypes.split(",") if d.strip())
            bad = [d for d in dtypes if d not in costmodel.DTYPES]
            if bad or not dtypes or len(set(dtypes)) != len(dtypes):
                fail(PROG, f"--calibrate-dtypes {args.calibrate_dtypes!r}: give distinct "
                           f"dtypes from {', '.join(costmodel.DTYPES)}")
        path = guarded(PROG, lambda: run_calibration(
            args.device, dtypes, args.quick, args.out, log=lambda s: print(s, flush=True)))
        print(costmodel.render_profile(costmodel.Profile.load(path)))
        print(f"profile written to {path}")
    if args.predict is not None:
        profile = guarded(PROG, lambda: costmodel.Profile.load(args.predict))
        sizes = QUICK if args.quick else FULL
        print(guarded(PROG, lambda: costmodel.render_predictions(profile, *sizes.reference)))
        d = sizes.crossover_d
        table = guarded(PROG, lambda: costmodel.frontier(
            profile, sizes.crossover_ns, [2**k for k in range(6, 22)], d))
        print(f"smallest m (power of two) where gn_sketch beats gn_gram per iteration, d={d}:")
        print(table.to_string(index=False))
    sys.stdout.flush()
