"""Every registered figure checked by machine (``harness.reporting.figures.check``), drawn
in-process from synthetic tables: a two-layer sweep with an outside method (demo-sized and
paper-sized) and a deep sweep. The check must pass on all of them, and must fail on figures
broken on purpose (a clipped title, a legend over data, an unkeyed line style, an empty panel,
phase shares over 1, a marker that cannot be drawn open)."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from harness.costmodel import Profile  # noqa: E402
from harness.reporting import fits, style  # noqa: E402
from harness.reporting.figures import REGISTRY, all_figures, check  # noqa: E402
from harness.reporting.figures.costs import phase_shares  # noqa: E402
from harness.reporting.figures.registry import Inputs, fit_legends  # noqa: E402
from harness.reporting.load import label_variants  # noqa: E402

MIB = 2**20
#: (algorithm, preset, hyperparameters): the defaults, the paper's preset, an outside method.
VARIANTS = [("gd", "gd", {"lr": 1.0}), ("adam", "adam", {"lr": 1e-3}),
            ("gn_gram", "gn_gram", {}), ("gn_cg", "gn_cg", {"damping": 0.0}),
            ("my_method", None, {}),
            # an ablation run by overrides, not by a named preset
            *[("gn_sketch", None, {"sketch": s, "sketch_ratio": r, "refresh": "adaptive"})
              for s in ("gaussian", "srht") for r in (1.0, 2.0, 4.0)],
            ("gn_sketch", "gn_sketch_paper", {"sketch": "gaussian", "sketch_ratio": 4.0,
                                              "refresh": "always", "factor": "qr"})]
STEPS = 8
REFRESH_EVERY = 4  # gn_sketch (adaptive) rebuilds its preconditioner every 4th step


def _variant(alg, preset, hp, depth):
    inside = ", ".join(f"{k}={v}" for k, v in sorted(hp.items()) if k != "lr")
    name = f"{alg} ({inside})" if inside else alg
    return name + (f" [mlp L={depth}]" if depth else "")


def _status(alg, n, ns):
    if alg == "gd" and n == ns[-1]:
        return "max_iters"  # a lower bound
    if alg == "my_method" and n == ns[-1]:
        return "time_budget"  # a lower bound of a method in no palette: drawn open
    if alg == "gn_gram" and n == ns[-1]:
        return "skipped"  # refused by the memory check
    return "converged"


def _cell(alg, preset, hp, n, m, seed, status, depth=None):
    rng = np.random.default_rng(abs(hash((alg, str(hp), n, m, seed, depth))) % 2**32)
    t = 1e-7 * n**1.5 * m / 1024 * (1 + 0.05 * rng.random()) * (depth or 1)
    if alg == "my_method" and status == "time_budget":
        t *= 1e4  # a bound far above the data: drawn at the cap, not by empty decades
    measured = status in ("converged", "max_iters", "time_budget")
    reached = status == "converged"
    adaptive = hp.get("refresh") == "adaptive"
    return {
        "cell": f"{_variant(alg, preset, hp, depth)}_n{n}_m{m}_s{seed}", "algorithm": alg,
        "preset": preset, "variant": _variant(alg, preset, hp, depth),
        "hyperparameters": json.dumps(hp, sort_keys=True), "model": "mlp" if depth else
        "two_layer", "depth": depth or 1,
        "dataset": "synthetic", "data_params": json.dumps({"target": "teacher"}), "d": 16,
        "dtype": "float64", "device": "cpu", "n": n, "m": m, "seed": seed, "status": status,
        "censor": None if reached else status, "data_ok": measured,
        "last_iter": float(STEPS) if measured else np.nan,
        "time_per_iter_s": t if measured else np.nan,
        "mean_step_time_s": t if measured else np.nan,
        "time_per_iter_median_s": t if measured else np.nan,
        "time_per_iter_amortised_s": t if measured else np.nan,
        "refresh_frac": 1 / REFRESH_EVERY if adaptive else 1.0,
        "mean_inner_iters": ({"gn_cg": n / 8, "gn_sketch": 6.0 / hp.get("sketch_ratio", 1)}
                             .get(alg, np.nan)),
        "mean_t_forward": 0.1 * t, "mean_t_gram": 0.5 * t if alg == "gn_gram" else np.nan,
        # over the steps that ran them: a refresh's sketch is most of that step
        "mean_t_sketch": 0.6 * t if alg == "gn_sketch" else np.nan,
        "mean_t_factor": 0.2 * t if alg == "gn_sketch" else np.nan,
        "mean_t_solve": 0.3 * t if alg in ("gn_gram", "gn_cg") else
        (0.1 * t if alg == "gn_sketch" else np.nan),
        "setup_time_s": 1e-3, "time_to_target_s": STEPS * t if reached else np.nan,
        "time_lower_bound_s": STEPS * t if status in ("max_iters", "time_budget") else np.nan,
        "estimated_memory_bytes": 1e3 * n * m, "memory_budget_bytes": 2e9,
        "peak_memory_bytes": 250 * MIB + 2e3 * n * m if measured else np.nan,
        "peak_memory_kind": "process max RSS", "target": 1e-6,
        "ntk_gram_gap": 3.0 / np.sqrt(m) * (1 + 0.1 * seed),
    }


def _rows(cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for c in cells[cells["data_ok"]].itertuples():
        rate = {"gd": 0.3, "adam": 0.5, "my_method": 0.5}.get(c.algorithm, 1e-3)
        adaptive = "adaptive" in c.hyperparameters
        for it in range(STEPS + 1):
            row = {"cell": c.cell, "variant": c.variant, "iter": it, "m": c.m,
                   "rel_loss": rate**it, "time_s": it * c.time_per_iter_s,
                   "step_time_s": c.time_per_iter_s if it else 0.0,
                   "ntk_lambda_min_ratio": 1 - 0.1 * it / np.sqrt(c.m),
                   "ntk_weight_change": 0.5 + 0.01 * it}
            if it and c.algorithm == "gn_sketch":
                refresh = not adaptive or it % REFRESH_EVERY == 1
                row.update(t_forward=c.mean_t_forward, t_solve=c.mean_t_solve,
                           refreshed=int(refresh),
                           t_sketch=c.mean_t_sketch if refresh else np.nan,
                           t_factor=c.mean_t_factor if refresh else np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def tables(ns, m, ms, grid, deep=False, disturbed=False):
    """cells and rows of a sweep over ``ns`` at width ``m``, an m sweep over ``ms`` and an
    (n, m) ``grid``; ``deep``: every method at depths 1, 2 and 3 (no outside method);
    ``disturbed``: seed 1 at the third n marked disturbed (as under --include-disturbed)."""
    cells = []
    depths = (1, 2, 3) if deep else (None,)
    variants = [v for v in VARIANTS if not (deep and v[0] == "my_method")]
    for depth in depths:
        for alg, preset, hp in variants:
            for n in ns:
                for seed in (0, 1):
                    cells.append(_cell(alg, preset, hp, n, m, seed, _status(alg, n, ns),
                                       depth))
    if not deep:
        for alg, preset, hp in VARIANTS[:3]:
            for mm in ms:
                for seed in (0, 1):
                    cells.append(_cell(alg, preset, hp, ns[1], mm, seed, "converged"))
        for alg, preset, hp in (VARIANTS[2], VARIANTS[5]):
            for n, mm in grid:
                cells.append(_cell(alg, preset, hp, n, mm, 0, "converged"))
    cells = pd.DataFrame(cells).drop_duplicates("cell")
    cells["variant"] = label_variants(cells)  # named as the report names them
    cells["disturbed"] = False
    if disturbed:
        cells.loc[(cells["n"] == ns[2]) & (cells["seed"] == 1), "disturbed"] = True
    cells["disturbed"] = cells["disturbed"].astype(object)
    return cells, _rows(cells)


def _profiles():
    mine = Profile.synthetic(flops=2e9, memory_bytes=2**33)
    mine.data.update(device_name="test CPU", source="measured (synthetic for the tests)",
                     date="2026-01-01")
    sheet = Profile.synthetic(flops=5e10, memory_bytes=2**36)
    sheet.data.update(device_name="test GPU", source="datasheet (prediction, not measured)")
    return mine, [sheet]


SWEEPS = {
    "two_layer_demo": dict(ns=(64, 128, 256, 512, 1024), m=1024, ms=(256, 4096),
                           grid=[(256, 2048), (256, 8192), (512, 2048), (512, 8192)],
                           disturbed=True),
    "two_layer_paper": dict(ns=(1024, 2048, 4096, 8192, 16384), m=65536,
                            ms=(16384, 262144), grid=[(2048, 32768), (2048, 131072),
                                                      (8192, 32768), (8192, 131072)]),
    "deep_demo": dict(ns=(128, 256, 512, 1024, 2048), m=1024, ms=(), grid=[], deep=True),
}


@pytest.fixture(scope="module", params=sorted(SWEEPS))
def checked(request):
    cells, rows = tables(**SWEEPS[request.param])
    fits_n, fits_m = fits.scaling_fits(cells, "n", 0.0), fits.scaling_fits(cells, "m", 0.0)
    mine, sheets = _profiles()
    return request.param, check.check_all(Inputs(cells, rows, fits_n, fits_m, mine, sheets))


def test_every_figure_passes_the_check(checked):
    sweep, found = checked
    assert check.defects(found) == {}, sweep
    drawn = {name[:5] for name, v in found.items() if not v}
    # the two-layer sweeps draw every figure; the deep one all but those it has no data for
    expect = set(range(1, 14)) if sweep.startswith("two_layer") else {1, 3, 4, 5, 8, 9, 10}
    assert {int(n[3:5]) for n in drawn} >= expect, (sweep, found)


def test_a_figure_with_nothing_to_show_is_skipped_with_its_reason(tmp_path):
    cells, rows = tables(**SWEEPS["deep_demo"])
    two = ~cells["hyperparameters"].str.contains('"sketch_ratio": 4.0')  # ratios 1 and 2 only
    cells, rows = cells[two], rows[rows["cell"].isin(cells.loc[two, "cell"])]
    found = check.check_all(Inputs(cells, rows, None, None), numbers=[6])
    assert found == {REGISTRY[6].name: [
        "skipped: fewer than 3 sketch ratios measured (2): too few points for a trend"]}
    # the report lists a figure not drawn with its reason (report.py: "Figures not drawn")
    figs = all_figures(cells.iloc[:0], rows.iloc[:0], None, None, tmp_path)
    assert all(f.missing and not f.files for f in figs)


# --- fig08: phases averaged over all steps ------------------------------------------------------

def test_phase_shares_amortise_refresh_phases_over_all_steps():
    cells, rows = tables(**SWEEPS["two_layer_demo"])
    sk = cells[(cells["algorithm"] == "gn_sketch") & cells["preset"].isna() & (cells["m"] == 1024)
               & cells["hyperparameters"].str.contains('"sketch": "gaussian", "sketch_ratio": 1.0')]
    assert sk["variant"].nunique() == 1 and len(sk) == 10
    names = ["forward", "sketch", "factor", "solve"]
    share, total = phase_shares(sk, names, rows)
    steps = rows[rows["cell"].isin(sk["cell"]) & (rows["iter"] > 0)]
    refreshed = steps["refreshed"].mean()  # 2 of 8 steps
    assert refreshed == pytest.approx(2 / 8)
    assert share["mean_t_sketch"].to_numpy() == pytest.approx(0.6 * refreshed, rel=1e-9)
    assert share["mean_t_forward"].to_numpy() == pytest.approx(0.1, rel=1e-9)
    assert (share.sum(axis=1) <= 1 + 1e-9).all()
    # averaged over refresh steps only (the old figure), the same shares add to 1.0 + 0.0
    naive = sk.groupby("n")[[f"mean_t_{p}" for p in names]].median().div(total, axis=0)
    assert (naive.sum(axis=1) > 1 - 1e-9).all()
    # without per-step rows, the cell's refresh_frac amortises the refresh phases
    share_cells, _ = phase_shares(sk, names, None)
    assert share_cells.to_numpy() == pytest.approx(share.to_numpy())


# --- the check fails on figures broken on purpose -----------------------------------------------

def _fig(**kw):
    with plt.rc_context(style.RC):
        return plt.subplots(figsize=(3.3, 2.2), **kw)


def test_the_check_finds_a_clipped_title():
    fig, ax = _fig()
    ax.plot([1, 2, 3], [1, 2, 3], label="gd")
    ax.legend(loc="lower right")
    fig.suptitle("a title far too long for a one-column figure: it runs off the right edge")
    ax.set_title("x" * 120, loc="left")
    found = check.problems(fig)
    plt.close(fig)
    assert any("text cut by the figure edge" in p for p in found), found


def test_the_check_finds_a_legend_over_data_and_a_tall_legend():
    fig, ax = _fig()
    xs = np.linspace(0, 1, 30)
    for i in range(3):
        ax.plot(xs, xs * 0 + 0.9 + 0.01 * i, color=f"C{i}", label=f"method {i}")
    ax.legend(loc="upper right")
    found = check.problems(fig)
    plt.close(fig)
    assert any("legend covers" in p for p in found), found
    fig, ax = _fig()
    for i in range(25):
        ax.plot([0, 1], [i, i], color=f"C{i % 10}", ls="-", label=f"method {i}")
    fig.legend(loc="outside lower center")
    found = check.problems(fig)
    plt.close(fig)
    assert any("taller than the axes" in p for p in found), found


def test_the_check_finds_unkeyed_styles_empty_panels_shares_and_faceless_open_markers():
    fig, (a, b, c) = _fig(ncols=3)
    a.plot([1, 2], [1, 2], color="C0", label="gd")
    a.plot([1, 2], [2, 3], color="C0", ls="--")  # dashed, never explained
    a.plot([1.5], [1.5], ls="none", marker="1", mfc="white", mec="C0")  # cannot be open
    a.legend(loc="lower right")
    c.bar([0], [0.7])
    c.bar([0], [0.6], bottom=[0.7])
    c.set_ylabel("share of step time")
    found = "\n".join(check.problems(fig))
    plt.close(fig)
    assert "line style '--'" in found
    assert "cannot be drawn open" in found and "no legend entry explains them" in found
    assert "empty panel" in found
    assert "phase shares add to 1.30" in found


def test_the_registry_is_fully_checked():
    cells, rows = tables(**SWEEPS["two_layer_demo"])
    found = check.check_all(Inputs(cells, rows, None, None), numbers=[8])
    assert list(found) == [REGISTRY[8].name] and found[REGISTRY[8].name] == []


@pytest.mark.slow
@pytest.mark.parametrize("report", ["cpu", "deep"])
def test_the_committed_reports_figures_pass_the_check(report):
    from pathlib import Path

    from harness.reporting import predictions

    where = Path(__file__).resolve().parents[1] / "reports" / report
    cells = pd.read_csv(where / "cells.csv")
    rows = pd.read_parquet(where / "results.parquet")
    profile, sheets = predictions.load_profiles(cells, None)
    found = check.check_all(Inputs(cells, rows, fits.scaling_fits(cells, "n", 1e-3),
                                   fits.scaling_fits(cells, "m", 1e-3), profile, sheets))
    assert check.defects(found) == {}


def _time_vs_n(**kw):
    cells, rows = tables(**{**SWEEPS["two_layer_demo"], **kw})
    mine, sheets = _profiles()
    data = Inputs(cells, rows, fits.scaling_fits(cells, "n", 0.0),
                  fits.scaling_fits(cells, "m", 0.0), mine, sheets)
    spec = next(v for v in REGISTRY.values() if v.slug == "time_vs_n")
    with plt.rc_context(style.RC):
        drawn = spec.draw(data)[0]
        fit_legends(drawn.fig)
    return drawn


def test_disturbed_sizes_are_drawn_hollow_and_seeds_as_bars():
    drawn = _time_vs_n(disturbed=True)
    try:
        ax = drawn.fig.axes[0]
        hollow = [ln for ln in ax.get_lines() if ln.get_label() == "_disturbed"]
        assert hollow and all(str(ln.get_markerfacecolor()) in ("white", "#ffffff")
                              for ln in hollow)
        # only the third n carries a disturbed cell
        assert {float(x) for ln in hollow for x in ln.get_xdata()} == {256.0}
        bars = [c for c in ax.collections if c.get_label() == "_spread"]
        assert bars and len(bars[0].get_segments()) >= 4  # two seeds at every n
        assert "disturbed machine" in drawn.caption and "over seeds" in drawn.caption
        labels = [t.get_text() for leg in drawn.fig.legends for t in leg.get_texts()]
        assert any("disturbed" in t for t in labels) and any("spread" in t for t in labels)
        assert check.problems(drawn.fig) == []
    finally:
        plt.close(drawn.fig)
    quiet = _time_vs_n(disturbed=False)
    try:
        assert not [ln for ln in quiet.fig.axes[0].get_lines()
                    if ln.get_label() == "_disturbed"]
        assert "disturbed machine" not in quiet.caption
    finally:
        plt.close(quiet.fig)
