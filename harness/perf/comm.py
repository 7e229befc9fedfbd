"""Measuring a link (``harness.costmodel.comm.Link``): all-reduce latency and bandwidth of the
backend at hand, here gloo over loopback between P rank processes of this machine.

    python -m harness.perf.comm --world 2 --out reports/profiles/link_gloo_loopback.json

Each size is all-reduced after a barrier, best of ``repeats`` (noise only adds time); α and β
are fitted to the ring model on relative error (``fit_link``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness.common.errors import EXIT_BAD_INPUT
from harness.costmodel.comm import Link, fit_link

#: payload sizes in bytes: 8 B … 8 MB (float32 elements ×4)
DEFAULT_SIZES = tuple(8 * 4**k for k in range(11))


def _rank(rank: int, world: int, init_file: str, sizes: tuple[int, ...], repeats: int,
          out: str) -> None:
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        best = []
        for size in sizes:
            buf = torch.zeros(max(1, size // 4), dtype=torch.float32)
            dist.all_reduce(buf)  # first call of this size: not timed
            t_best = float("inf")
            for _ in range(repeats):
                dist.barrier()
                t0 = time.perf_counter()
                dist.all_reduce(buf)
                t_best = min(t_best, time.perf_counter() - t0)
            # the slowest rank's time is the collective's
            t = torch.tensor([t_best], dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            best.append(float(t))
        if rank == 0:
            Path(out).write_text(json.dumps(best))
    finally:
        dist.destroy_process_group()


def measure_link(world: int = 2, sizes: tuple[int, ...] = DEFAULT_SIZES,
                 repeats: int = 20) -> tuple[Link, list[float]]:
    """(the fitted link, the best seconds per size) of gloo all-reduce over ``world`` local
    ranks."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="nlt-link-") as tmp:
        out = Path(tmp, "times.json")
        mp.spawn(_rank, args=(world, str(Path(tmp, "init")), tuple(sizes), repeats, str(out)),
                 nprocs=world, join=True)
        seconds = json.loads(out.read_text())
    link = fit_link(world, [4 * max(1, s // 4) for s in sizes], seconds,
                    f"gloo over loopback, {world} ranks of this machine",
                    f"measured: harness.perf.comm, best of {repeats}")
    return link, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.perf.comm",
                                     description="all-reduce latency and bandwidth (gloo)")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.world < 2 or args.repeats < 1:
        print(f"python -m harness.perf.comm: --world must be >= 2 and --repeats >= 1, got "
              f"{args.world} and {args.repeats}", file=sys.stderr)
        return EXIT_BAD_INPUT
    link, seconds = measure_link(args.world, repeats=args.repeats)
    record = {**link.to_dict(), "world": args.world,
              "sizes_bytes": list(DEFAULT_SIZES), "seconds": seconds}
    text = json.dumps(record, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
