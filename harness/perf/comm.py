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

import pandas as pd
import torch

from harness.common.errors import EXIT_BAD_INPUT
from harness.costmodel.comm import Link, fit_link
from harness.costmodel.predict import frontier

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


def frontier_by_ranks(profile, link_for, ns, ms, d: int, worlds=(1, 4, 16, 64),
                      **kwargs):
    """The predicted frontier m*(n) of gn_sketch against gn_gram (``predict.frontier``) for
    each P of ``worlds``, the all-reduces over ``link_for(P)``: one table with a ``world``
    column. Predictions, not measurements."""
    tables = []
    for world in worlds:
        table = frontier(profile, ns, ms, d, world=world,
                         link=link_for(world) if world > 1 else None, **kwargs)
        table.insert(0, "world", world)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


#: the frontier table's grid: n and m as powers of two, d of the crossover preset
FRONTIER_NS = (256, 1024, 4096, 16384)
FRONTIER_MS = tuple(2**k for k in range(10, 25))


def frontier_text(profile_path: Path, link: Link, *, d: int = 16) -> str:
    """The predicted m*(n) per P ∈ {1, 4, 16, 64} as a markdown table, labelled as a
    prediction, for the profile at ``profile_path`` (this machine's with ``link``; a
    datasheet profile with the assumed cluster links)."""
    from harness.costmodel import Profile
    from harness.costmodel.comm import cluster_link

    prof = Profile.load(profile_path)
    sheet = prof.is_datasheet
    link_for = cluster_link if sheet else (lambda world: link)
    table = frontier_by_ranks(prof, link_for, FRONTIER_NS, FRONTIER_MS, d)
    where = ("assumed cluster links: " + "; ".join(
        f"{L.name} ({L.latency_s:g} s, {L.bandwidth:.3g} B/s)"
        for L in (cluster_link(8), cluster_link(16)))) if sheet else \
        f"{link.name}: latency {link.latency_s:.3g} s, bandwidth {link.bandwidth:.3g} B/s"
    lines = [f"PREDICTION (cost model, not a measurement): smallest m at which gn_sketch is "
             f"predicted faster than gn_gram per outer iteration, d = {d}, sharded over P "
             f"ranks; profile {profile_path.name}; {where}.", "",
             "| P | " + " | ".join(f"n = {n}" for n in FRONTIER_NS) + " |",
             "|---|" + "---|" * len(FRONTIER_NS)]
    for world, g in table.groupby("world", sort=True):
        cells = ["—" if v is None else f"2^{int(v).bit_length() - 1}"
                 for v in g["m_per_iteration"]]
        lines.append(f"| {world} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier_figure(panels: list[tuple[object, Link | None]], out: Path, *, d: int = 16) -> Path:
    """Figure of the predicted m*(n) per P ∈ {1, 4, 16, 64}: one panel per (profile, link)
    (a measured profile with its measured link; a datasheet profile with the assumed cluster
    links, ``link`` None), titled as a prediction. Written as PNG and PDF beside ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.costmodel.comm import cluster_link
    from harness.reporting import style

    with plt.rc_context(style.RC):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.1),
                                 squeeze=False, sharey=True)
        for ax, (prof, link) in zip(axes[0], panels):
            link_for = cluster_link if link is None else (lambda world, link=link: link)
            table = frontier_by_ranks(prof, link_for, FRONTIER_NS, FRONTIER_MS, d)
            absent = []
            for (world, g), marker in zip(table.groupby("world", sort=True), "osD^"):
                got = g[g["m_per_iteration"].notna()]
                ax.plot(got["n"], got["m_per_iteration"].astype(float), marker=marker,
                        label=f"P = {world}")
                none = [int(n) for n in g.loc[g["m_per_iteration"].isna(), "n"]]
                if none:
                    absent.append(f"P = {world}: n = {', '.join(map(str, none))}")
            if absent:  # a crossover the grid does not hold is said, not left blank
                ax.text(0.02, 0.98, f"no m* up to 2^{FRONTIER_MS[-1].bit_length() - 1} in memory:\n"
                        + "\n".join(absent), transform=ax.transAxes, va="top",
                        fontsize="x-small", color="0.3")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_xlabel("n")
            where = ("assumed NVLink / 100 Gb/s IB" if link is None else link.name)
            ax.set_title(f"{prof.data.get('device_name', 'profile')}\n{where}",
                         fontsize="small")
        axes[0][0].set_ylabel("predicted m* (gn_sketch faster per iteration)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=4)
        fig.suptitle("PREDICTION (cost model, not measured): crossover width m*(n) on P ranks",
                     fontsize="small")
        out = Path(out).with_suffix("")
        out.parent.mkdir(parents=True, exist_ok=True)
        for ext in (".png", ".pdf"):
            fig.savefig(out.with_suffix(ext), bbox_inches="tight")
        plt.close(fig)
    return out.with_suffix(".png")


def predicted_vs_measured(store: Path, profile, link: Link) -> pd.DataFrame:
    """Each finished distributed cell of ``store`` (P ≥ 2): its measured median step time
    and comm phase against the cost model's prediction at P ranks over ``link`` (with the
    cell's mean inner iterations)."""
    from harness.costmodel import predict

    out = []
    for run_file in sorted(Path(store).rglob("run.json")):
        try:
            run = json.loads(run_file.read_text())
            frame = pd.read_parquet(run_file.parent / "result.parquet")
        except (OSError, ValueError):
            continue
        world = int(run.get("world_size") or 1)
        steps = frame[frame["iter"] > 0] if "iter" in frame else frame.iloc[:0]
        if world < 2 or run.get("status") not in ("converged", "max_iters", "time_budget") \
                or not len(steps):
            continue
        params = {k: v for k, v in run["identity"]["algorithm"].items() if k != "name"}
        inner = steps["inner_iters"].astype(float)
        pred = predict(run["algorithm"], params, int(run["n"]), int(run["m"]), int(run["d"]),
                       profile, inner_iters=float(inner.mean()) if inner.notna().any()
                       else None, dtype=str(run["dtype"]), world=world, link=link)
        measured = float(steps["step_time_s"].median())
        out.append({"algorithm": run["algorithm"], "n": run["n"], "m": run["m"],
                    "world": world, "measured_s": measured,
                    "measured_comm_s": float(steps["t_comm"].median()),
                    "predicted_s": pred["total"], "predicted_comm_s": pred["comm"],
                    "ratio": pred["total"] / measured})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.perf.comm",
                                     description="all-reduce latency and bandwidth (gloo), "
                                                 "and the predicted frontier per P")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write the link here (JSON)")
    parser.add_argument("--frontier", type=Path, default=None, metavar="PROFILE",
                        help="print the predicted m*(n) per P for this cost-model profile")
    parser.add_argument("--link", type=Path, default=None,
                        help="with --frontier or --check: a link JSON (default: the link "
                             "measured with the profile's calibration, else measure one now)")
    parser.add_argument("--figure", type=Path, default=None, metavar="PATH",
                        help="with --frontier PROFILE and --link: also draw m*(n) per P for "
                             "PROFILE on the link and for the datasheet profile(s) of "
                             "reports/profiles on the assumed cluster links (PNG and PDF)")
    parser.add_argument("--check", type=Path, default=None, metavar="STORE",
                        help="with --frontier PROFILE: the distributed cells of STORE, "
                             "measured against predicted")
    args = parser.parse_args(argv)
    if args.world < 2 or args.repeats < 1:
        print(f"python -m harness.perf.comm: --world must be >= 2 and --repeats >= 1, got "
              f"{args.world} and {args.repeats}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from harness.common.errors import guarded
    from harness.costmodel import Profile
    from harness.costmodel.comm import load_link, profile_link
    from harness.costmodel.profile import profiles_in

    prog = "python -m harness.perf.comm"
    measured = None
    if args.frontier is not None and args.link is None:  # the link calibrated with it
        measured = profile_link(guarded(prog, lambda: Profile.load(args.frontier)))
    if args.frontier is not None and (args.link is not None or measured is not None):
        link = measured or guarded(prog, lambda: load_link(args.link))
        if args.check is not None:
            table = predicted_vs_measured(args.check, Profile.load(args.frontier), link)
            print(table.to_string(index=False) if len(table) else "no distributed cell")
            return 0
        print(frontier_text(args.frontier, link))
        if args.figure is not None:
            sheets = [p for p in profiles_in(args.frontier.parent) if p.is_datasheet]
            drawn = frontier_figure([(Profile.load(args.frontier), link),
                                     *[(p, None) for p in sheets]], args.figure)
            print(f"figure written to {drawn}")
        return 0
    link, seconds = measure_link(args.world, repeats=args.repeats)
    record = {**link.to_dict(), "world": args.world,
              "sizes_bytes": list(DEFAULT_SIZES), "seconds": seconds}
    text = json.dumps(record, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    if args.frontier is not None:
        print(frontier_text(args.frontier, link))
    return 0


if __name__ == "__main__":
    sys.exit(main())
